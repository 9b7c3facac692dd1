"""`python -m instrusense corpus` and `analyze_dataset`: rows equal the CLI's JSON, resumption, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from corpus_files import crash_on_crash_wav, make_corpus
from instrusense.cli import build_parser
from instrusense.cli import corpus as corpus_command
from instrusense.corpus.job import plan, run_corpus
from instrusense.corpus.pool import run_pool
from instrusense.corpus.rows import failure_reason, record_row
from instrusense.corpus.sources import CorpusError, Item, list_items, open_source
from instrusense.corpus.store import ResultStore
from instrusense.export import error_record
from instrusense.model import ModelUnavailableError
from instrusense.settings import load_settings
from instrusense.taxonomy import LABELS

REPO = Path(__file__).resolve().parents[1]
ENV = {"INSTRUSENSE_THRESHOLD": "0.3"}  # the tiny random model then finds segments


def cli_records(files: list[str], model: str) -> dict[str, dict]:
    """The contract's JSON from `python -m instrusense analyze --json`, by file."""
    proc = subprocess.run([sys.executable, "-m", "instrusense", "analyze", "--json", "--model", model, *files],
                          cwd=REPO, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=600)
    return {r["file"]: r for r in json.loads(proc.stdout)}


def parquet_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def assert_rows_equal_records(rows: list[dict], records: dict[str, dict]) -> None:
    """Every row carries its record: a label's confidence in its column, every other field as it is."""
    assert sorted(r["file"] for r in rows) == sorted(records)  # each file once
    for row in rows:
        record = records[row["file"]]
        for item in record["labels"]:
            assert row[item["label"]] == item["confidence"], (row["file"], item)
        if record["error"]:
            assert all(row[label] is None for label in LABELS)
        for key, value in record.items():
            if key != "labels":
                assert row[key] == value, (row["file"], key)


def test_a_row_carries_every_field_of_the_record():
    record = {"file": "a.wav", "duration": 2.0,
              "labels": [{"label": "cello", "family": "bowed_string", "confidence": 0.9},
                         {"label": "piano", "family": "keyboard", "confidence": 0.1}],
              "segments": [{"label": "cello", "start": 0.0, "end": 2.0, "confidence": 0.9}],
              "timeline": {"window": 3.0, "hop": 1.5, "starts": [0.0], "confidence": {"cello": [0.9]}},
              "added_later": {"x": 1}, "error": None}
    row = record_row(record)
    assert list(row)[:2 + len(LABELS)] == ["file", "duration", *LABELS]
    assert row["cello"] == 0.9 and row["piano"] == 0.1 and row["violin"] is None
    assert row["segments"] == record["segments"] and row["timeline"] == record["timeline"]
    assert row["added_later"] == {"x": 1} and row["error"] is None and "labels" not in row
    failed = record_row(error_record("b.wav", "The file is empty (0 bytes)."))
    assert failed["error"] == "The file is empty (0 bytes)." and all(failed[label] is None for label in LABELS)


def test_failures_are_counted_by_kind_not_by_file():
    assert failure_reason("x/a.flac", "Could not decode a.flac as audio: the file is corrupt.") == \
        failure_reason("y/b.wav", "Could not decode b.wav as audio: the file is corrupt.") == \
        "Could not decode <file> as audio"
    assert failure_reason("c.wav", "The recording is too short (0.19 s): at least 0.5 s.") == \
        "The recording is too short"


def test_workers_times_threads_fit_the_cores():
    assert plan(0, 0, cores=2) == (2, 1)
    assert plan(1, 0, cores=2) == (1, 2)
    assert plan(0, 2, cores=8) == (4, 2)
    assert plan(3, 0, cores=2) == (3, 1)  # more workers than cores: asked for, one thread each


