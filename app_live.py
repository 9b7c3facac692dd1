"""The app's live mode: the microphone streams, a "now playing" ranking and a rolling timeline of the
last ~30 s update every INSTRUSENSE_LIVE_HOP_SECONDS, and when recording stops the whole take is
analysed as an upload is.

Each browser session holds one `LiveSession` in a `gr.State`: the library's `StreamAnalyser`, whose
memory is bounded (README, "Listen live"). Gradio drops the state when the page closes or after
`time_to_live` without a chunk; stopping the recording drops it at once.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder
import numpy as np
import pandas as pd
import soundfile as sf

from instrusense.model import Tagger
from instrusense.settings import Settings
from instrusense.streaming import Hop, StreamAnalyser, StreamError
from instrusense.taxonomy import LABELS, display_name
from space_guards import LIVE

log = logging.getLogger("instrusense.app.live")


STATE_TTL_S = 60  # a session that sends no chunk for this long is dropped (tab gone without a stop)
# Browsers process a microphone for speech by default (noise suppression removes sustained tones, automatic gain
# pumps the level); InstruSense listens to music, so every audio capture on the page asks for the raw signal.
MUSIC_MICROPHONE_JS = """
const media = navigator.mediaDevices;
if (media && media.getUserMedia && !media.__instrusense) {
  const original = media.getUserMedia.bind(media);
  media.getUserMedia = (constraints) => original(constraints && constraints.audio === true
    ? {...constraints, audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false}}
    : constraints);
  media.__instrusense = true;
}
"""
NOTHING_RECORDED = "Nothing was recorded: allow the microphone, press Record, play, then Stop."


def take_folder() -> Path:
    """Where a take is written for the upload handler, which reads only files in Gradio's upload folder."""
    return Path(get_upload_folder()) / "instrusense-live"


@dataclass
class LiveSession:
    analyser: StreamAnalyser
    started: float
    """Wall-clock time (time.time) the session's audio began, as its first chunk tells (names the take)."""


def now_playing(hop: Hop | None, top_k: int) -> dict[str, float]:
    """The ranking of the latest window (display names), for `gr.Label`."""
    if hop is None:
        return {}
    return {display_name(label): c for label, c in hop.top(top_k) if c > 0}


def rolling_frame(history: list[Hop], top_k: int, view_s: float) -> pd.DataFrame:
    """Long-format scores of the instruments strongest in the view (time, instrument, confidence)."""
    if not history:
        return pd.DataFrame({"time (s)": [], "instrument": [], "confidence": []})
    probs = np.stack([h.probs for h in history])
    strongest = [j for j in np.argsort(-probs.max(axis=0), kind="stable")[:top_k] if probs[:, j].max() > 0]
    times = np.array([h.time for h in history])
    keep = times >= times[-1] - view_s
    return pd.DataFrame({
        "time (s)": np.tile(times[keep], len(strongest)),
        "instrument": np.repeat([display_name(LABELS[j]) for j in strongest], keep.sum()),
        "confidence": np.concatenate([probs[keep, j] for j in strongest]) if strongest else [],
    })


def make_live(settings: Settings, tagger: Tagger | None, analyze: Callable[[str | None], tuple]):
    """The stream and stop handlers, bound to the app's one model and its upload handler."""

    def on_chunk(chunk: tuple[int, np.ndarray] | None, session: LiveSession | None):
        if chunk is None or tagger is None:
            return gr.skip(), gr.skip(), session
        rate, data = chunk
        try:
            if session is None:
                started = time.time() - len(data) / max(rate, 1)
                session = LiveSession(StreamAnalyser(tagger, settings, rate, settings.live_hop_seconds), started)
            elif rate != session.analyser.rate:
                raise StreamError(f"The microphone's sample rate changed mid-stream ({session.analyser.rate} → "
                                  f"{rate} Hz); stop and record again.")
            session.analyser.feed(data, max_scored=1)  # the view shows the newest window: one model call per chunk
        except StreamError as exc:
            raise gr.Error(str(exc)) from None
        history = list(session.analyser.history)
        ranking = now_playing(history[-1] if history else None, settings.top_k)
        end = max(session.analyser.seconds, settings.live_view_seconds)
        plot = gr.LinePlot(rolling_frame(history, settings.top_k, settings.live_view_seconds),
                           x_lim=[end - settings.live_view_seconds, end])
        return ranking, plot, session

    def on_stop(session: LiveSession | None):
        """The whole take through the upload handler: the same analysis, exports and JSON as an upload."""
        if session is None or session.analyser.seconds == 0:
            raise gr.Error(NOTHING_RECORDED)
        take_dir = take_folder()
        take_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(session.started))
        path = Path(tempfile.mkdtemp(dir=take_dir)) / f"live-{stamp}.wav"
        rec = session.analyser.recording()  # what the analysis reads; as a file it decodes to the same samples
        try:
            sf.write(str(path), rec.samples, rec.sample_rate, subtype="FLOAT")
            return (*analyze(str(path)), None)  # bad takes (too short, silent) get the upload's messages
        finally:
            path.unlink(missing_ok=True)
            path.parent.rmdir()

    return on_chunk, on_stop


@dataclass
class LiveControls:
    mic: gr.Audio
    now: gr.Label
    rolling: gr.LinePlot
    session: gr.State


def live_section(settings: Settings) -> LiveControls:
    """Render the "Listen live" section where the app's layout wants it; `wire_live` connects it."""
    with gr.Accordion("Listen live: what the microphone hears now", open=True, elem_id="live"):
        with gr.Row():
            with gr.Column(scale=1):
                mic = gr.Audio(sources=["microphone"], type="numpy", streaming=True, label="Microphone (live)")
                gr.Markdown(f"Updated every {settings.live_hop_seconds:g} s while recording; press Stop for the "
                            "full analysis of the take below.")
            now = gr.Label(num_top_classes=settings.top_k, label="Now playing", scale=1, elem_id="live-now")
        gr.HTML("", js_on_load=MUSIC_MICROPHONE_JS, padding=False)
        rolling = gr.LinePlot(x="time (s)", y="confidence", color="instrument", y_lim=[0, 1],
                              label=f"Last {settings.live_view_seconds:g} s", elem_id="live-timeline")
    return LiveControls(mic, now, rolling, gr.State(None, time_to_live=STATE_TTL_S))


def wire_live(controls: LiveControls, settings: Settings, tagger: Tagger | None,
              analyze: Callable[[str | None], tuple], outputs: list):
    """Stream chunks to the session's analyser; on Stop, fill the upload flow's `outputs` with the take's analysis.
    Returns the Stop event, for the app to chain what follows an analysis."""
    on_chunk, on_stop = make_live(settings, tagger, analyze)
    c = controls
    c.mic.stream(on_chunk, inputs=[c.mic, c.session], outputs=[c.now, c.rolling, c.session], api_name=False,
                 stream_every=settings.live_hop_seconds, time_limit=int(settings.max_duration_seconds) + 5,
                 concurrency_id=LIVE, concurrency_limit=settings.live_listeners, show_progress="hidden")
    return c.mic.stop_recording(on_stop, inputs=[c.session], outputs=[*outputs, c.session], api_name=False,
                                concurrency_id="analysis")
