"""Recordings from 0.1 s are analysed, and a loud recording where nothing reaches the threshold (speech, noise)
gets "No instrument detected" from the CLI and the app (whose handler the API calls), as silence does."""

import json

import numpy as np
import pytest

from conftest import tone
from instrusense.analysis import analyze_recording
from instrusense.audio import Recording
from instrusense.settings import load_settings
from instrusense.streaming import StreamAnalyser
from instrusense.taxonomy import LABEL_INDEX, LABELS
from instrusense.windows import looped
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
    assert ranking["label"] == "No instrument detected"  # the ranking says it, and still lists the strongest scores
    assert [c["confidence"] for c in ranking["confidences"]] == [s["confidence"] for s in record["labels"][:5]
                                                                 if s["confidence"] > 0]


def test_the_looped_view_repeats_what_fills_each_window():
    windows = np.array([[1, 2, 0, 0, 0], [3, 4, 5, 0, 0], [0, 0, 0, 0, 0]], np.float32)
    out = looped(windows, np.array([2, 3, 0]))
    assert out.tolist() == [[1, 2, 1, 2, 1], [3, 4, 5, 3, 4], [0, 0, 0, 0, 0]]
    assert windows[0].tolist() == [1, 2, 0, 0, 0]  # the padded view is left as it was


class FillTagger:
    """Scores piano by how much of the window holds sound, so a padded and a looped view score apart."""

    sampling_rate, native_window_seconds = 1000, 3.0

    def __init__(self):
        self.seen: list[np.ndarray] = []

    def predict(self, windows, batch_size, should_stop=None):
        self.seen += list(windows)
        out = np.zeros((len(windows), len(LABELS)), np.float32)
        out[:, LABEL_INDEX["piano"]] = (windows != 0).mean(axis=1)
        return out


@pytest.mark.parametrize("seconds,views", [(0.5, 2), (2.9, 2), (3.0, 1), (4.0, 1)])
def test_a_recording_shorter_than_a_window_is_heard_padded_and_looped(seconds, views):
    tagger = FillTagger()
    samples = np.full(int(seconds * 1000), 0.5, np.float32)
    result = analyze_recording(Recording(samples, 1000, seconds), tagger, load_settings({}))
    piano = result.timeline.probs[:, LABEL_INDEX["piano"]]
    if views == 2:  # one window, seen zero-padded (part filled) and looped (all filled); the mean is kept
        assert len(tagger.seen) == 2 and piano[0] == pytest.approx((seconds / 3.0 + 1.0) / 2)
    else:  # long enough: every window once, padded at the tail as before
        assert len(tagger.seen) == len(piano)
        assert piano[-1] == pytest.approx(min(1.0, (seconds - 1.5 * (len(piano) - 1)) / 3.0))


def test_a_live_stream_younger_than_a_window_is_heard_like_a_short_file():
    analyser = StreamAnalyser(FillTagger(), load_settings({}, live_hop_seconds=1.5), 16000)
    (hop,) = analyser.feed(tone(1.5, 16000))  # half a window of sound: padded 0.5 filled, looped all
    assert hop.probs[LABEL_INDEX["piano"]] == pytest.approx(0.75, abs=0.01)
