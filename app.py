"""InstruSense Gradio app: record or upload, see which instruments play and when.

Run locally with ``python app.py``; on Hugging Face Spaces this file is the entry point. The same
analysis is served as the API endpoint ``/analyze``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
from gradio_client.utils import is_http_url_like

from app_live import live_section, wire_live
from instrusense.analysis import Analysis, analyze_file
from instrusense.audio import AudioError
from instrusense.export import analysis_record, audacity_labels, segments_csv
from instrusense.logs import configure_logging, fields
from instrusense.model import ModelUnavailableError, Tagger, tagger_for
from instrusense.plot import label_plot
from instrusense.settings import REPO_ROOT, Settings, load_settings
from instrusense.taxonomy import display_name

log = logging.getLogger("instrusense.app")
EXAMPLES_DIR = REPO_ROOT / "examples"
EXPORT_DIR = Path(tempfile.gettempdir()) / "instrusense-exports"
EXPORT_MAX_AGE_S = 3600
NOT_AN_UPLOAD = "Send the recording itself as a file upload; URLs and server paths are not accepted."


def _load(settings: Settings) -> tuple[Tagger | None, str | None]:
    try:
        return tagger_for(settings), None
    except ModelUnavailableError as exc:
        log.error("%s", exc)
        return None, str(exc)


def _write_exports(analysis: Analysis, stem: str) -> tuple[str, str]:
    """CSV and Audacity files for download; old ones are pruned so the folder stays small."""
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - EXPORT_MAX_AGE_S
    for old in EXPORT_DIR.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except FileNotFoundError:  # pruned meanwhile by a concurrent request
            pass
    tag = uuid.uuid4().hex[:8]
    csv_path = EXPORT_DIR / f"{stem}-{tag}-segments.csv"
    aud_path = EXPORT_DIR / f"{stem}-{tag}-audacity-labels.txt"
    csv_path.write_text(segments_csv(analysis.segments), encoding="utf-8")
    aud_path.write_text(audacity_labels(analysis.segments), encoding="utf-8")
    return str(csv_path), str(aud_path)


def _uploads_only(audio: gr.Audio) -> gr.Audio:
    """Make `audio` take only files uploaded to this app.

    Gradio itself refuses a server path that was not uploaded; a URL in an API call it would fetch,
    so URLs are refused here, before anything is downloaded. (An instance override: a subclass
    defined here would make Gradio write an ``app.pyi`` beside this file.)
    """
    move = audio.async_move_resource_to_block_cache

    async def move_upload(url_or_file_path: str | Path | None) -> str | None:
        if is_http_url_like(str(url_or_file_path)):
            raise gr.Error(NOT_AN_UPLOAD)
        return await move(url_or_file_path)

    audio.async_move_resource_to_block_cache = move_upload  # type: ignore[method-assign]
    return audio


class RequestTimeout(Exception):
    """The request's analysis ran past INSTRUSENSE_REQUEST_TIMEOUT_SECONDS."""


def _failure(message: str, outcome: str) -> gr.Error:
    """The error the user sees, tagged with the outcome the request log records."""
    error = gr.Error(message)
    error.outcome = outcome  # type: ignore[attr-defined]
    return error


class _Deadline:
    """The shared tagger as one request sees it: it gives up between batches once the time is spent."""

    def __init__(self, tagger: Tagger, seconds: float):
        self._tagger, self._deadline = tagger, time.monotonic() + seconds

    def __getattr__(self, name: str):
        return getattr(self._tagger, name)

    def predict(self, windows: np.ndarray, batch_size: int) -> np.ndarray:
        parts = []
        for i in range(0, len(windows), batch_size):
            if time.monotonic() > self._deadline:
                raise RequestTimeout
            parts.append(self._tagger.predict(windows[i:i + batch_size], batch_size))
        return np.concatenate(parts) if parts else self._tagger.predict(windows, batch_size)


