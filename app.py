"""InstruSense Gradio app: record or upload, see which instruments play and when.

Run locally with ``python app.py``; on Hugging Face Spaces this file is the entry point. The same
analysis is served as the API endpoint ``/analyze``; the live microphone view is in ``app_live.py``.

The page and its request handler; the public Space's guards (admission, refusals, cancellation,
clean-up) are in ``space_guards.py`` beside it, and the analysis itself in `instrusense/`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

import gradio as gr
from gradio.components.label import LabelData
from gradio.utils import get_upload_folder

from app_live import MUSIC_MICROPHONE_JS, NO_INSTRUMENT, live_section, wire_live
from instrusense.analysis import Analysis, analyze_file
from instrusense.audio import AudioError
from instrusense.export import analysis_record, audacity_labels, segments_csv
from instrusense.formatting import percent, seconds
from instrusense.logs import configure_logging, fields
from instrusense.native_output import capture_native_stderr
from instrusense.model import tagger_for, tagger_or_reason
from instrusense.plot import describe, label_plot
from instrusense.settings import Settings, load_settings
from instrusense.stopping import Stopped
from instrusense.taxonomy import display_name
from space_guards import (BUSY, EXPORT_DIR, NOT_AN_UPLOAD, Busy, Slots, cancellable, few_heaps, guard, inside,
                          launch_options, refusal, return_freed_memory, uploads_only)

log = logging.getLogger("instrusense.app")
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"  # beside the app, installed library or not
TABLE_HEADERS = ["instrument", "start (s)", "end (s)", "confidence (segment mean)"]
# Page styles: the plot's text and grid follow the light or dark theme (Plotly knows only fixed colours), lanes under
# the threshold are named in the theme's subdued colour, Plotly's toolbar (nothing to zoom; it covered the plot after a
# tap on a phone) is hidden, and table headers wrap between words only ("confiden/ce" on a phone).
PAGE_CSS = """
#label-plot .main-svg text { fill: var(--body-text-color) !important; }
#label-plot .main-svg text tspan[style*="italic"] { fill: var(--body-text-color-subdued) !important; }
#label-plot .main-svg .xgrid, #label-plot .main-svg .zerolinelayer path { stroke: var(--border-color-primary) !important; }
#label-plot .modebar-container { display: none !important; }
#segments th, #segments th * { word-break: normal !important; overflow-wrap: normal !important; hyphens: none; }
#recording #time, #recording #duration, #recording .playback { color: var(--body-text-color-subdued) !important; }
.dark { --color-accent: var(--primary-500); }
"""
# Gradio's default theme with every text at WCAG AA (4.5:1) in light and dark: its subdued text (footer, "- or -";
# the player's times, PAGE_CSS) is 1.9:1 on white, the selected tab's accent 2.8:1, and white on its primary button
# 2.8:1 (orange 500) in light, 3.6:1 in dark. No accent reads at 4.5:1 on both white and near-black, and the theme has
# one accent for both, so PAGE_CSS gives dark mode its own.
THEME = gr.themes.Default().set(
    body_text_color_subdued="*neutral_600", body_text_color_subdued_dark="*neutral_400", color_accent="*primary_700",
    button_primary_background_fill="*primary_700", button_primary_background_fill_dark="*primary_700",
    button_primary_background_fill_hover="*primary_800", button_primary_background_fill_hover_dark="*primary_800",
)
PAGE_LOOK = {"css": PAGE_CSS, "theme": THEME}  # launch() options: `python app.py` and the browser tests alike
# Browsers type a file by its extension, and call .webm (and .ogg, .mka) "video/…"; the recording widget accepts only
# "audio/…" and refused WebM (issue 40), though every such file holds audio the server decodes. Gradio offers no
# option for the widget's accepted types, so the page retypes those files as audio before the widget checks them, for
# the file dialog and for drag and drop. Without it tests/test_browser.py::test_every_format_uploads_in_the_browser
# fails on WebM ("Invalid file type") and ::test_a_dropped_webm_file_is_taken finds the drop ignored.
AUDIO_FILE_TYPES_JS = """
if (!window.__instrusenseAudioTypes) {
  window.__instrusenseAudioTypes = true;
  const AUDIO = {webm: 'audio/webm', weba: 'audio/webm', mka: 'audio/x-matroska', ogg: 'audio/ogg', oga: 'audio/ogg'};
  const retyped = (files) => {
    const out = new DataTransfer();
    let changed = false;
    for (const file of files) {
      const type = AUDIO[file.name.split('.').pop().toLowerCase()];
      if (type && !file.type.startsWith('audio/')) {
        out.items.add(new File([file], file.name, {type, lastModified: file.lastModified}));
        changed = true;
      } else out.items.add(file);
    }
    return changed ? out : null;
  };
  document.addEventListener('change', (event) => {
    const input = event.target;
    if (input instanceof HTMLInputElement && input.type === 'file' && input.files) {
      const files = retyped(input.files);
      if (files) input.files = files.files;
    }
  }, true);
  document.addEventListener('drop', (event) => {
    if (event.__instrusense || !event.dataTransfer) return;
    const files = retyped(event.dataTransfer.files);
    if (!files) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    const again = new DragEvent('drop', {dataTransfer: files, bubbles: true, cancelable: true});
    again.__instrusense = true;
    event.target.dispatchEvent(again);
  }, true);
}
"""


def _write_exports(analysis: Analysis, stem: str) -> tuple[str, str]:
    """CSV and Audacity files for download."""
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)  # bounded by the guards' clean-up
    tag = uuid.uuid4().hex[:8]
    csv_path = EXPORT_DIR / f"{stem}-{tag}-segments.csv"
    aud_path = EXPORT_DIR / f"{stem}-{tag}-audacity-labels.txt"
    csv_path.write_text(segments_csv(analysis.segments), encoding="utf-8")
    aud_path.write_text(audacity_labels(analysis.segments), encoding="utf-8")
    return str(csv_path), str(aud_path)


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
            raise refusal(f"No model loaded. {model_error}", "no_model")
        if not audio_path:
            raise refusal("Record or upload a recording first.", "rejected")
        if not inside(audio_path, root):
            raise refusal(NOT_AN_UPLOAD, "rejected")
        try:
            with slots.hold(limit, should_stop):  # time waiting for a slot does not count
                deadline = time.monotonic() + limit
                told = should_stop.is_set if should_stop is not None else lambda: False
                return analyze_file(audio_path, tagger, settings, lambda: told() or time.monotonic() > deadline)
        except AudioError as exc:
            raise refusal(str(exc), "rejected") from None
        except Busy as exc:
            raise refusal(BUSY.format(reason=exc), "busy") from None
        except Stopped:
            if should_stop is not None and should_stop.is_set():
                raise refusal("The request was cancelled.", "cancelled") from None
            raise refusal(f"The analysis took longer than the {limit:g} s allowed per request "
                           "(INSTRUSENSE_REQUEST_TIMEOUT_SECONDS). Try a shorter recording.", "timeout") from None
        except Exception as exc:  # no traceback reaches a user; the log keeps it
            log.exception("analysis failed on %s", Path(audio_path).name)
            raise refusal(f"Internal error while analysing the recording ({type(exc).__name__}).", "error") from None

    def handle(audio_path: str | None, should_stop: threading.Event | None = None):
        started = time.perf_counter()
        name = Path(audio_path).name if audio_path else ""
        size = os.path.getsize(audio_path) if audio_path and inside(audio_path, root) and os.path.isfile(audio_path) else 0
        try:
            analysis = run(audio_path, should_stop)
        except gr.Error as exc:  # one log line per request, whatever its outcome
            log.info("request %s", fields(outcome=getattr(exc, "outcome", "rejected"), file=name, bytes=size,
                                          audio_seconds=0.0, seconds=time.perf_counter() - started,
                                          reason=exc.message))
            raise
        finally:
            return_freed_memory()
        for notice in analysis.notices:
            gr.Warning(notice)
        outputs = _outputs(analysis, name, Path(audio_path).stem[:40] or "recording", settings.top_k)
        log.info("request %s", fields(outcome="ok", file=name, bytes=size, audio_seconds=analysis.analysed_seconds,
                                      seconds=time.perf_counter() - started, notices=len(analysis.notices)))
        return outputs

    return handle, model_error


def ranking_value(analysis: Analysis, top_k: int) -> dict:
    """The ranking as `gr.Label` data (what API clients get): the instruments shown with their confidence over
    the whole recording, highest first, under a heading that names the strongest instrument heard, or says
    "No instrument detected" when none reaches the threshold (the strongest scores are still listed)."""
    shown = analysis.shown(top_k)
    heard = [s for s in shown if s.confidence >= analysis.threshold]
    return {"label": display_name(heard[0].label) if heard else NO_INSTRUMENT,
            "confidences": [{"label": display_name(s.label), "confidence": round(s.confidence, 4)}  # as in the JSON
                            for s in shown]}


def ranking_label(label: gr.Label) -> gr.Label:
    """Let `label` take `ranking_value`'s data, heading included (`gr.Label` takes a `{class: confidence}` dict
    and always heads it with the top class). An instance override: a subclass defined here would make Gradio
    write an ``app.pyi`` beside this file (see `space_guards.uploads_only`)."""
    stock = label.postprocess

    def postprocess(value):
        if isinstance(value, dict) and isinstance(value.get("confidences"), list):
            return LabelData(**value)
        return stock(value)

    label.postprocess = postprocess  # type: ignore[method-assign]
    return label


def ranking_note(settings: Settings) -> str:
    """The line under the ranking: what its percentages are, and how they differ from the segment table's."""
    return (f"Confidence that each instrument plays in the recording, judged over the whole recording; from "
            f"{100 * settings.threshold:g} % it counts as heard and gets segments below. The segment table gives each "
            "segment's own mean confidence over its stretch, so the two numbers differ.")


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
    return (ranking_value(analysis, top_k), label_plot(analysis, top_k), table, csv_file, audacity_file,
            analysis_record(name, analysis), "\n".join(notes))


