"""One set of segments over the whole recording, the same in the record, the exports, the plot and its text.

A scripted tagger stands in for the model, so the "truth" of who plays when is known exactly.
"""

import json

import numpy as np
import pytest

from instrusense.analysis import Analysis, analyze_recording
from instrusense.audio import Recording
from instrusense.export import analysis_record, audacity_labels, error_record, segments_csv
from instrusense.formatting import percent, seconds
from instrusense.plot import describe, label_plot
from instrusense.settings import load_settings
from instrusense.taxonomy import LABEL_INDEX, LABELS

RATE = 1000  # a low rate keeps ten minutes of windows small; the arithmetic is the same


class ScriptedTagger:
    """Scores each window by where it lies: `plays` maps a label to (start, end) seconds and a score."""

    sampling_rate = RATE
    native_window_seconds = 3.0

    def __init__(self, plays: dict[str, tuple[float, float, float]], hop: float = 1.5):
        self.plays, self.hop, self.calls = plays, hop, 0

    def predict(self, windows: np.ndarray, batch_size: int, should_stop=None) -> np.ndarray:
        out = np.full((len(windows), len(LABELS)), 0.05, np.float32)
        # Window k of the loud ones: the test's recordings are loud throughout, so k is the window index.
        for k in range(len(windows)):
            centre = (self.calls + k) * self.hop + 1.5
            for label, (start, end, score) in self.plays.items():
                if start <= centre < end:
                    out[k, LABEL_INDEX[label]] = score
        self.calls += len(windows)
        return out


def analyse(seconds_: float, plays: dict, **settings) -> Analysis:
    rng = np.random.default_rng(0)
    rec = Recording(rng.normal(0, 0.1, int(seconds_ * RATE)).astype(np.float32), RATE, seconds_)
    return analyze_recording(rec, ScriptedTagger(plays), load_settings({}, **settings))


def test_ten_minutes_with_an_instrument_throughout_is_covered_at_full_resolution():
    result = analyse(600.0, {"piano": (0, 601, 0.9), "drums": (100, 200, 0.8), "violin": (0, 601, 0.3)})
    record = json.loads(json.dumps(analysis_record("long.wav", result)))
    timeline = record["timeline"]
    assert timeline["hop"] <= 1.5 and timeline["window"] == 3.0
    assert len(timeline["starts"]) == len(timeline["confidence"]["piano"]) == 399
    assert timeline["starts"][:3] == [0.0, 1.5, 3.0] and set(timeline["confidence"]) == set(LABELS)
    assert timeline["confidence"]["piano"][0] == 0.9 and timeline["confidence"]["cello"][0] == 0.05
    piano = [s for s in record["segments"] if s["label"] == "piano"]
    assert len(piano) == 1 and piano[0]["start"] == 0.0 and piano[0]["end"] == 600.0
    drums = [s for s in record["segments"] if s["label"] == "drums"]
    assert len(drums) == 1 and 99 <= drums[0]["start"] <= 101 and 199 <= drums[0]["end"] <= 201
    assert {s["label"] for s in record["segments"]} == {"piano", "drums"}  # violin stays under the threshold


