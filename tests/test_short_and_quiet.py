"""Recordings from 0.1 s are analysed, and a loud recording where nothing reaches the threshold (speech, noise)
gets "No instrument detected" from the CLI and the app (whose handler the API calls), as silence does."""

import json

import numpy as np
import pytest

from conftest import tone
from instrusense.settings import load_settings
from instrusense.taxonomy import LABELS
from test_cli import run_cli


def _noise(seconds: float, rate: int = 16000) -> np.ndarray:
    return (0.3 * np.random.default_rng(0).standard_normal((int(seconds * rate), 1))).astype(np.float32)


@pytest.fixture
def app_handler(tiny_whisper, tmp_path):
    import app

    def make(**overrides):
        settings = load_settings({}, model=tiny_whisper, **overrides)
        handle, error = app.make_analyze(settings, uploads=tmp_path)
        assert error is None
        return handle

    return make


@pytest.mark.slow  # a subprocess that imports torch and loads a model
def test_a_short_file_through_analyze_json(tiny_whisper, write_audio):
    path = write_audio("one-shot.wav", seconds=0.15, rate=44100)
    proc = run_cli("--json", "--model", tiny_whisper, path)
    assert proc.returncode == 0, proc.stderr
    (record,) = json.loads(proc.stdout)
    assert record["error"] is None and record["duration"] == pytest.approx(0.15, abs=1e-3)
    assert sorted(r["label"] for r in record["labels"]) == sorted(LABELS)
    assert record["labels"][0]["confidence"] > 0
    assert record["timeline"]["starts"] == [0.0]


def test_a_short_file_through_the_app_handler(app_handler, write_audio):
    handle = app_handler(threshold=0.3)
    *_, record, notes = handle(write_audio("staccato.wav", seconds=0.15))
    assert record["error"] is None and record["duration"] == pytest.approx(0.15, abs=1e-3)
    assert len(record["labels"]) == len(LABELS) and record["labels"][0]["confidence"] > 0


def test_shorter_than_the_minimum_is_still_refused(app_handler, write_audio):
    import gradio as gr

    with pytest.raises(gr.Error, match="too short"):
        app_handler()(write_audio("click.wav", seconds=0.05))


@pytest.mark.slow  # a subprocess that imports torch and loads a model
def test_nothing_over_the_threshold_says_no_instrument_in_the_cli(tiny_whisper, write_audio):
    path = write_audio("speech-like.wav", data=_noise(2.0))
    proc = run_cli("--json", "--model", tiny_whisper, path, INSTRUSENSE_THRESHOLD="0.99")
    assert proc.returncode == 0, proc.stderr
    (record,) = json.loads(proc.stdout)
    assert record["error"] is None and record["segments"] == []
    assert all(r["confidence"] < 0.99 for r in record["labels"])
    assert "No instrument detected" in proc.stderr
    table = run_cli("--model", tiny_whisper, path, INSTRUSENSE_THRESHOLD="0.99")
    assert "No instrument detected" in table.stdout


@pytest.mark.parametrize("data", [_noise(2.0), np.zeros((32000, 1), np.float32), tone(2.0, 16000)])
def test_nothing_over_the_threshold_says_no_instrument_in_the_app(app_handler, write_audio, data):
    ranking, _, table, csv_file, _, record, notes = app_handler(threshold=0.99)(write_audio("quiet.wav", data=data))
    assert record["error"] is None and record["segments"] == [] and table == [] and csv_file is None
    assert "No instrument detected" in notes
