"""InstruSense Gradio app: record or upload, see which instruments play and when.

Run locally with ``python app.py``; on Hugging Face Spaces this file is the entry point. The same
analysis is served as the API endpoint ``/analyze``; the live microphone view is in ``app_live.py``.

Longer than the project's ~350-line guide on purpose: beside the page and its handler it holds the
public-Space guards that wrap Gradio internals (cancellation, queue bounds, refusals as messages,
upload clean-up), which only make sense next to the handler they protect and stay pinned to
gradio 6.31.0; the analysis itself lives in `instrusense/`.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

import anyio
import gradio as gr
from gradio.context import LocalContext
from gradio.utils import get_upload_folder
from gradio_client.utils import is_http_url_like
from starlette.requests import ClientDisconnect

from app_live import live_section, wire_live
from instrusense.admission import Busy, Slots, client_key, queue_refusal
from instrusense.analysis import Analysis, analyze_file
from instrusense.audio import AudioError
from instrusense.export import analysis_record, audacity_labels, segments_csv
from instrusense.formatting import percent, seconds
from instrusense.housekeeping import every, prune
from instrusense.logs import configure_logging, fields
from instrusense.model import Stopped, tagger_or_reason
from instrusense.plot import describe, label_plot
from instrusense.settings import Settings, load_settings
from instrusense.taxonomy import display_name

log = logging.getLogger("instrusense.app")
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"  # beside the app, installed library or not
EXPORT_DIR = Path(tempfile.gettempdir()) / "instrusense-exports"
NOT_AN_UPLOAD = "Send the recording itself as a file upload; URLs and server paths are not accepted."
BUSY = "InstruSense is busy, try again in a moment: {reason}."
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


def _write_exports(analysis: Analysis, stem: str) -> tuple[str, str]:
    """CSV and Audacity files for download."""
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)  # bounded by `_tidy`
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
            raise _failure(NOT_AN_UPLOAD, "rejected")
        return await move(url_or_file_path)

    audio.async_move_resource_to_block_cache = move_upload  # type: ignore[method-assign]
    return audio


def _inside(path: str, root: Path) -> bool:
    """Whether `path` names a file inside `root` (Gradio's upload folder), whatever the payload claimed."""
    if is_http_url_like(path):
        return False
    try:
        return Path(path).resolve().is_relative_to(root)
    except (OSError, ValueError):
        return False


def _failure(message: str, outcome: str) -> gr.Error:
    """The error the user sees, tagged with the outcome the request log records.

    It stays on screen until closed; no traceback is printed (an unexpected error logs its own).
    """
    error = gr.Error(message, duration=None, print_exception=False)
    error.outcome = outcome  # type: ignore[attr-defined]
    return error


def make_analyze(settings: Settings, uploads: str | Path | None = None):
    """The request handler, bound to one loaded model (loaded once, shared by all requests).

    `handle(audio_path, should_stop=None)` analyses only files inside `uploads` (Gradio's upload
    folder by default), at most `concurrency_limit` at once, each stopping between model batches once
    `should_stop` is set or its time (INSTRUSENSE_REQUEST_TIMEOUT_SECONDS) is spent.
    """
    tagger, model_error = tagger_or_reason(settings)
    slots = Slots(settings.concurrency_limit)
    root = Path(uploads or get_upload_folder()).resolve()
    limit = settings.request_timeout_seconds

    def run(audio_path: str | None, should_stop: threading.Event | None) -> Analysis:
        """The analysis, or a `gr.Error` whose message is fit for the user."""
        if tagger is None:
            raise _failure(f"No model loaded. {model_error}", "no_model")
        if not audio_path:
            raise _failure("Record or upload a recording first.", "rejected")
        if not _inside(audio_path, root):
            raise _failure(NOT_AN_UPLOAD, "rejected")
        try:
            with slots.hold(limit, should_stop):  # time waiting for a slot does not count
                deadline = time.monotonic() + limit
                told = should_stop.is_set if should_stop is not None else lambda: False
                return analyze_file(audio_path, tagger, settings, lambda: told() or time.monotonic() > deadline)
        except AudioError as exc:
            raise _failure(str(exc), "rejected") from None
        except Busy as exc:
            raise _failure(BUSY.format(reason=exc), "busy") from None
        except Stopped:
            if should_stop is not None and should_stop.is_set():
                raise _failure("The request was cancelled.", "cancelled") from None
            raise _failure(f"The analysis took longer than the {limit:g} s allowed per request "
                           "(INSTRUSENSE_REQUEST_TIMEOUT_SECONDS). Try a shorter recording.", "timeout") from None
        except Exception as exc:  # no traceback reaches a user; the log keeps it
            log.exception("analysis failed on %s", Path(audio_path).name)
            raise _failure(f"Internal error while analysing the recording ({type(exc).__name__}).", "error") from None

    def handle(audio_path: str | None, should_stop: threading.Event | None = None):
        started = time.perf_counter()
        name = Path(audio_path).name if audio_path else ""
        size = os.path.getsize(audio_path) if audio_path and _inside(audio_path, root) and os.path.isfile(audio_path) else 0
        try:
            analysis = run(audio_path, should_stop)
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

    return handle, model_error


def _cancellable(handle, reasons: OrderedDict):
    """The handler as Gradio runs it: in a worker thread told to stop when the request is cancelled
    (Gradio cancels this coroutine) or abandoned (its client closed the event stream, which Gradio
    marks on the queued event). Gradio frees the request's slot at once; `Slots` counts the thread
    until it has stopped."""

    async def analyze(audio_path: str | None, request: gr.Request):
        stop = threading.Event()
        blocks = LocalContext.blocks.get(None)
        queue = getattr(blocks, "_queue", None)
        event = queue.event_ids_to_events.get(LocalContext.event_id.get(None)) if queue else None

        async def watch() -> None:
            while event is None or event.alive:
                await asyncio.sleep(0.2)
            stop.set()

        watcher = asyncio.create_task(watch())
        try:
            return await anyio.to_thread.run_sync(handle, audio_path, stop, abandon_on_cancel=True)
        except gr.Error as exc:  # shown beside the input until the next analysis
            reasons[request.session_hash] = exc.message
            while len(reasons) > 1024:
                reasons.popitem(last=False)
            raise
        except asyncio.CancelledError:
            stop.set()
            raise
        finally:
            watcher.cancel()

    return analyze


def _refusals_as_messages(demo: gr.Blocks) -> None:
    """A payload Gradio refuses before the handler (a server path, a bare string) gets the app's
    message and one log line, not a silent ``{"error": null}`` and a traceback."""
    preprocess = demo.preprocess_data

    async def checked(*args, **kwargs):
        try:
            return await preprocess(*args, **kwargs)
        except Exception as exc:
            reason = exc.message if isinstance(exc, gr.Error) else NOT_AN_UPLOAD
            log.info("request %s", fields(outcome="rejected", file="", bytes=0, audio_seconds=0.0, seconds=0.0,
                                          reason=reason))
            log.debug("payload refused before analysis: %s", exc)
            raise _failure(reason, "rejected") from None

    demo.preprocess_data = checked  # type: ignore[method-assign]


def _bound_queue(demo: gr.Blocks, settings: Settings) -> None:
    """Refuse, as busy, a request beyond the queue's size or its client's share of it."""
    queue = demo._queue
    push = queue.push

    def sender(request) -> str:
        return client_key(request.client.host if request and request.client else None,
                          request.headers.get("x-forwarded-for") if request else None)

    async def bounded_push(body, request, username):
        events = [e for q in queue.event_queue_per_concurrency_id.values() for e in q.queue]
        events += [e for job in queue.active_jobs if job for e in job]
        reason = queue_refusal([sender(e.request) for e in events], sender(request),
                               settings.queue_max_size, settings.queue_per_client)
        if reason is None:
            return await push(body, request, username)
        log.info("request %s", fields(outcome="busy", file="", bytes=0, audio_seconds=0.0, seconds=0.0, reason=reason))
        return False, BUSY.format(reason=reason), "queue_full"  # HTTP 503 with this message

    queue.push = bounded_push  # type: ignore[method-assign]


def _upload_cut_off(record: logging.LogRecord) -> bool:
    """A client that vanishes mid-upload is expected on a public server: one line, not a traceback.
    (Its partial file is removed by `_tidy`.)"""
    if record.exc_info and isinstance(record.exc_info[1], ClientDisconnect):
        record.msg, record.args, record.exc_info, record.exc_text = "an upload was cut off by its client", (), None, None
        record.levelno, record.levelname = logging.INFO, "INFO"
    return True


def _tidy(demo: gr.Blocks, settings: Settings, uploads: Path) -> None:
    """Bound the upload and export folders: old, oversized and cut-off uploads go (examples stay)."""
    keep = {Path(p).resolve().parent for b in demo.blocks.values() for p in getattr(b, "keep_in_cache", ())}
    bounds = dict(max_age_seconds=settings.upload_max_age_seconds,
                  max_total_bytes=int(settings.upload_max_total_mb * 1e6))
    prune(uploads, partial_prefix="tmp", partial_idle_seconds=settings.cleanup_interval_seconds, keep=keep, **bounds)
    prune(EXPORT_DIR, **bounds)


def _keep_tidy(demo: gr.Blocks, settings: Settings) -> None:
    """Run `_tidy` now and every CLEANUP_INTERVAL_SECONDS until the app is closed."""
    uploads = Path(get_upload_folder())
    _tidy(demo, settings, uploads)

    def job() -> None:
        if demo._queue.stopped:
            stop.set()
        else:
            _tidy(demo, settings, uploads)

    stop = every(settings.cleanup_interval_seconds, job, "instrusense-cleanup")


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
    handle, model_error = make_analyze(settings)
    reasons: OrderedDict[str, str] = OrderedDict()
    analyze = _cancellable(handle, reasons)
    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.flac")) if EXAMPLES_DIR.is_dir() else []
    with gr.Blocks(title="InstruSense", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# InstruSense\nWhich instruments play in a recording, and when. "
                    "Record with the microphone or upload a file (WAV, FLAC, OGG, MP3, M4A).")
        if model_error:
            gr.Markdown(f"**The model could not be loaded.** {model_error}")
        live = live_section(settings)
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                audio = _uploads_only(gr.Audio(sources=["upload", "microphone"], type="filepath", label="Recording"))
                button = gr.Button("Analyse", variant="primary")
                refusal = gr.Markdown(elem_id="refusal")  # why the last request was not analysed
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

        def last_refusal(request: gr.Request) -> str:
            return f"**Not analysed:** {reasons.get(request.session_hash, 'the request failed.')}"

        def analyse_on(listener, api_name: str | bool = False) -> None:
            # Every trigger shares one concurrency limit: one model, at most `concurrency_limit` analyses at once.
            event = listener(analyze, inputs=[audio], outputs=outputs, api_name=api_name, concurrency_id="analysis")
            event.failure(last_refusal, None, refusal, api_name=False, queue=False)
            event.success(lambda: "", None, refusal, api_name=False, queue=False)
            event.then(_downloads_shown, inputs=downloads, outputs=downloads, queue=False, api_name=False)

        analyse_on(button.click, "analyze")
        analyse_on(audio.stop_recording)
        if example_set is not None:  # an example analyses on click, like a new recording
            analyse_on(example_set.load_input_event.then)
        wire_live(live, settings, tagger_or_reason(settings)[0], handle, outputs).then(  # the take's analysis, as an upload's
            _downloads_shown, inputs=downloads, outputs=downloads, queue=False, api_name=False)
    demo.queue(default_concurrency_limit=settings.concurrency_limit, max_size=settings.queue_max_size)
    _bound_queue(demo, settings)
    _refusals_as_messages(demo)
    _keep_tidy(demo, settings)
    logging.getLogger("uvicorn.error").addFilter(_upload_cut_off)  # the same function each time: added once
    return demo


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    build_app(settings).launch(server_name=settings.host or None, server_port=settings.port,
                               max_file_size=f"{settings.max_upload_mb:g}mb", css=PAGE_CSS)


if __name__ == "__main__":
    main()