def test_every_stretch_is_a_segment_and_every_face_shows_the_same_ones():
    # Over 10 minutes, piano throughout and a saxophone that comes and goes 40 times: no cap, all of them.
    probs = np.full((399, len(LABELS)), 0.05, np.float32)
    probs[:, LABEL_INDEX["piano"]] = 0.9
    probs[:, LABEL_INDEX["saxophone"]] = np.where((np.arange(399) // 5) % 2 == 0, 0.95, 0.1)
    result = analyze_with(probs)
    segs = result.segments
    assert len([s for s in segs if s.label == "saxophone"]) == 40 and len(segs) == 41
    csv_rows = segments_csv(segs).splitlines()[1:]
    aud_rows = audacity_labels(segs).splitlines()
    assert [(float(r.split(",")[2]), float(r.split(",")[3])) for r in csv_rows] == [(s.start, s.end) for s in segs]
    assert [(float(r.split("\t")[0]), float(r.split("\t")[1])) for r in aud_rows] == [(s.start, s.end) for s in segs]
    drawn = [t for t in label_plot(result, top_k=5).data if t.fill == "toself"]  # one shaded box per segment
    assert sorted((t.x[0], t.x[1]) for t in drawn) == sorted((s.start, s.end) for s in segs)
    words = describe(result, top_k=5, per_label=100)
    assert all(f"{seconds(s.start)}–{seconds(s.end)} s" in words for s in segs)
    assert "and 34 more" in describe(result, top_k=5)  # the text alternative stays short; the table has all


def analyze_with(probs: np.ndarray) -> Analysis:
    """An analysis whose window scores are exactly `probs` (hop 1.5 s, window 3 s, loud throughout)."""

    class Fixed:
        sampling_rate, native_window_seconds = RATE, 3.0

        def predict(self, windows, batch_size, should_stop=None):
            return probs[:len(windows)]

    n = len(probs)
    rec = Recording(np.full(int((1.5 * (n - 1) + 3.0) * RATE), 0.1, np.float32), RATE, 1.5 * (n - 1) + 3.0)
    return analyze_recording(rec, Fixed(), load_settings({}))


def test_only_instruments_that_pass_the_threshold_get_segments_and_all_of_them_are_shown():
    n = 40
    probs = np.full((n, len(LABELS)), 0.05, np.float32)
    probs[3, LABEL_INDEX["oboe"]] = 0.6  # one stray window: its clip confidence stays under 0.5
    for k, label in enumerate(["piano", "drums", "violin", "cello", "flute", "tuba", "harp"]):
        probs[:, LABEL_INDEX[label]] = 0.6 + 0.05 * k  # seven instruments pass: more than top_k = 5
    result = analyze_with(probs)
    assert "oboe" not in {s.label for s in result.segments}
    shown = [s.label for s in result.shown(5)]
    assert len(shown) == 7 and {s.label for s in result.segments} == set(shown)
    fig = label_plot(result, top_k=5)
    names = [a.text for a in fig.layout.annotations]
    assert len(names) == 7 and names[0] == "Harp 90.0 %"
    assert fig.layout.paper_bgcolor == "rgba(0,0,0,0)"  # the page's theme shows through


def test_quiet_result_plot_and_words():
    result = analyze_with(np.full((5, len(LABELS)), 0.05, np.float32))
    assert result.segments == [] and "No instrument detected" in " ".join(result.notices)
    assert describe(result, 5) == "No instrument detected: none reaches 50.0 %."
    fig = label_plot(result, 5)  # no empty lanes: the plot says it
    assert [a.text for a in fig.layout.annotations] == ["No instrument detected (none reaches 50.0 %)"]
    assert not fig.data


def test_lanes_under_the_threshold_stay_beside_an_instrument_heard():
    probs = np.full((5, len(LABELS)), 0.05, np.float32)
    probs[:, LABEL_INDEX["cello"]] = 0.9
    result = analyze_with(probs)
    assert "under the threshold throughout" in describe(result, 5)
    ticks = [a.text for a in label_plot(result, 5).layout.annotations]  # context lanes, greyed: under the threshold
    assert len(ticks) == 5 and ticks[0] == "Cello 90.0 %"
    assert all(t.startswith("<i>") and "5.0 %" in t for t in ticks[1:])  # italics; the page greys them (PAGE_CSS)


def test_hover_names_instrument_time_and_confidence():
    probs = np.full((6, len(LABELS)), 0.05, np.float32)
    probs[:, LABEL_INDEX["cello"]] = 0.9
    fig = label_plot(analyze_with(probs), 5)
    curve = next(t for t in fig.data if t.name == "Cello" and t.mode == "lines" and t.fill is None)
    assert "Cello" in curve.hovertemplate and "s" in curve.hovertemplate and "confidence" in curve.hovertemplate
    assert curve.customdata[0][2] == pytest.approx(90.0)


def test_error_records_keep_the_same_keys():
    record = error_record("x.wav", "broken")
    assert list(record) == ["file", "duration", "labels", "segments", "timeline", "error"]
    assert record["timeline"] is None


@pytest.mark.parametrize("value,text", [(0.995, "99.5 %"), (0.5, "50.0 %"), (0.9996, "100 %"), (0.0, "0.0 %")])
def test_percentages_have_one_decimal_under_100(value, text):
    assert percent(value) == text


def test_times_have_two_decimals():
    assert [seconds(x) for x in (0, 3, 3.75, 599.999)] == ["0.00", "3.00", "3.75", "600.00"]
