"""The CLI contract of the spec: end to end in a subprocess (stdout holds nothing but the result), and
in-process through `instrusense.cli.main` where the subprocess adds only start-up time."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import mp3_then_junk, tone
from instrusense.cli.analyze import format_table
from instrusense.export import error_record
from instrusense.taxonomy import LABELS

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "INSTRUSENSE_THRESHOLD": "0.3", **env}
    return subprocess.run([sys.executable, "-m", "instrusense", "analyze", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=300)


def run_main(monkeypatch, capsys, *args: str, **env: str) -> tuple[int, str]:
    """`python -m instrusense analyze ARGS` in this process: (exit code, stdout)."""
    from instrusense.cli import main

    for key, value in {"INSTRUSENSE_THRESHOLD": "0.3", **env}.items():
        monkeypatch.setenv(key, value)
    code = main(["analyze", *args])
    return code, capsys.readouterr().out


def test_json_contract_with_a_bad_file_in_the_middle(tiny_whisper, write_audio, tmp_path):
    good = write_audio("good.wav", seconds=4.0, rate=48000, channels=2)
    bad = tmp_path / "bad.flac"
    bad.write_text("not audio")
    other = write_audio("other.flac", seconds=3.0, rate=22050, fmt="FLAC")
    proc = run_cli("--json", "--model", tiny_whisper, good, str(bad), other)
    assert proc.returncode == 1
    records = json.loads(proc.stdout)  # stdout is exactly one JSON array
    assert [r["file"] for r in records] == [good, str(bad), other]
    for r in records:
        assert list(r) == ["file", "duration", "labels", "segments", "timeline", "error"]
    ok, failed, ok2 = records
    assert ok["error"] is None and ok["duration"] == 4.0
    assert sorted(item["label"] for item in ok["labels"]) == sorted(LABELS)
    assert [i["confidence"] for i in ok["labels"]] == sorted((i["confidence"] for i in ok["labels"]), reverse=True)
    assert all(set(i) == {"label", "family", "confidence"} for i in ok["labels"])
    assert ok["segments"] and all(set(s) == {"label", "start", "end", "confidence"} for s in ok["segments"])
    assert "Could not decode bad.flac" in failed["error"] and failed["labels"] == [] == failed["segments"]
    assert ok2["error"] is None and ok2["duration"] == 3.0
    assert ok["timeline"]["hop"] == 1.5 and len(ok["timeline"]["starts"]) == len(ok["timeline"]["confidence"]["piano"])
    assert failed["timeline"] is None
    assert "could not be analysed" in proc.stderr


def test_top_k_shortens_the_table_but_never_the_json(tiny_whisper, write_audio, monkeypatch, capsys):
    path = write_audio("a.wav")
    code, out = run_main(monkeypatch, capsys, "--json", "--top-k", "2", "--model", tiny_whisper, path)
    assert code == 0 and len(json.loads(out)[0]["labels"]) == len(LABELS)
    # Under the threshold nothing plays, so the table shows just the top k (every instrument that plays,
    # with its segments, is always listed).
    code, table = run_main(monkeypatch, capsys, "--top-k", "2", "--model", tiny_whisper, path,
                           INSTRUSENSE_THRESHOLD="0.9")
    assert code == 0
    assert table.startswith(path) and len([ln for ln in table.splitlines() if "%" in ln]) == 2


def test_every_bad_input_gets_its_message_and_the_batch_goes_on(tiny_whisper, write_audio, tmp_path, monkeypatch,
                                                                capsys, caplog):
    nan = tone(2.0, 16000)
    nan[::3] = np.nan
    (tmp_path / "empty.wav").write_bytes(b"")
    files = {
        str(tmp_path / "empty.wav"): "empty",
        write_audio("zero.wav", data=np.zeros((0, 1), np.float32)): "empty",
        write_audio("short.wav", seconds=0.05): "too short",
        write_audio("silent.wav", data=np.zeros((32000, 2), np.float32)): None,
        write_audio("nan.wav", data=nan, subtype="FLOAT"): None,
        write_audio("eight.wav", channels=8, rate=8000): None,
        write_audio("hi.wav", rate=192000, subtype="PCM_24"): None,
        write_audio("long.wav", seconds=8.0): None,
        write_audio("lies.mp3", fmt="WAV"): None,
    }
    code, out = run_main(monkeypatch, capsys, "--json", "--model", tiny_whisper, *files,
                         INSTRUSENSE_MAX_DURATION_SECONDS="5")
    records = {r["file"]: r for r in json.loads(out)}
    assert code == 1
    for path, message in files.items():
        if message is None:
            assert records[path]["error"] is None, path
        else:
            assert message in records[path]["error"], path
    silent = records[str(tmp_path / "silent.wav")]
    assert all(i["confidence"] == 0 for i in silent["labels"]) and silent["segments"] == []
    assert "silent" in caplog.text and "first 0:05 of 0:08" in caplog.text


def test_missing_model_fails_every_file_with_instructions(write_audio, tmp_path, monkeypatch, capsys):
    code, out = run_main(monkeypatch, capsys, "--json", "--model", str(tmp_path / "no-model"), write_audio("a.wav"))
    assert code == 1
    (record,) = json.loads(out)
    assert "INSTRUSENSE_MODEL" in record["error"] and record["labels"] == []


def test_table_of_a_failed_file_gives_the_reason_and_no_made_up_duration():
    text = format_table(error_record("kick.wav", "The recording is too short (0.27 s)"), None, top_k=5)
    assert text.splitlines() == ["kick.wav", "  error: The recording is too short (0.27 s)"]


def test_decoder_libraries_messages_stay_off_the_terminal(tiny_whisper, write_audio, tmp_path):
    junk, good = mp3_then_junk(tmp_path), write_audio("good.wav")
    proc = run_cli("--json", "--model", tiny_whisper, str(junk), good, INSTRUSENSE_LOG_LEVEL="DEBUG")
    records = json.loads(proc.stdout)  # nothing but the JSON on stdout
    assert "Could not decode junk.mp3" in records[0]["error"] and records[1]["error"] is None
    c_lines = [line for line in proc.stderr.splitlines() if "Xing stream size" in line]  # libmpg123's own words
    assert c_lines and all(" DEBUG instrusense.native_output: decoder: " in line for line in c_lines)
