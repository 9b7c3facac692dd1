"""The app's live mode handlers, called as Gradio calls them (chunks of (rate, int16) from the microphone)."""

import gradio as gr
import numpy as np
import pytest
import soundfile as sf

import app
from app_live import NOTHING_RECORDED, make_live, now_playing, rolling_frame, take_folder
from conftest import tone
from instrusense.model import load_tagger
from instrusense.settings import load_settings


@pytest.fixture(scope="module")
def handlers(tiny_whisper):
    settings = load_settings({}, model=tiny_whisper, threshold=0.3, live_view_seconds=4.0)
    analyze, _ = app.make_analyze(settings)
    return settings, analyze, make_live(settings, load_tagger(tiny_whisper), analyze)


def test_live_view_rolls_and_stop_gives_the_upload_analysis_of_the_take(handlers):
    settings, analyze, (on_chunk, on_stop) = handlers
    take = np.round(tone(7.0, 48000, channels=2) * 32767).astype(np.int16)  # what a browser microphone sends
    session, frames = None, []
    for i in range(0, len(take), 24000):  # 0.5 s chunks
        ranking, plot, session = on_chunk((48000, take[i:i + 24000]), session)
        frames.append(plot.value)
    assert len(ranking) == settings.top_k and all(0 < c <= 1 for c in ranking.values())
    assert session.analyser.history[-1].time == pytest.approx(7.0)
    last = frames[-1]["data"]
    times = sorted({row[0] for row in last})
    assert times[0] >= 7.0 - settings.live_view_seconds - 1e-9 and times[-1] == pytest.approx(7.0)  # rolling
    *shown, state = on_stop(session)
    uploaded = take_folder().parent / "test-app-live" / "take.wav"  # the handler reads only uploads
    uploaded.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(uploaded), take, 48000, subtype="PCM_16")
    upload = analyze(str(uploaded))
    uploaded.unlink()
    assert state is None  # the session's memory is released at Stop
    record, upload_record = shown[5], upload[5]
    assert record["file"].startswith("live-") and {**record, "file": "x"} == {**upload_record, "file": "x"}
    assert shown[0] == upload[0] and list(take_folder().rglob("live-*.wav")) == []  # the take file is gone


def test_live_mode_refuses_what_it_cannot_use(handlers):
    _, _, (on_chunk, on_stop) = handlers
    with pytest.raises(gr.Error, match=NOTHING_RECORDED[:20]):
        on_stop(None)
    _, _, session = on_chunk((16000, np.zeros(800, np.int16)), None)
    with pytest.raises(gr.Error, match="sample rate changed"):
        on_chunk((44100, np.zeros(800, np.int16)), session)
    with pytest.raises(gr.Error, match="too short"):
        on_stop(session)
    with pytest.raises(gr.Error, match="PCM samples"):
        on_chunk((16000, np.array(["x"])), None)


def test_views_of_an_empty_or_silent_stream_are_empty():
    assert now_playing(None, 5) == {} and rolling_frame([], 5, 30.0).empty
