"""Segment edges: where a run of windows that hear an instrument is placed, against known onsets.

Window scores here follow what the shipped model does (benchmarks/segment_edges.md): a window scores high
when a note's attack lies in its first 2.5 s, wherever that is, and a held note after its attack scores low.
"""

from pathlib import Path

import numpy as np
import pytest

from instrusense.analysis import Analysis, analyze_recording
from instrusense.audio import Recording, quiet_stretches
from instrusense.scores import runs_above, runs_with_hysteresis
from instrusense.settings import DEFAULT_MODEL, load_settings
from instrusense.taxonomy import LABEL_INDEX, LABELS
from instrusense.windows import Geometry, snap_to_silence

RATE = 1000
SAX = LABEL_INDEX["saxophone"]


def analyse(samples: np.ndarray, probs: np.ndarray, **settings) -> Analysis:
    """The analysis of `samples` (at `RATE`) whose window scores are exactly `probs` (window 3 s, hop 1.5 s)."""

    class Fixed:
        sampling_rate, native_window_seconds = RATE, 3.0

        def predict(self, windows, batch_size, should_stop=None):
            return probs[:len(windows)]

    rec = Recording(samples.astype(np.float32), RATE, len(samples) / RATE)
    return analyze_recording(rec, Fixed(), load_settings({}, **settings))


def attack_scores(n_windows: int, attacks: np.ndarray, reach: float = 2.5) -> np.ndarray:
    """Window scores of a model that hears the saxophone when an attack lies in a window's first `reach` s."""
    probs = np.full((n_windows, len(LABELS)), 0.02, np.float32)
    starts = np.arange(n_windows) * 1.5
    heard = ((attacks[None, :] >= starts[:, None]) & (attacks[None, :] <= starts[:, None] + reach)).any(axis=1)
    probs[heard, SAX] = 0.95
    return probs


def noise(seconds: float) -> np.ndarray:
    return np.random.default_rng(0).normal(0, 0.1, int(seconds * RATE))


def cell_start(probs: np.ndarray) -> float:
    """Where the cell rule (each window stands for the hop-long stretch around its centre) starts the run."""
    first = runs_above(probs[:, SAX], 0.5)[0][0]
    return float(Geometry(3.0, 1.5).cells(len(probs), 1e9)[0][first])


def test_onsets_anywhere_in_a_hop_are_placed_within_half_a_second_on_average():
    # Notes every second from the onset on, over music that never stops (no silence to go by).
    onsets = 9.0 + np.linspace(0.0, 1.5, 16, endpoint=False)
    errors, cell_errors = [], []
    for onset in onsets:
        probs = attack_scores(19, onset + np.arange(12.0))  # 30 s: windows start 0 … 27
        result = analyse(noise(30.0), probs)
        (segment,) = [s for s in result.segments if s.label == "saxophone"]
        errors.append(segment.start - onset)
        cell_errors.append(cell_start(probs) - onset)
    assert np.mean(np.abs(errors)) <= 0.5
    assert max(np.abs(errors)) <= 1.0
    assert np.mean(np.abs(cell_errors)) > 0.9  # the cell of the first window that hears it: a second early


def test_the_medley_layout_places_saxophone_and_guitar_where_they_enter():
    # The medley example's shape: saxophone from 3 s and guitar from 9 s (attacks there), 13.5 s in all.
    probs = np.full((8, len(LABELS)), 0.02, np.float32)
    probs[[1, 2], SAX] = [0.80, 0.99]
    probs[[5, 6], LABEL_INDEX["acoustic_guitar"]] = [0.98, 0.90]
    samples = np.concatenate([noise(10.2), np.zeros(int(3.3 * RATE))])  # the guitar's note ends at 10.2 s
    segments = {s.label: (s.start, s.end) for s in analyse(samples, probs).segments}
    assert segments["saxophone"][0] == pytest.approx(3.0)  # the cell rule: 2.25
    assert segments["acoustic_guitar"] == pytest.approx((9.0, 10.2), abs=0.05)  # the cell rule: 8.25–11.25


