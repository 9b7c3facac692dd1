"""InstruSense Gradio app: record or upload, see which instruments play and when.

Run locally with ``python app.py``; on Hugging Face Spaces this file is the entry point. The same
analysis is served as the API endpoint ``/analyze``.
"""

from __future__ import annotations

import html
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
from gradio_client.utils import is_http_url_like

from instrusense.analysis import Analysis, analyze_file
from instrusense.audio import AudioError
from instrusense.export import analysis_record, audacity_labels, segments_csv
from instrusense.formatting import percent, seconds
from instrusense.logs import configure_logging, fields
from instrusense.model import ModelUnavailableError, Tagger, tagger_for
from instrusense.plot import describe, label_plot
from instrusense.settings import REPO_ROOT, Settings, load_settings
from instrusense.taxonomy import display_name

log = logging.getLogger("instrusense.app")
EXAMPLES_DIR = REPO_ROOT / "examples"
EXPORT_DIR = Path(tempfile.gettempdir()) / "instrusense-exports"
EXPORT_MAX_AGE_S = 3600
NOT_AN_UPLOAD = "Send the recording itself as a file upload; URLs and server paths are not accepted."
TABLE_HEADERS = ["instrument", "start (s)", "end (s)", "confidence"]
# Page styles: the plot's text and grid follow the light or dark theme (Plotly knows only fixed colours).
PAGE_CSS = """
#timeline .main-svg text { fill: var(--body-text-color) !important; }
#timeline .main-svg .xgrid, #timeline .main-svg .zerolinelayer path { stroke: var(--border-color-primary) !important; }
#ranking .bar { height: 0.45em; border-radius: 0.25em; background: var(--color-accent); }
#ranking .below .bar { background: var(--neutral-400); }
#ranking li { list-style: none; margin: 0 0 0.5em; }
#ranking ol { padding: 0; margin: 0; }
#ranking .row { display: flex; justify-content: space-between; gap: 1em; }
"""


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
        outputs = _outputs(analysis, name, Path(audio_path).stem[:40] or "recording", settings.top_k)
        log.info("request %s", fields(outcome="ok", file=name, bytes=size, audio_seconds=analysis.analysed_seconds,
                                      seconds=time.perf_counter() - started, notices=len(analysis.notices)))
        return outputs

    return analyze, model_error


def ranking_html(analysis: Analysis, top_k: int) -> str:
    """The instruments heard, highest first, as a list of bars with their percentages."""
    items = [f'<li class="{"plays" if s.confidence >= analysis.threshold else "below"}"><div class="row">'
             f'<span>{html.escape(display_name(s.label))}</span><span>{percent(s.confidence)}</span></div>'
             f'<div class="bar" style="width:{100 * s.confidence:.1f}%"></div></li>' for s in analysis.shown(top_k)]
    return f"<ol>{''.join(items)}</ol>" if items else "<p>No instrument detected.</p>"


def _outputs(analysis: Analysis, name: str, stem: str, top_k: int) -> tuple:
    """What the page shows for one analysis: ranking, plot, segment table, downloads (only when there are
    segments), the JSON record, and the notices with the plot in words (its text alternative)."""
    table = [[display_name(s.label), seconds(s.start), seconds(s.end), percent(s.confidence)]
             for s in analysis.segments]
    if analysis.segments:
        csv_file, audacity_file = _write_exports(analysis, stem)
    else:
        csv_file = audacity_file = None
    notes = [f"- {n}" for n in analysis.notices] + [f"**In words:** {describe(analysis, top_k)}"]
    return (ranking_html(analysis, top_k), label_plot(analysis, top_k), table, csv_file, audacity_file,
            analysis_record(name, analysis), "\n".join(notes))


def _downloads_shown(*files: str | None) -> list:
    """Each download button visible only when it has a file (a page-only step: the API returns plain paths)."""
    return [gr.update(visible=bool(f)) for f in files]


def build_app(settings: Settings | None = None) -> gr.Blocks:
    settings = settings or load_settings()
    analyze, model_error = make_analyze(settings)
    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.flac")) if EXAMPLES_DIR.is_dir() else []
    with gr.Blocks(title="InstruSense", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# InstruSense\nWhich instruments play in a recording, and when. "
                    "Record with the microphone or upload a file (WAV, FLAC, OGG, MP3, M4A).")
        if model_error:
            gr.Markdown(f"**The model could not be loaded.** {model_error}")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                audio = _uploads_only(gr.Audio(sources=["upload", "microphone"], type="filepath", label="Recording"))
                button = gr.Button("Analyse", variant="primary")
                example_set = (gr.Examples(examples=[[e] for e in examples], inputs=[audio], label="Example recordings "
                                           "(click one to analyse it)") if examples else None)
            with gr.Column(scale=1, min_width=300):
                gr.Markdown("### Instruments heard")
                ranking = gr.HTML(elem_id="ranking")
        gr.Markdown("### Where each instrument plays")
        plot = gr.Plot(show_label=False, elem_id="timeline")
        notes = gr.Markdown(elem_id="timeline-text")
        table = gr.Dataframe(headers=TABLE_HEADERS, datatype=["str"] * 4, label="Segments (every one, in time order)",
                             interactive=False, wrap=True, max_height=420, elem_id="segments",
                             column_widths=["34%", "20%", "20%", "26%"])
        with gr.Row():
            csv_file = gr.DownloadButton("Download segments (CSV)", visible=False, size="sm", elem_id="download-csv")
            audacity_file = gr.DownloadButton("Download Audacity labels", visible=False, size="sm", elem_id="download-audacity")
        with gr.Accordion("JSON (same as the CLI and API)", open=False):
            record = gr.JSON()
        outputs = [ranking, plot, table, csv_file, audacity_file, record, notes]
        downloads = [csv_file, audacity_file]

        def analyse_on(listener, api_name: str | bool = False) -> None:
            # Every trigger shares one concurrency limit: one model, at most `concurrency_limit` analyses at once.
            listener(analyze, inputs=[audio], outputs=outputs, api_name=api_name, concurrency_id="analysis").then(
                _downloads_shown, inputs=downloads, outputs=downloads, queue=False, api_name=False)

        analyse_on(button.click, "analyze")
        analyse_on(audio.stop_recording)
        if example_set is not None:  # an example analyses on click, like a new recording
            analyse_on(example_set.load_input_event.then)
    demo.queue(default_concurrency_limit=settings.concurrency_limit, max_size=None)  # beyond capacity: wait
    return demo


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    build_app(settings).launch(server_name=settings.host or None, server_port=settings.port,
                               max_file_size=f"{settings.max_upload_mb:g}mb", css=PAGE_CSS)


if __name__ == "__main__":
    main()
