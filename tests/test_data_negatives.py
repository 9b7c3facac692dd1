"""Non-instrument negatives: deterministic rows of the schema, held-out speakers, voices and sound ranges,
FSDD read from a folder or a bare git mirror, and the held-out evaluation's clean fractions."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from finetune.data.rows import negatives as N
from finetune.data.rows.base import flac_bytes
from finetune.data.schema import SAMPLE_RATE
from finetune.evaluation.negatives import summarise
from instrusense.taxonomy import LABEL_INDEX, LABELS

MIRROR = Path("/work/.mirror/Jakobovski+free-spoken-digit-dataset/repo")
SPEAKERS = N.FSDD_SPEAKERS["train"] + N.FSDD_SPEAKERS["negatives"]
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def write_tiny_fsdd(root: Path) -> Path:
    """A tiny FSDD-like folder: recordings/DIGIT_SPEAKER_INDEX.wav at 8 kHz, each speaker at its own pitch."""
    (root / "recordings").mkdir(parents=True)
    t = np.arange(2400) / 8000
    for k, speaker in enumerate(SPEAKERS):
        for digit in range(3):
            x = 0.5 * np.sin(2 * np.pi * (150 + 40 * k) * t) * np.hanning(len(t))
            sf.write(root / "recordings" / f"{digit}_{speaker}_0.wav", x, 8000, subtype="PCM_16")
    (root / "README.md").write_text("not a recording")
    return root


@pytest.fixture(scope="module")
def fsdd(tmp_path_factory) -> Path:
    return write_tiny_fsdd(tmp_path_factory.mktemp("fsdd"))


def _decode(row: dict) -> np.ndarray:
    return sf.read(io.BytesIO(row["audio"]["bytes"]), dtype="float32")[0]


def _peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)[spec.argmax()])


def test_read_fsdd_takes_only_the_speakers_asked_for(fsdd):
    pool = N.read_fsdd(fsdd, N.FSDD_SPEAKERS["negatives"])
    assert sorted(pool) == sorted(N.FSDD_SPEAKERS["negatives"]) and all(len(v) == 3 for v in pool.values())
    assert all(len(x) == 4800 for v in pool.values() for x in v)  # 0.3 s at 16 kHz
    with pytest.raises(FileNotFoundError, match="nobody"):
        N.read_fsdd(fsdd, ("nobody",))


def test_read_fsdd_from_a_bare_git_mirror(fsdd, tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    work, bare = tmp_path / "work", tmp_path / "bare.git"
    shutil.copytree(fsdd, work)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(work)]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "fsdd"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    pool = N.read_fsdd(bare, ("theo",))
    assert len(pool["theo"]) == 3


@needs_espeak
def test_rows_are_deterministic_schema_rows(fsdd):
    rows = list(N.negative_rows("train", 12, 3, 1.5, fsdd, flac_bytes))
    again = list(N.negative_rows("train", 12, 3, 1.5, fsdd, flac_bytes))
    assert [r["audio"]["bytes"] for r in rows] == [r["audio"]["bytes"] for r in again]
    for r in rows:
        assert r["labels"] == [] and r["activity"] == [] and r["kind"] == "negative" and r["source"] in N.MIX
        assert r["origin"] == ("real" if r["source"] == "fsdd" else "rendered")
        x = _decode(r)
        assert len(x) == int(1.5 * SAMPLE_RATE) and np.abs(x).max() <= 1.0
    other = list(N.negative_rows("train", 12, 4, 1.5, fsdd, flac_bytes))
    assert [r["audio"]["bytes"] for r in rows] != [r["audio"]["bytes"] for r in other]


def test_held_out_speakers_voices_and_ranges_are_not_trained_on():
    assert not set(N.FSDD_SPEAKERS["train"]) & set(N.FSDD_SPEAKERS["negatives"])
    assert not set(N.VOICES["train"]) & set(N.VOICES["negatives"])
    rng = np.random.default_rng(0)
    n = 2 * SAMPLE_RATE
    for held, base in ((False, 50), (True, 60)):
        spec = np.abs(np.fft.rfft(N.hum(rng, n, held)))
        f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        assert spec[np.abs(f - base) < 2].max() > 10 * spec[np.abs(f - (110 - base)) < 2].max()
    train_bands, held_bands = [(60, 200), (400, 800), (1600, 3200)], [(200, 400), (800, 1600), (3200, 5000)]
    for held, bands in ((False, train_bands), (True, held_bands)):
        for _ in range(20):
            rng_one = np.random.default_rng(int(rng.integers(1 << 30)))
            x = N.tone(rng_one, n, held)
            if np.count_nonzero(x) == n:  # a steady tone (beeps share the clip with silence)
                peak = _peak_hz(x)
                assert any(lo - 5 <= peak <= hi + 5 for lo, hi in bands), (held, peak)


def test_every_generator_fills_the_clip_and_differs_between_splits():
    n = SAMPLE_RATE
    for name, gen in {**N.GENERATORS, "mixture": N.mixture}.items():
        a = gen(np.random.default_rng(1), n, False)
        b = gen(np.random.default_rng(1), n, True)
        assert a.shape == (n,) and a.dtype == np.float32 and np.isfinite(a).all() and np.abs(a).max() > 0, name
        assert not np.allclose(a, b), name


@needs_espeak
def test_speech_without_fsdd_uses_espeak_only():
    speech = N.Speech(None, N.VOICES["negatives"])
    sources = {N.negative_clip(np.random.default_rng([0, i]), 1600, "negatives", speech)[0] for i in range(40)}
    assert "fsdd" not in sources and "espeak" in sources


def test_summary_counts_clean_clips_per_source_and_group():
    scores = np.zeros((4, len(LABELS)), np.float32)
    scores[1, LABEL_INDEX["accordion"]] = 0.9
    scores[3, LABEL_INDEX["tuba"]] = 0.5  # at the threshold: fires
    scores[2, LABEL_INDEX["tuba"]] = 0.49
    s = summarise(scores, ["fsdd", "espeak", "tone", "tone"], 0.5)
    assert s["all"]["clean"] == 0.5 and s["all"]["clips"] == 4
    assert s["groups"]["speech"]["clean"] == 0.5 and s["groups"]["generated"]["clean"] == 0.5
    assert s["sources"]["tone"]["labels_fired"] == {"tuba": 1} and s["sources"]["fsdd"]["clean"] == 1.0


@pytest.mark.skipif(not MIRROR.is_dir(), reason="FSDD mirror not on this machine")
def test_real_fsdd_mirror():
    pool = N.read_fsdd(MIRROR, N.FSDD_SPEAKERS["negatives"])
    assert {s: len(v) for s, v in pool.items()} == {s: 500 for s in N.FSDD_SPEAKERS["negatives"]}
    assert all(0.1 < len(x) / SAMPLE_RATE < 2.5 for x in pool["theo"])


def test_evaluation_command_scores_the_split_as_the_cli_does(tiny_whisper, tmp_path):
    import datasets

    from finetune.data.schema import features
    from finetune.evaluation.negatives import main

    rng = np.random.default_rng(0)
    rows = [{"audio": {"bytes": flac_bytes(N.GENERATORS[src](rng, SAMPLE_RATE, True) * np.float32(0.5)),
                       "path": f"{i}.flac"}, "labels": [], "source": src, "kind": "negative", "activity": [],
             "origin": "rendered"}
            for i, src in enumerate(["noise", "tone", "hum"])]
    datasets.DatasetDict({"negatives": datasets.Dataset.from_list(rows, features=features())}).save_to_disk(
        str(tmp_path / "ds"))
    assert main(["--model", tiny_whisper, "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "negatives.json").read_text())
    assert summary["all"]["clips"] == 3 and set(summary["sources"]) == {"noise", "tone", "hum"}
    assert 0.0 <= summary["all"]["clean"] <= 1.0 and "| **all** | 3 |" in (tmp_path / "out" / "negatives.md").read_text()
    assert main(["--model", tiny_whisper, "--dataset", str(tmp_path / "ds"), "--split", "nope"]) == 2
