"""The streaming analyser: live hops, incremental segments, and stream-final == batch on the same audio."""

import numpy as np
import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from conftest import tone
from instrusense.analysis import analyze_file
from instrusense.audio import AudioError
from instrusense.export import analysis_record
from instrusense.model import load_tagger
from instrusense.scores import runs_above
from instrusense.settings import load_settings
from instrusense.streaming import StreamAnalyser, StreamError, _OpenRuns
from instrusense.taxonomy import LABELS
from instrusense.windows import Geometry

LOW = load_settings({}, threshold=0.3, max_duration_seconds=8.0)


def _feed(analyser: StreamAnalyser, data: np.ndarray, chunk: int) -> list:
    hops = []
    for i in range(0, len(data), chunk):
        hops += analyser.feed(data[i:i + chunk])
    return hops


def _music(seconds: float, rate: int, channels: int) -> np.ndarray:
    """Tones that change every 2 s, a silent stretch, and a loud end (the peak comes last)."""
    parts = [tone(2.0, rate, channels, freq=f, level=lv) for f, lv in ((220, 0.2), (660, 0.3), (330, 0.1))]
    parts.append(np.zeros((rate, channels), np.float32))
    parts.append(tone(seconds - 7.0, rate, channels, freq=880, level=0.9))
    return np.concatenate(parts)


def _same(a, b) -> None:
    assert analysis_record("x", a) == analysis_record("x", b)
    np.testing.assert_array_equal(a.timeline.probs, b.timeline.probs)
    np.testing.assert_array_equal(a.timeline.cell_starts, b.timeline.cell_starts)
    assert a.notices == b.notices


@pytest.mark.parametrize("rate,channels,subtype,chunk", [
    (16000, 1, "FLOAT", 4000),      # the model's rate, hop-unaligned chunks
    (44100, 2, "FLOAT", 317),       # odd chunks, resampled, stereo
    (48000, 1, "PCM_16", 48000),    # what a browser microphone sends, one-second chunks
    (22050, 1, "FLOAT", 22050 * 10),  # one big chunk (over the analysis limit: cut, with a notice)
])
def test_stream_final_equals_batch_analysis_of_the_same_audio(tiny_whisper, write_audio, rate, channels, subtype,
                                                               chunk):
    tagger = load_tagger(tiny_whisper)
    data = _music(10.0, rate, channels)
    data[rate // 2: rate // 2 + 5] = np.nan  # repaired alike, with the same notice
    if subtype == "PCM_16":
        data = np.round(np.nan_to_num(data) * 32767).astype(np.int16)
    path = write_audio("take.wav", data=data, rate=rate, subtype=subtype)
    analyser = StreamAnalyser(tagger, LOW, rate)
    hops = _feed(analyser, data, chunk)
    final = analyser.finish()
    _same(final, analyze_file(path, tagger, LOW))
    assert final.analysed_seconds == pytest.approx(8.0) and final.duration == pytest.approx(10.0)
    # one hop every 1.5 s of audio, however the chunks fell; each covers the window ending there
    assert [h.time for h in hops] == pytest.approx([1.5 * k for k in range(1, 7)])
    assert [h.start for h in hops] == pytest.approx([0.0, 0.0, 1.5, 3.0, 4.5, 6.0])
    assert len(analyser.history) <= analyser.history.maxlen


def test_over_range_float_audio_and_silence_stream_like_files(tiny_whisper, write_audio):
    tagger = load_tagger(tiny_whisper)
    loud = tone(4.0, 16000, level=3.0)  # float beyond ±1: scaled back by its peak, live and batch
    quiet = np.zeros((3 * 16000, 1), np.float32)
    for data in (loud, quiet):
        analyser = StreamAnalyser(tagger, LOW, 16000)
        hops = _feed(analyser, data, 1000)
        _same(analyser.finish(), analyze_file(write_audio("f.wav", data=data, subtype="FLOAT"), tagger, LOW))
        assert all(h.probs.max() > 0 for h in hops) == (data is loud)


def test_a_short_hop_updates_the_live_view_often_and_keeps_it_bounded(tiny_whisper):
    tagger = load_tagger(tiny_whisper)
    settings = load_settings({}, live_view_seconds=4.0)
    analyser = StreamAnalyser(tagger, settings, 16000, hop_seconds=0.4)
    hops = _feed(analyser, tone(9.0, 16000), 1600)
    times = [h.time for h in hops]
    assert times[:8] == pytest.approx([0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 2.8, 3.0])  # the first whole window too
    assert np.diff(times[7:]) == pytest.approx(np.full(len(times) - 8, 0.4))
    assert len(analyser.history) == analyser.history.maxlen == 11
    assert analyser.history[-1].time == pytest.approx(9.0)


@hsettings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(0, 1), min_size=len(LABELS), max_size=len(LABELS)), min_size=1, max_size=12),
       st.sampled_from([0.3, 0.5, 0.7]))
