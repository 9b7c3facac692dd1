"""The app's live mode handlers, called as Gradio calls them (chunks of (rate, int16) from the microphone)."""

from concurrent.futures import Executor, Future

import gradio as gr
import numpy as np
import pytest
import soundfile as sf

import app
from app_live import (NO_INSTRUMENT, NOTHING_RECORDED, assign_colours, colour_map, make_live, now_playing, rolling_frame,
                      take_folder)
from conftest import tone
from instrusense.model import load_tagger
from instrusense.settings import load_settings
from instrusense.streaming import Hop
from instrusense.taxonomy import LABEL_INDEX, LABELS, display_name


class RunNow(Executor):
    """Runs a submitted call at once, so each chunk's handler returns the hop its chunk completed."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


class Held(Executor):
    """Holds submitted calls until `release`: a model call still running while chunks arrive."""

    def __init__(self):
        self.held: list[tuple[Future, object]] = []

    def submit(self, fn, /, *args, **kwargs) -> Future:
        self.held.append((Future(), lambda: fn(*args, **kwargs)))
        return self.held[-1][0]

    def release(self) -> None:
        for future, call in self.held:
            future.set_result(call())
        self.held = []


@pytest.fixture(scope="module")
def handlers(tiny_whisper):
    settings = load_settings({}, model=tiny_whisper, threshold=0.3, live_view_seconds=4.0)
    analyze, _ = app.make_analyze(settings)
    return settings, analyze, make_live(settings, load_tagger(tiny_whisper), analyze, scorer=RunNow())


def test_chunks_are_kept_while_the_model_is_busy_and_its_hop_shows_with_the_next_chunk(handlers, tiny_whisper):
    """Gradio keeps only the latest chunk sent while a stream's handler runs, so the handler never waits for the
    model: every chunk reaches the take while a model call is pending, and the call's hop shows when it is done."""
    settings, analyze, _ = handlers
    held = Held()
    on_chunk, on_stop = make_live(settings, load_tagger(tiny_whisper), analyze, scorer=held)
    chunk = np.round(tone(0.5, 48000) * 32767).astype(np.int16)
    skip, session = gr.skip(), None
    for _ in range(6):  # a hop is due at once; while its model call is held the chunks are kept, nothing is shown
        ranking, plot, session = on_chunk((48000, chunk), session)  # (and no second call queues)
        assert ranking == {} and plot == skip and len(held.held) == 1
    held.release()  # the call scores the newest hop due when it runs (3 s); the next chunk shows it
    ranking, plot, session = on_chunk((48000, chunk), session)
    assert [h.time for h in session.analyser.history] == [pytest.approx(3.0)] and ranking["confidences"]
    assert plot != skip and len(held.held) == 1
    held.held[0][0].set_running_or_notify_cancel()  # running: the next chunk repeats the ranking, skips the plot
    again, plot, session = on_chunk((48000, chunk), session)
    assert again == ranking and plot == skip and session.analyser.seconds == pytest.approx(4.0)
    held.release()
    *shown, state = on_stop(session)
    record = shown[5]
    assert record["duration"] == pytest.approx(4.0) and state is None  # the whole take, every chunk in it
    assert [h.time for h in session.analyser.history] == [pytest.approx(3.0), pytest.approx(4.0)]


def test_a_failed_live_score_is_reported_and_the_take_is_still_analysed(handlers, tiny_whisper):
    settings, analyze, _ = handlers
    held = Held()
    on_chunk, on_stop = make_live(settings, load_tagger(tiny_whisper), analyze, scorer=held)
    chunk = np.round(tone(0.5, 48000) * 32767).astype(np.int16)
    _, _, session = on_chunk((48000, chunk), None)
    held.held.pop()[0].set_exception(RuntimeError("model broke"))
    with pytest.raises(gr.Error, match="live view failed"):
        on_chunk((48000, chunk), session)
    *shown, state = on_stop(session)
    assert shown[5]["duration"] == pytest.approx(1.0) and state is None  # both chunks, analysed as an upload