def test_sources_walk_folders_read_lists_and_refuse_what_is_not_there(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.wav", "a/b/two.FLAC", "three.mp3", "notes.txt", "cover.jpg", ".hidden/four.wav"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    walked = [item.file for item in list_items(open_source(str(tmp_path)))]
    assert walked == [str(tmp_path / n) for n in ("a/b/two.FLAC", "a/one.wav", "three.mp3")]
    listing = tmp_path / "a" / "list.txt"
    listing.write_text("# archive\none.wav\n\nb/two.FLAC\none.wav\n/abs/five.wav\n")
    listed = list_items(open_source(str(listing)))
    assert [(i.file, i.path) for i in listed] == [("one.wav", str(tmp_path / "a/one.wav")),
                                                 ("b/two.FLAC", str(tmp_path / "a/b/two.FLAC")),
                                                 ("/abs/five.wav", "/abs/five.wav")]
    with pytest.raises(CorpusError, match="no such folder"):
        open_source(str(tmp_path / "missing"))


def test_parts_merge_into_one_table_whatever_each_part_holds(tmp_path):
    store = ResultStore(tmp_path / "out.parquet")
    failed = record_row(error_record("bad.wav", "The file is empty (0 bytes)."))
    ok = record_row({"file": "ok.wav", "duration": 1.0,
                     "labels": [{"label": "cello", "family": "bowed_string", "confidence": 0.5}],
                     "segments": [{"label": "cello", "start": 0.0, "end": 1.0, "confidence": 0.5}],
                     "timeline": {"window": 3.0, "starts": [0.0], "confidence": {"cello": [0.5]}}, "error": None})
    newer = {**ok, "file": "new.wav", "timeline": {**ok["timeline"], "ends": [1.0]}}
    store.append([failed])  # a part of failures only: its nested columns are null-typed
    store.append([ok])
    (store.parts / "part-9-9.parquet.tmp").write_bytes(b"half a part")  # a kill while writing
    assert store.done_files() == {"bad.wav", "ok.wav"}
    assert not list(store.parts.glob("*.tmp"))
    assert store.finish() == 2
    store.append([newer])  # a later run whose records gained a field
    assert store.finish() == 3 and not store.parts.exists()
    rows = {r["file"]: r for r in parquet_rows(store.out)}
    assert rows["bad.wav"]["segments"] == [] and rows["bad.wav"]["timeline"] is None
    assert rows["ok.wav"]["segments"] == ok["segments"] and rows["ok.wav"]["timeline"]["ends"] is None
    assert rows["new.wav"]["timeline"] == newer["timeline"] and rows["new.wav"]["cello"] == 0.5


@pytest.fixture(scope="module")
def archive(tiny_whisper, tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """A small archive (two of its files broken) and the CLI's JSON record of each file."""
    root = tmp_path_factory.mktemp("archive")
    files = make_corpus(root, 20)
    (root / "box0" / "notes.txt").write_text("not audio, not listed")
    return root, cli_records(files, tiny_whisper)


def test_corpus_rows_equal_the_cli_json_and_a_rerun_redoes_nothing(archive, tiny_whisper, tmp_path, monkeypatch):
    root, records = archive
    monkeypatch.setenv("INSTRUSENSE_THRESHOLD", ENV["INSTRUSENSE_THRESHOLD"])
    settings = load_settings(model=tiny_whisper)
    out = tmp_path / "results.parquet"
    summary = run_corpus(open_source(str(root)), out, settings, workers=2, part_rows=3, progress=False)
    rows = parquet_rows(out)
    assert_rows_equal_records(rows, records)
    assert any(r["segments"] for r in rows) and any(r["error"] for r in rows)
    failed = [r for r in records.values() if r["error"]]
    assert (summary.listed, summary.analysed, summary.rows) == (20, 20, 20)
    assert sum(summary.failures.values()) == len(failed) == 2
    assert summary.audio_seconds == pytest.approx(sum(r["duration"] for r in records.values() if not r["error"]))
    again = run_corpus(open_source(str(root)), out, settings, workers=2, progress=False)
    assert (again.skipped, again.analysed, again.rows) == (20, 0, 20)
    assert parquet_rows(out) == rows


@pytest.mark.slow  # a subprocess that imports torch and loads a model
def test_the_corpus_command_line_gives_the_cli_json(archive, tiny_whisper, tmp_path):
    root, records = archive
    out = tmp_path / "command.parquet"
    proc = subprocess.run([sys.executable, "-m", "instrusense", "corpus", str(root), "--out", str(out), "--model",
                           tiny_whisper, "--workers", "2"], cwd=REPO, env={**os.environ, **ENV}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 1 and "20 rows in the output" in proc.stderr, proc.stderr[-3000:]  # 2 broken files
    assert_rows_equal_records(parquet_rows(out), records)


@pytest.mark.slow  # three pools of workers, each loading the model
def test_a_worker_that_dies_costs_its_file_only(tiny_whisper, write_audio):
    files = [write_audio(f"f{i}.wav", seconds=1.0) for i in range(7)] + [write_audio("crash.wav", seconds=1.0)]
    items = [Item(f, f) for f in files]
    batches = run_pool(items, load_settings(model=tiny_whisper), open_source(files[0]), workers=2, threads=1,
                       chunk_size=3, task=crash_on_crash_wav)
    records = {r["file"]: r for batch in batches for r in batch}
    assert sorted(records) == sorted(files) and all(records[f]["error"] is None for f in files[:7])
    assert "worker process died" in records[files[7]]["error"]


def test_a_model_that_cannot_load_stops_the_job_before_any_row(write_audio, tmp_path, caplog):
    write_audio("a.wav")
    out = tmp_path / "out.parquet"
    args = build_parser().parse_args(["corpus", str(tmp_path), "--out", str(out), "--workers", "1"])
    assert corpus_command.run(args, load_settings(model=str(tmp_path / "no-model"))) == 2  # main() minus its
    assert "INSTRUSENSE_MODEL" in caplog.text  # process-wide logging set-up, which must not leak into other tests
    assert not out.exists() and not ResultStore(out).parts.exists()
    with pytest.raises(ModelUnavailableError):
        run_corpus(open_source(str(tmp_path)), out, load_settings(model=str(tmp_path / "no-model")), workers=1,
                   progress=False)


def test_analyze_dataset_and_a_saved_dataset_as_corpus_root(archive, tiny_whisper, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    from instrusense import analyze_dataset

    _, records = archive
    broken = [f for f, r in records.items() if r["error"] and "Could not decode" in r["error"]][:1]
    files = broken + [f for f, r in records.items() if not r["error"]][:3]
    assert len(files) == 4
    ds = datasets.Dataset.from_dict({"audio": files, "id": [0, 1, 2, 3]}).cast_column("audio", datasets.Audio())
    monkeypatch.setenv("INSTRUSENSE_THRESHOLD", ENV["INSTRUSENSE_THRESHOLD"])

    tagged = analyze_dataset(ds, model=tiny_whisper, batch_size=1)  # the first batch holds only a failure
    assert tagged.column_names[:2] == ["audio", "id"] and isinstance(tagged.features["audio"], datasets.Audio)
    rows = tagged.remove_columns(["audio", "id"]).to_list()
    assert_rows_equal_records([{**row, "file": f} for row, f in zip(rows, files)], {f: records[f] for f in files})

    ds.save_to_disk(str(tmp_path / "saved"))
    out = tmp_path / "ds.parquet"
    run_corpus(open_source(str(tmp_path / "saved")), out, load_settings(model=tiny_whisper), workers=1,
               progress=False)
    by_key = {row["file"]: row for row in parquet_rows(out)}
    assert sorted(by_key) == [f"data[{i}]" for i in range(4)]
    for i, f in enumerate(files):
        expected = {**record_row(records[f]), "file": f"data[{i}]"}
        if expected["error"]:  # the message names the file as the dataset stores it
            assert f"Could not decode {Path(f).name}" in by_key[f"data[{i}]"]["error"]
            expected["error"] = by_key[f"data[{i}]"]["error"]
        assert by_key[f"data[{i}]"] == expected


def test_ray_missing_is_a_message_with_the_install_line(monkeypatch):
    from instrusense.corpus.on_ray import start_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(CorpusError, match=r"pip install 'ray\[data\]=="):
        start_ray("local", 2)