def test_segments_closed_hop_by_hop_are_the_runs_above_the_threshold(rows, threshold):
    probs = np.array(rows)
    starts, ends = Geometry(3.0, 1.5).cells(len(probs), 1.5 * len(probs) + 1.5)
    runs = _OpenRuns(threshold)
    live = [s for i, p in enumerate(probs) for s in runs.push(p, starts[i], ends[i])] + runs.close_all()
    expected = {(LABELS[j], float(starts[a]), float(ends[b - 1]), round(float(probs[a:b, j].mean()), 9))
                for j in range(len(LABELS)) for a, b in runs_above(probs[:, j], threshold)}
    assert {(s.label, s.start, s.end, round(s.confidence, 9)) for s in live} == expected
    assert len(live) == len(expected)


def test_bad_streams_get_clear_messages(tiny_whisper):
    tagger = load_tagger(tiny_whisper)
    settings = load_settings({}, stream_max_chunk_seconds=2.0)
    with pytest.raises(StreamError, match="Unsupported sample rate 100 Hz"):
        StreamAnalyser(tagger, settings, 100)
    analyser = StreamAnalyser(tagger, settings, 16000)
    with pytest.raises(StreamError, match="PCM samples"):
        analyser.feed(np.array(["not", "audio"]))
    with pytest.raises(StreamError, match="shape"):
        analyser.feed(np.zeros((10, 2, 2), np.float32))
    with pytest.raises(StreamError, match="at most 2 s per chunk"):
        analyser.feed(np.zeros(16000 * 3, np.float32))
    with pytest.raises(AudioError, match="empty"):
        analyser.finish()
    analyser.feed(np.zeros(100, np.int16))
    with pytest.raises(AudioError, match="too short"):
        analyser.finish()


def test_live_scoring_threads_are_restored_and_leave_running_threads_alone():
    import threading

    import torch

    from instrusense.streaming import torch_threads

    before, seen = torch.get_num_threads(), []
    go, done = threading.Event(), threading.Event()

    def running_thread():  # already running: OpenMP keeps its own count
        torch.get_num_threads()
        go.wait()
        seen.append(torch.get_num_threads())
        done.set()

    threading.Thread(target=running_thread).start()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
        go.set()
        done.wait(10)
    assert torch.get_num_threads() == before and seen == [before]


def test_a_view_that_fell_behind_scores_only_the_newest_window_and_keeps_all_audio(tiny_whisper):
    tagger = load_tagger(tiny_whisper)
    data = tone(9.0, 16000)
    analyser = StreamAnalyser(tagger, LOW, 16000, hop_seconds=0.5)
    assert analyser.feed(data[:16000 * 4], max_scored=0) == []
    (hop,) = analyser.feed(data[16000 * 4:], max_scored=1)
    assert hop.time == pytest.approx(9.0) and list(analyser.history) == [hop]
    assert analyser.finish().analysed_seconds == pytest.approx(8.0)  # the take is whole (up to the limit)


def test_kept_chunks_are_scored_apart_the_newest_hop_due_with_its_whole_window(tiny_whisper):
    """`keep` takes chunks without the model and `score_pending` (another thread, in the app) scores the newest hop
    due when it runs: the window `feed` scores at that point, however many chunks came since the hop fell due."""
    tagger = load_tagger(tiny_whisper)
    rate, chunk = 48000, 4800  # 0.1 s chunks, as a browser sends
    data = _music(9.0, rate, 1)
    kept, fed = (StreamAnalyser(tagger, LOW, rate, hop_seconds=0.5) for _ in range(2))
    assert kept.score_pending() == []  # nothing due yet
    due = int(6.0 * rate)  # scored by `fed` as it falls due; by `kept` four chunks later
    for i in range(0, int(6.4 * rate), chunk):
        kept.keep(data[i:i + chunk])
        hops = fed.feed(data[i:i + chunk], max_scored=1 if i + chunk == due else 0)
        if i + chunk == due:
            (reference,) = hops
    (late,) = kept.score_pending()
    assert kept.score_pending() == [] and late.time == pytest.approx(6.0)
    assert reference.time == late.time and late.start == reference.start
    np.testing.assert_array_equal(late.probs, reference.probs)
    np.testing.assert_array_equal(kept.recording().samples, fed.recording().samples)  # the same take