def clear_js(table: gr.Dataframe) -> str:
    """A new recording's page, set in the browser: the previous results and refusal gone, nothing to download
    (`outputs` and the refusal, in order). Run in the page itself, never by the server, so that it can never land
    after an analysis the new recording's Analyse started (a page-only step: no API)."""
    gone = {"__type__": "update", "value": None, "visible": False}
    empty_table = table.postprocess([]).model_dump()
    return f"() => {json.dumps([{}, None, empty_table, gone, gone, None, '', ''])}"


def _downloads_shown(*files: str | None) -> list:
    """Each download button visible only when it has a file (a page-only step: the API returns plain paths)."""
    return [gr.update(visible=bool(f)) for f in files]


def build_app(settings: Settings | None = None) -> gr.Blocks:
    settings = settings or load_settings()
    handle, model_error = make_analyze(settings)
    reasons: OrderedDict[str, str] = OrderedDict()
    analyze = cancellable(handle, reasons)
    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.flac")) if EXAMPLES_DIR.is_dir() else []
    with gr.Blocks(title="InstruSense", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# InstruSense\nWhich instruments play in a recording, and when: record with the microphone, "
                    "upload a file (WAV, FLAC, MP3, M4A, OGG, Opus, WebM) or try an example.")
        gr.HTML("", js_on_load=MUSIC_MICROPHONE_JS + AUDIO_FILE_TYPES_JS, padding=False)
        if model_error:
            gr.Markdown(f"**The model could not be loaded.** {model_error}")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                with gr.Tabs():
                    with gr.Tab("Record or upload", id="recording-tab"):
                        audio = uploads_only(gr.Audio(sources=["upload", "microphone"], type="filepath",
                                                      label="Recording", elem_id="recording"))
                        button = gr.Button("Analyse", variant="primary")
                        refusal = gr.Markdown(elem_id="refusal")  # why the last request was not analysed
                        example_set = (gr.Examples(examples=[[e] for e in examples], inputs=[audio],
                                                   label="Example recordings (click one to analyse it)")
                                       if examples else None)
                    live = live_section(settings)
            with gr.Column(scale=1, min_width=300):
                ranking = ranking_label(gr.Label(num_top_classes=settings.top_k, label="Instruments heard",
                                                 elem_id="ranking"))
                gr.Markdown(ranking_note(settings), elem_id="ranking-note")
        gr.Markdown("### Where each instrument plays")
        plot = gr.Plot(label="Where each instrument plays", show_label=False, elem_id="label-plot")
        notes = gr.Markdown(label="Notes", elem_id="timeline-text")
        table = gr.Dataframe(headers=TABLE_HEADERS, datatype=["str"] * 4, label="Segments (every one, in time order)",
                             interactive=False, wrap=True, max_height=420, elem_id="segments",
                             column_widths=["31%", "19%", "19%", "31%"])
        with gr.Row():
            csv_file = gr.DownloadButton("Download segments (CSV)", visible=False, size="sm", elem_id="download-csv")
            audacity_file = gr.DownloadButton("Download Audacity labels", visible=False, size="sm", elem_id="download-audacity")
        with gr.Accordion("JSON (same as the CLI and API)", open=False):
            record = gr.JSON(label="JSON record", show_label=False)
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

        for new_recording in (audio.upload, audio.clear, audio.start_recording):  # the last results are not its own
            new_recording(None, None, [*outputs, refusal], js=clear_js(table), api_name=False, show_progress="hidden")
        analyse_on(button.click, "analyze")
        analyse_on(audio.stop_recording)
        if example_set is not None:  # an example analyses on click, like a new recording
            analyse_on(example_set.load_input_event.then)
        ranking_label(live.now)
        tagger = None if model_error else tagger_for(settings)  # loaded once already (cached); a failure logged once
        wire_live(live, settings, tagger, handle, outputs).then(  # the take's analysis, as an upload's
            _downloads_shown, inputs=downloads, outputs=downloads, queue=False, api_name=False)
    return guard(demo, settings, examples)


def main() -> None:
    settings = load_settings()
    capture_native_stderr()  # a hostile file's decoder messages go to the debug log, not the terminal
    few_heaps()
    configure_logging(settings.log_level)
    demo = build_app(settings)
    demo.launch(server_name=settings.host or None, server_port=settings.port or None, **PAGE_LOOK,
                **launch_options(demo, settings))


if __name__ == "__main__":
    main()