def test_live_view_rolls_and_stop_gives_the_upload_analysis_of_the_take(handlers):
    settings, analyze, (on_chunk, on_stop) = handlers
    take = np.round(tone(7.0, 48000, channels=2) * 32767).astype(np.int16)  # what a browser microphone sends
    session, frames = None, []
    for i in range(0, len(take), 24000):  # 0.5 s chunks
        ranking, plot, session = on_chunk((48000, take[i:i + 24000]), session)
        frames.append(plot.value)
    assert len(ranking["confidences"]) == settings.top_k and all(0 < c["confidence"] <= 1 for c in ranking["confidences"])
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
    assert now_playing(None, 5, 0.5) == {} and rolling_frame([], 5, 30.0).empty


def _hop(time_s: float, **scores: float) -> Hop:
    probs = np.zeros(len(LABELS), np.float32)
    for label, c in scores.items():
        probs[LABEL_INDEX[label]] = c
    return Hop(time=time_s, start=max(time_s - 3.0, 0.0), probs=probs, closed=[])


def test_now_playing_headlines_only_an_instrument_that_reaches_the_threshold():
    weak = now_playing(_hop(1.0, saxophone=0.13, drums=0.0001), 5, 0.5)
    assert weak["label"] == NO_INSTRUMENT  # a 13 % guess is listed, not headlined
    assert [c["label"] for c in weak["confidences"]] == ["Saxophone"]  # nothing that would read "0 %"
    assert now_playing(_hop(1.0, saxophone=0.9, piano=0.2), 5, 0.5)["label"] == "Saxophone"


def test_every_frame_of_the_rolling_plot_names_every_instrument_in_a_fixed_colour():
    """The browser fixes the colour scale to the first frame's instruments: every frame names all of them, those not
    drawn with an empty (NaN) row, so an instrument first heard later is drawn too."""
    history = [_hop(t, piano=0.8) for t in (0.5, 1.0)] + [_hop(t, piano=0.8, saxophone=0.9) for t in (1.5, 2.0)]
    first, later = rolling_frame(history[:1], 5, 30.0), rolling_frame(history, 5, 30.0)
    assert set(first["instrument"]) == set(later["instrument"]) == {display_name(label) for label in LABELS}
    drawn = later.dropna()
    assert set(drawn["instrument"]) == {"Piano", "Saxophone"} and len(drawn) == 8
    assert first.dropna()["instrument"].tolist() == ["Piano"]
    assert set(colour_map({})) == {display_name(label) for label in LABELS}  # a colour for every instrument named


def test_the_lines_shown_have_distinct_colours_that_stay_while_they_are_shown():
    colours: dict[str, str] = {}
    assert assign_colours(colours, ["Piano", "Saxophone"])
    first = dict(colours)
    assert not assign_colours(colours, ["Saxophone", "Piano"])  # reordered: nothing changes
    assign_colours(colours, ["Saxophone", "Piano", "Drums", "Banjo", "Harp"])
    assert {k: colours[k] for k in first} == first and len({colours[k] for k in colours}) == 5
    assign_colours(colours, ["Saxophone", "Drums", "Banjo", "Harp", "Violin"])  # piano out, violin in
    assign_colours(colours, ["Piano", "Drums", "Banjo", "Harp", "Violin"])  # piano back, saxophone out
    shown = ["Piano", "Drums", "Banjo", "Harp", "Violin"]
    assert len({colours[k] for k in shown}) == 5


def test_the_plots_legend_and_axis_are_sent_only_when_they_change(handlers):
    """The browser redraws the whole chart for a changed setting (and drops the next frame's data meanwhile): the
    legend goes out when the strongest instruments change, the axis pinned to [0, view] at first and freed once."""
    settings, _, (on_chunk, _) = handlers
    chunk = np.round(tone(0.5, 48000) * 32767).astype(np.int16)
    session, sent = None, []
    for _ in range(12):  # 6 s, the test's view is 4 s
        _, plot, session = on_chunk((48000, chunk), session)
        sent.append({k: getattr(plot, k) for k in ("colors_in_legend", "x_lim")
                     if k in plot._constructor_args[0]})
    assert sent[0]["x_lim"] == [0.0, settings.live_view_seconds] and sent[0]["colors_in_legend"]
    freed = [i for i, s in enumerate(sent) if "x_lim" in s and s["x_lim"] is None]
    assert len(freed) == 1 and sum("x_lim" in s for s in sent) == 2  # pinned once, freed once
    legends = [s["colors_in_legend"] for s in sent if "colors_in_legend" in s]
    assert all(a != b for a, b in zip(legends, legends[1:]))  # sent only when it changed