def make_analyze(settings: Settings):
    """The request handler, bound to one loaded model (loaded once, shared by all requests)."""
    tagger, model_error = _load(settings)

    def run(audio_path: str | None) -> Analysis:
        """The analysis, or a `gr.Error` whose message is fit for the user."""
        if tagger is None:
            raise _failure(f"No model loaded. {model_error}", "no_model")
        if not audio_path:
            raise _failure("Record or upload a recording first.", "rejected")
        try:
            return analyze_file(audio_path, _Deadline(tagger, settings.request_timeout_seconds), settings)
        except AudioError as exc:
            raise _failure(str(exc), "rejected") from None
        except RequestTimeout:
            raise _failure(f"The analysis took longer than the {settings.request_timeout_seconds:g} s allowed per "
                           "request (INSTRUSENSE_REQUEST_TIMEOUT_SECONDS). Try a shorter recording.",
                           "timeout") from None
        except Exception as exc:  # no traceback reaches a user
            log.exception("analysis failed on %s", Path(audio_path).name)
            raise _failure(f"Internal error while analysing the recording ({type(exc).__name__}).", "error") from None

    def analyze(audio_path: str | None):
        started = time.perf_counter()
        name = Path(audio_path).name if audio_path else ""
        size = os.path.getsize(audio_path) if audio_path and os.path.isfile(audio_path) else 0
        try:
            analysis = run(audio_path)
        except gr.Error as exc:  # one log line per request, whatever its outcome
            log.info("request %s", fields(outcome=getattr(exc, "outcome", "rejected"), file=name, bytes=size,
                                          audio_seconds=0.0, seconds=time.perf_counter() - started,
                                          reason=exc.message))
            raise
        for notice in analysis.notices:
            gr.Warning(notice)
        top = analysis.top(settings.top_k)
        ranking = {display_name(s.label): s.confidence for s in top if s.confidence > 0}
        table = [[display_name(s.label), round(s.start, 2), round(s.end, 2), round(s.confidence, 3)]
                 for s in analysis.segments]
        csv_file, audacity_file = _write_exports(analysis, Path(audio_path).stem[:40] or "recording")
        record = analysis_record(name, analysis)
        notes = "\n".join(f"- {n}" for n in analysis.notices)
        plot = label_plot(analysis, settings.top_k, settings.threshold)
        log.info("request %s", fields(outcome="ok", file=name, bytes=size, audio_seconds=analysis.analysed_seconds,
                                      seconds=time.perf_counter() - started, notices=len(analysis.notices)))
        return ranking, plot, table, csv_file, audacity_file, record, notes

    return analyze, model_error


def build_app(settings: Settings | None = None) -> gr.Blocks:
    settings = settings or load_settings()
    analyze, model_error = make_analyze(settings)
    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.flac")) if EXAMPLES_DIR.is_dir() else []
    with gr.Blocks(title="InstruSense", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# InstruSense\nWhich instruments play in a recording, and when. "
                    "Record with the microphone or upload a file (WAV, FLAC, OGG, MP3, M4A).")
        if model_error:
            gr.Markdown(f"**The model could not be loaded.** {model_error}")
        live = live_section(settings)
        with gr.Row():
            with gr.Column(scale=1):
                audio = _uploads_only(gr.Audio(sources=["upload", "microphone"], type="filepath", label="Recording"))
                button = gr.Button("Analyse", variant="primary")
                if examples:
                    gr.Examples(examples=[[e] for e in examples], inputs=[audio], label="Example recordings")
            with gr.Column(scale=1):
                ranking = gr.Label(num_top_classes=settings.top_k, label="Instruments heard")
                notes = gr.Markdown()
        plot = gr.Plot(label="Label plot: where each instrument plays")
        table = gr.Dataframe(headers=["instrument", "start (s)", "end (s)", "confidence"],
                             label="Top segments", interactive=False)
        with gr.Row():
            csv_file = gr.File(label="Segments (CSV)")
            audacity_file = gr.File(label="Audacity labels (import beside the audio)")
        with gr.Accordion("JSON (same as the CLI and API)", open=False):
            record = gr.JSON()
        outputs = [ranking, plot, table, csv_file, audacity_file, record, notes]
        # Both events share one concurrency limit: one model, at most `concurrency_limit` analyses at once.
        button.click(analyze, inputs=[audio], outputs=outputs, api_name="analyze", concurrency_id="analysis")
        audio.stop_recording(analyze, inputs=[audio], outputs=outputs, api_name=False, concurrency_id="analysis")
        wire_live(live, settings, _load(settings)[0], analyze, outputs)  # the take's analysis fills the same outputs
    demo.queue(default_concurrency_limit=settings.concurrency_limit, max_size=None)  # beyond capacity: wait
    return demo


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    build_app(settings).launch(server_name=settings.host or None, server_port=settings.port,
                               max_file_size=f"{settings.max_upload_mb:g}mb")


if __name__ == "__main__":
    main()
