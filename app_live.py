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
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder
import numpy as np
import pandas as pd
import soundfile as sf

from instrusense.model import Tagger
from instrusense.plot import LINE_COLORS
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
NO_INSTRUMENT = "No instrument detected"


def take_folder() -> Path:
    """Where a take is written for the upload handler, which reads only files in Gradio's upload folder."""
    return Path(get_upload_folder()) / "instrusense-live"


@dataclass
class LiveSession:
    analyser: StreamAnalyser
    started: float
    """Wall-clock time (time.time) the session's audio began, as its first chunk tells (names the take)."""
    legend: list[str] | None = None
    """The rolling plot's legend as last sent."""
    pinned: bool | None = None
    """Whether the plot's time axis was last sent pinned to [0, view] (the first view's seconds) or left to the data."""
    colours: dict[str, str] = field(default_factory=dict)
    """The plot's colour of each instrument it has shown: kept for the session, never one of another line shown."""
    scoring: Future | None = None
    """The model call for the newest hop, running apart from the stream's handler."""
    shown: Hop | None = None
    """The newest hop the page was sent."""


def assign_colours(colours: dict[str, str], legend: list[str]) -> bool:
    """Make the colours of `legend`'s instruments distinct (in place): each keeps the colour it had unless one
    earlier in the legend has it; the others get the first free one of `LINE_COLORS`. True if any changed."""
    keep: dict[str, str] = {}
    for name in legend:
        if name in colours and colours[name] not in keep.values():
            keep[name] = colours[name]
    changed = False
    for name in legend:
        if name not in keep:
            keep[name] = next((c for c in LINE_COLORS if c not in keep.values()), LINE_COLORS[0])
            changed = changed or colours.get(name) != keep[name]
    colours.update(keep)
    return changed


def colour_map(colours: dict[str, str]) -> dict[str, str]:
    """A colour for every instrument (the browser fixes its colour scale to the first frame's instruments, and every
    frame names them all): the session's for those shown so far, the first line colour for the rest (never drawn)."""
    return {display_name(label): colours.get(display_name(label), LINE_COLORS[0]) for label in LABELS}


def now_playing(hop: Hop | None, top_k: int, threshold: float) -> dict:
    """The latest window's ranking as `gr.Label` data, headed by its top instrument only when that reaches the
    threshold (a 13 % guess is listed, not headlined); scores under 1 % (read as "0 %") are left out."""
    if hop is None:
        return {}
    top = [(display_name(label), c) for label, c in hop.top(top_k) if c >= 0.01]
    return {"label": top[0][0] if top and top[0][1] >= threshold else NO_INSTRUMENT,
            "confidences": [{"label": name, "confidence": round(float(c), 4)} for name, c in top]}


def strongest(history: list[Hop], top_k: int) -> list[int]:
    """Indices of the labels strongest in `history` (highest peak first), those that ever scored above zero."""
    if not history:
        return []
    peaks = np.stack([h.probs for h in history]).max(axis=0)
    return [int(j) for j in np.argsort(-peaks, kind="stable")[:top_k] if peaks[j] > 0]


def rolling_frame(history: list[Hop], top_k: int, view_s: float) -> pd.DataFrame:
    """Long-format scores (time, instrument, confidence) of the instruments strongest in the history, over the last
    `view_s` seconds; every other instrument has one empty row (confidence NaN, not drawn). The browser fixes the
    plot's colour scale to the instruments of the first frame it draws, so every frame names them all: one that
    first plays later is drawn too, in its own colour (`plot_update`)."""
    if not history:
        return pd.DataFrame({"time (s)": [], "instrument": [], "confidence": []})
    probs = np.stack([h.probs for h in history])
    shown = strongest(history, top_k)
    times = np.array([h.time for h in history])
    keep = times >= times[-1] - view_s
    others = [j for j in range(len(LABELS)) if j not in shown]
    return pd.DataFrame({
        "time (s)": np.concatenate([np.tile(times[keep], len(shown)), np.full(len(others), times[-1])]),
        "instrument": [display_name(LABELS[j]) for j in shown for _ in range(keep.sum())]
                      + [display_name(LABELS[j]) for j in others],
        "confidence": np.concatenate([*(probs[keep, j] for j in shown), np.full(len(others), np.nan)]),
    })


