import numpy as np
import pytest

from instrusense.scores import activate, clip_confidence, extract_segments, runs_above
from instrusense.windows import Geometry, frame, window_offsets


@pytest.mark.parametrize("n,window,hop,expected", [(10, 4, 2, [0, 2, 4, 6]), (4, 4, 2, [0]), (3, 4, 2, [0]),
                                                   (11, 4, 2, [0, 2, 4, 6, 8]), (12, 4, 4, [0, 4, 8])])
def test_windows_cover_the_signal(n, window, hop, expected):
    starts = window_offsets(n, window, hop)
    assert starts.tolist() == expected
    assert starts[-1] + window >= n


def test_frame_pads_the_tail_with_silence():
    x = np.arange(1, 11, dtype=np.float32)
    w = frame(x, 4, 3)
    assert w.shape == (3, 4)
    assert w[1].tolist() == [4, 5, 6, 7]
    assert w[2].tolist() == [7, 8, 9, 10]
    w = frame(x, 4, 4)
    assert w[-1].tolist() == [9, 10, 0, 0]


def test_cells_tile_the_recording():
    starts, ends = Geometry(3.0, 1.5).cells(6, 10.0)
    assert starts[0] == 0 and ends[-1] == 10.0
    assert np.allclose(starts[1:], ends[:-1])
    s1, e1 = Geometry(3.0, 1.5).cells(1, 1.2)
    assert (s1[0], e1[0]) == (0.0, 1.2)


def test_a_live_cell_is_the_cell_of_the_same_window_in_a_file():
    geometry = Geometry(3.0, 1.5)
    starts, ends = geometry.cells(8, 100.0)  # the last cell runs to the end of the recording; the others are equal
    assert [geometry.cell(i) for i in range(7)] == list(zip(starts.tolist(), ends.tolist()))[:7]
    assert geometry.cell(7)[0] == starts[7]


@pytest.mark.parametrize("native,window,hop,expected", [
    (None, 3.0, 1.5, (3.0, 1.5)),   # a model without a fixed input: the setting's window
    (3.0, 5.0, 1.5, (3.0, 1.5)),    # a Whisper-style model brings its own
    (2.0, 3.0, 2.5, (2.0, 2.0)),    # the hop never passes the window
])
def test_one_rule_resolves_window_and_hop(native, window, hop, expected):
    g = Geometry.resolve(native, window, hop)
    assert (g.window, g.hop) == expected
    assert g.in_samples(16000) == (round(expected[0] * 16000), round(expected[1] * 16000))


def test_activation_sigmoid_and_softmax():
    logits = np.array([[0.0, 2.0, -2.0]])
    assert np.allclose(activate(logits, True), [[0.5, 0.8808, 0.1192]], atol=1e-4)
    soft = activate(logits, False)
    assert np.isclose(soft.sum(), 1.0) and soft.argmax() == 1


def test_clip_confidence_counts_an_instrument_that_plays_only_briefly():
    probs = np.zeros((100, 2))
    probs[:10, 0] = 0.9  # plays in 10 % of the recording
    probs[50, 1] = 1.0  # one spurious window
    conf = clip_confidence(probs, 0.1)
    assert conf[0] == pytest.approx(0.9)
    assert conf[1] == pytest.approx(0.1)
    assert clip_confidence(probs[:3], 0.1)[1] == 0  # short clip: max
    assert clip_confidence(np.array([[0.2, 0.7]]), 0.1).tolist() == [0.2, 0.7]


def test_runs_above_merges_adjacent_windows():
    assert runs_above(np.array([0.1, 0.6, 0.7, 0.2, 0.9]), 0.5) == [(1, 3), (4, 5)]
    assert runs_above(np.array([0.9, 0.9]), 0.5) == [(0, 2)]
    assert runs_above(np.array([0.1]), 0.5) == []


def test_segments_merge_and_come_in_time_order_with_no_cap_per_label():
    probs = np.array([[0.9, 0.1], [0.8, 0.6], [0.1, 0.6], [0.7, 0.1], [0.1, 0.1], [0.6, 0.1]])

    def place(first, last):  # window i stands for [i, i + 1)
        return float(first), last + 1.0

    segs = extract_segments(probs, ("a", "b"), 0.5, 0.5, place)
    assert [(s.label, s.start, s.end) for s in segs] == [("a", 0.0, 2.0), ("b", 1.0, 3.0), ("a", 3.0, 4.0),
                                                         ("a", 5.0, 6.0)]
    assert segs[0].confidence == pytest.approx(0.85)
    many = np.tile([[0.9], [0.1]], (200, 1))  # 200 separate stretches: every one is kept
    assert len(extract_segments(many, ("a",), 0.5, 0.5, place)) == 200
