"""The analysis pipeline on a tiny random checkpoint: shapes, ordering, silence, limits, exports."""

import threading

import numpy as np
import pytest

from conftest import tone
from instrusense.analysis import SILENT_MESSAGE, analyze_file
from instrusense.export import analysis_record, audacity_labels, segments_csv
from instrusense.model import ModelUnavailableError, label_map_for, load_tagger
from instrusense.stopping import Stopped
from instrusense.plot import label_plot
from instrusense.scores import Segment
from instrusense.settings import load_settings
from instrusense.taxonomy import LABEL_INDEX, LABELS

LOW = load_settings({}, threshold=0.3)  # random weights score ~0.5: every label "plays"


def test_every_label_ranked_and_segments_inside_the_recording(tiny_whisper, write_audio):
    tagger = load_tagger(tiny_whisper)
    result = analyze_file(write_audio("a.wav", seconds=7.0, rate=44100, channels=2), tagger, LOW)
    assert sorted(s.label for s in result.labels) == sorted(LABELS)
    conf = [s.confidence for s in result.labels]
    assert conf == sorted(conf, reverse=True)
    assert result.segments and all(0 <= s.start < s.end <= 7.0 for s in result.segments)
    assert result.timeline.probs.shape == (len(result.timeline.cell_starts), len(LABELS))
    assert result.timeline.cell_ends[-1] == pytest.approx(7.0)


def test_silence_and_near_silence_detect_nothing(tiny_whisper, write_audio):
    tagger = load_tagger(tiny_whisper)
    for data in (np.zeros((32000, 1), np.float32), tone(2.0, 16000, level=1e-4)):
        result = analyze_file(write_audio("quiet.wav", data=data, subtype="FLOAT"), tagger, LOW)
        assert SILENT_MESSAGE in result.notices
        assert all(s.confidence == 0 for s in result.labels) and result.segments == []


def test_silent_part_of_a_recording_gets_no_segment(tiny_whisper, write_audio):
    data = np.concatenate([tone(3.0, 16000), np.zeros((6 * 16000, 1), np.float32)])
    result = analyze_file(write_audio("half.wav", data=data), load_tagger(tiny_whisper), LOW)
    assert result.segments and max(s.end for s in result.segments) <= 4.5


def test_long_recording_is_analysed_up_to_the_limit_with_a_notice(tiny_whisper, write_audio):
    settings = load_settings({}, threshold=0.3, max_duration_seconds=4.0)
    result = analyze_file(write_audio("long.wav", seconds=9.0), load_tagger(tiny_whisper), settings)
    assert result.duration == pytest.approx(9.0) and result.analysed_seconds == pytest.approx(4.0)
    assert any("first 0:04 of 0:09" in n for n in result.notices)
    assert max(s.end for s in result.segments) <= 4.0


def test_single_label_checkpoint_with_foreign_label_names(tiny_ast, write_audio):
    tagger = load_tagger(tiny_ast)
    assert not tagger.multi_label and tagger.native_window_seconds is None
    result = analyze_file(write_audio("a.wav", seconds=4.0), tagger, LOW)
    scored = {s.label for s in result.labels if s.confidence > 0}
    assert scored == {"piano", "violin", "drums", "mallet_percussion"}  # "Speech" is not an instrument


def test_label_map_ignores_non_instruments():
    m = label_map_for({0: "Speech", 1: "cello", 2: "Violin, fiddle"})
    assert m.tolist() == [-1, LABEL_INDEX["cello"], LABEL_INDEX["violin"]]


def test_missing_models_say_what_to_do(tmp_path):
    with pytest.raises(ModelUnavailableError, match="INSTRUSENSE_MODEL"):
        load_tagger(str(tmp_path / "nothing-here"))


def test_json_record_matches_the_contract(tiny_whisper, write_audio):
    result = analyze_file(write_audio("a.wav", seconds=4.0), load_tagger(tiny_whisper), LOW)
    record = analysis_record("a.wav", result)
    assert list(record) == ["file", "duration", "labels", "segments", "timeline", "error"]
    assert list(record["labels"][0]) == ["label", "family", "confidence"]
    assert list(record["segments"][0]) == ["label", "start", "end", "confidence"]
    assert len(record["labels"]) == len(LABELS) and record["error"] is None
    assert list(record["timeline"]) == ["window", "hop", "starts", "confidence"]
    assert len(record["timeline"]["confidence"]["cello"]) == len(record["timeline"]["starts"])


def test_csv_and_audacity_exports():
    segs = [Segment("cello", 0.0, 4.5, 0.881), Segment("french_horn", 3.0, 6.25, 0.6)]
    csv_text = segments_csv(segs).splitlines()
    assert csv_text[0] == "label,instrument,start,end,confidence"
    assert csv_text[2] == "french_horn,French horn,3.000,6.250,0.6000"
    aud = audacity_labels(segs).splitlines()
    assert aud[0].split("\t") == ["0.000000", "4.500000", "Cello (0.88)"]
    assert len(aud) == 2


def test_label_plot_has_one_lane_per_instrument_shown(tiny_whisper, write_audio):
    result = analyze_file(write_audio("a.wav", seconds=7.0), load_tagger(tiny_whisper), LOW)
    fig = label_plot(result, top_k=4)
    assert len(fig.layout.annotations) == len(result.shown(4)) >= 4
    assert fig.layout.xaxis.title.text == "time (s)" and tuple(fig.layout.xaxis.range) == (0.0, 7.0)


def test_a_stop_signal_stops_prediction_between_batches(tiny_whisper, write_audio):
    tagger = load_tagger(tiny_whisper)
    windows = np.zeros((10, 48000), np.float32)
    asked = []

    def third_batch() -> bool:
        asked.append(1)
        return len(asked) > 2

    with pytest.raises(Stopped):
        tagger.predict(windows, 2, should_stop=third_batch)
    assert len(asked) == 3  # checked before each batch; two ran, the third was never started
    stop = threading.Event()
    assert tagger.predict(windows, 4, should_stop=stop).shape == (10, len(LABELS))
    stop.set()
    with pytest.raises(Stopped):
        analyze_file(write_audio("a.wav", seconds=4.0), tagger, LOW, should_stop=stop)