def test_a_held_note_keeps_its_segment_over_weaker_windows():
    # The saxophone example: one held note for 4 s; the second window, past the attack, scores 0.25.
    probs = np.full((2, len(LABELS)), 0.02, np.float32)
    probs[:, SAX] = [0.99, 0.25]
    probs[1, LABEL_INDEX["harpsichord"]] = 0.31  # a weak window of a label under the threshold: nothing
    result = analyse(noise(4.0), probs)
    assert [(s.label, s.start, s.end) for s in result.segments] == [("saxophone", 0.0, 4.0)]
    assert result.segments[0].confidence == pytest.approx(0.62)
    strict = analyse(noise(4.0), probs, extend_threshold=0.5)  # without hysteresis: half of it
    assert [(s.start, s.end) for s in strict.segments] == [(0.0, 2.25)]


def test_hysteresis_extends_runs_but_never_starts_one():
    values = np.array([0.3, 0.6, 0.3, 0.1, 0.3, 0.4, 0.1, 0.7, 0.2])
    assert runs_with_hysteresis(values, 0.5, 0.2) == [(0, 3), (7, 9)]  # 0.3, 0.4 alone: no segment
    assert runs_with_hysteresis(values, 0.5, 0.5) == runs_above(values, 0.5) == [(1, 2), (7, 8)]
    assert runs_with_hysteresis(values, 0.5, 0.9) == runs_above(values, 0.5)  # never above the threshold
    assert runs_with_hysteresis(np.zeros(0), 0.5, 0.2) == []


def test_edges_go_to_the_silence_beside_them():
    # Silence, the saxophone from 2.53 s to 9.96 s, silence to 14 s: its windows are 0 … 5.
    samples = np.zeros(14 * RATE)
    samples[2530:9960] = noise(7.43)
    probs = np.full((9, len(LABELS)), 0.02, np.float32)
    probs[0:6, SAX] = 0.95
    (segment,) = analyse(samples, probs).segments
    assert segment.start == pytest.approx(2.53, abs=0.05) and segment.end == pytest.approx(9.96, abs=0.05)


def test_a_pause_inside_the_sound_does_not_move_an_edge():
    # The sound runs from 0 with a 0.1 s pause at 2.4 s, inside the first window: the start stays at 0.
    samples = noise(6.0)
    samples[2400:2500] = 0.0
    probs = np.full((3, len(LABELS)), 0.02, np.float32)
    probs[:, SAX] = 0.9
    (segment,) = analyse(samples, probs).segments
    assert (segment.start, segment.end) == (0.0, 6.0)


def test_run_span_uses_the_overlap_and_stays_in_the_recording():
    g = Geometry(3.0, 1.5)
    assert g.run_span(4, 7, 20, 31.5) == (7.5, 12.75)  # the end of window 3 … the end of window 7's cell
    assert g.run_span(0, 2, 20, 31.5) == (0.0, 5.25)
    assert g.run_span(18, 19, 20, 31.5) == (28.5, 31.5)
    assert g.run_span(5, 5, 20, 31.5) == (9.0, 9.75)  # one window: at most half a hop before its end
    start, end = Geometry(3.0, 1.0).run_span(5, 5, 20, 30.0)  # a finer hop: still not empty
    assert end - start == pytest.approx(0.5) and end == pytest.approx(7.0)
    assert Geometry(3.0, 3.0).run_span(2, 3, 10, 30.0) == (6.0, 12.0)  # no overlap: the windows themselves
    assert g.span(19, 29.0) == (28.5, 29.0) and g.span(2, 29.0) == (3.0, 6.0)