def plot_update(session: LiveSession, history: list[Hop], top_k: int, view_s: float) -> gr.LinePlot:
    """The rolling plot's next frame, with its legend and time axis sent only when they change: the browser redraws
    the whole chart for a changed setting and, while it does, drops the next frame's data."""
    changed: dict = {}
    legend = [display_name(LABELS[j]) for j in strongest(history, top_k)]
    if legend != session.legend:
        changed["colors_in_legend"] = session.legend = legend
        if assign_colours(session.colours, legend):
            changed["color_map"] = colour_map(session.colours)
    pinned = session.analyser.seconds < view_s  # then the axis follows the data: the last `view_s` seconds
    if pinned != session.pinned:
        changed["x_lim"] = [0.0, view_s] if pinned else None
        session.pinned = pinned
    return gr.LinePlot(rolling_frame(history, top_k, view_s), **changed)


def make_live(settings: Settings, tagger: Tagger | None, analyze: Callable[[str | None], tuple],
              scorer: Executor | None = None):
    """The stream and stop handlers, bound to the app's one model and its upload handler.

    The chunk handler only keeps the audio and shows what is scored: Gradio keeps the latest chunk sent while a
    stream's handler runs and drops the ones before it, so a handler that waited for the model lost 13 of 148
    chunks of a take on a 2-core machine. The model scores the newest hop in a worker thread, one call per
    session at a time; the page gets it with the next chunk. `scorer` runs those calls (default: a pool of
    INSTRUSENSE_LIVE_LISTENERS threads)."""
    if scorer is None:
        scorer = ThreadPoolExecutor(max_workers=max(settings.live_listeners, 1), thread_name_prefix="instrusense-live")

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
            session.analyser.keep(data)
        except StreamError as exc:
            raise gr.Error(str(exc)) from None
        if session.scoring is None or session.scoring.done():
            failed = session.scoring.exception() if session.scoring is not None else None
            if failed is not None:
                log.error("live scoring failed", exc_info=failed)
                raise gr.Error("The live view failed; stop, and the take is still analysed.")
            session.scoring = scorer.submit(session.analyser.score_pending)
        history = list(session.analyser.history)
        # the ranking goes out every time: a skipped output turns into a copy of the stock `gr.Label` for the
        # session, which would drop the app's `ranking_label` (the browser test's headline check fails without)
        ranking = now_playing(history[-1] if history else None, settings.top_k, settings.threshold)
        if not history or history[-1] is session.shown:
            return ranking, gr.skip(), session
        session.shown = history[-1]
        return ranking, plot_update(session, history, settings.top_k, settings.live_view_seconds), session

    def on_stop(session: LiveSession | None):
        """The whole take through the upload handler: the same analysis, exports and JSON as an upload."""
        if session is None or session.analyser.seconds == 0:
            raise gr.Error(NOTHING_RECORDED)
        if session.scoring is not None:
            wait([session.scoring])  # the model is free for the take's analysis
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
    """The "Listen live" tab, rendered where the app's layout wants it (inside its `gr.Tabs`); `wire_live`
    connects it. The page's microphone script (`MUSIC_MICROPHONE_JS`) is the app's, as it serves both microphones."""
    with gr.Tab("Listen live", id="live", elem_id="live"):
        mic = gr.Audio(sources=["microphone"], type="numpy", streaming=True, label="Microphone (live)")
        gr.Markdown(f"Updated every {settings.live_hop_seconds:g} s while recording; press Stop for the full "
                    "analysis of the take.")
        now = gr.Label(num_top_classes=settings.top_k, label="Now playing", elem_id="live-now")
        rolling = gr.LinePlot(x="time (s)", y="confidence", color="instrument", y_lim=[0, 1], color_map=colour_map({}),
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