def test_snapping_needs_a_silence_in_the_edge_windows_and_keeps_something():
    silences = np.array([[0.0, 2.5], [12.0, 14.0]])
    assert snap_to_silence(3.0, 11.0, (1.5, 4.5), (9.0, 12.0), silences) == (2.5, 11.0)  # 12.0 is past the window
    assert snap_to_silence(3.0, 11.0, (3.0, 6.0), (9.0, 12.5), silences) == (3.0, 12.0)
    assert snap_to_silence(1.0, 13.0, (0.0, 3.0), (10.5, 13.5), silences) == (2.5, 12.0)  # edges inside silences
    assert snap_to_silence(3.0, 11.0, (1.5, 4.5), (9.0, 12.0), np.zeros((0, 2))) == (3.0, 11.0)
    assert snap_to_silence(0.5, 1.0, (0.0, 3.0), (0.0, 3.0), silences) == (0.5, 1.0)  # all silent: unchanged
    # A start moved past a leading silence takes the end along (at most to the last window's end) …
    assert snap_to_silence(0.0, 2.25, (0.0, 3.0), (0.0, 3.0), np.array([[0.0, 2.2]]), shortest=0.75) == (2.2, 2.95)
    assert snap_to_silence(0.0, 2.25, (0.0, 3.0), (0.0, 3.0), np.array([[0.0, 2.6]]), shortest=0.75) == (2.6, 3.0)
    # … but not into a silence after it.
    assert snap_to_silence(0.0, 2.25, (0.0, 3.0), (0.0, 3.0), np.array([[0.0, 2.2], [2.4, 3.0]]),
                           shortest=0.75) == (2.2, 2.4)


def test_quiet_stretches_find_the_pauses():
    x = np.zeros(16000 * 4, np.float32)
    x[8000:40000] = 0.1
    assert quiet_stretches(x, 16000, -60.0).tolist() == [[0.0, 0.5], [2.5, 4.0]]
    assert quiet_stretches(x[8000:40000], 16000, -60.0).shape == (0, 2)
    x[20000:20400] = 1e-4  # −80 dBFS for 25 ms: shorter than a frame, not a pause
    assert quiet_stretches(x, 16000, -60.0).tolist() == [[0.0, 0.5], [2.5, 4.0]]


@pytest.mark.slow
@pytest.mark.skipif(not (Path(DEFAULT_MODEL) / "config.json").is_file(), reason="no shipped model")
def test_the_shipped_model_places_the_examples_segments():
    from instrusense.analysis import analyze_file
    from instrusense.model import tagger_for

    settings = load_settings({})
    tagger = tagger_for(settings)
    examples = Path(__file__).resolve().parents[1] / "examples"
    sax = analyze_file(examples / "saxophone.flac", tagger, settings)
    assert [(s.label, s.start, s.end) for s in sax.segments] == [("saxophone", 0.0, 4.0)]  # was 0–2.25
    medley = {s.label: (s.start, s.end) for s in analyze_file(examples / "medley.flac", tagger, settings).segments}
    assert medley["saxophone"][0] == pytest.approx(3.0, abs=0.5)  # was 2.25
    assert medley["acoustic_guitar"] == pytest.approx((9.0, 10.19), abs=0.5)  # was 8.25–11.25


def test_the_benchmark_scores_edges_missed_extra_and_wrong_label_time():
    from benchmarks.segment_edges import Truth, audible_extent, score_clip

    truth = [Truth("piano", 2.0, 8.0), Truth("drums", 7.9, 12.0), Truth("cello", 13.0, 14.0)]
    segments = [{"label": "piano", "start": 1.5, "end": 5.0}, {"label": "piano", "start": 6.0, "end": 8.5},
                {"label": "drums", "start": 8.4, "end": 12.0}, {"label": "flute", "start": 0.0, "end": 1.0}]
    r = score_clip(truth, segments)
    piano, drums, cello = r["segments_true"]
    assert (piano["onset_error_s"], piano["offset_error_s"], piano["missed_s"]) == (0.5, 0.5, 1.0)
    assert not piano["onset_in_music"] and piano["offset_in_music"] and drums["onset_in_music"]
    assert (drums["onset_error_s"], drums["offset_error_s"]) == (0.5, 0.0) and not cello["found"]
    assert (r["missed_s"], r["extra_s"], r["wrong_label_s"]) == (2.5, 1.0, 1.0)
    assert r["mean_edge_error_s"] == 0.375 and r["edges_within_0_5_s"] == 4 and r["missed_segments"] == 1
    assert r["mean_edge_error_in_music_s"] == 0.5 and r["edges_in_music"] == 2
    note = np.concatenate([np.zeros(1600), np.full(16000, 0.5), np.full(1600, 0.001)]).astype(np.float32)
    assert audible_extent(note) == pytest.approx((0.1, 1.1))  # −54 dB of tail is not heard
