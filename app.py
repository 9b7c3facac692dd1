"""InstruSense Gradio app: record or upload, see which instruments play and when.

Run locally with ``python app.py``; on Hugging Face Spaces this file is the entry point. The same
analysis is served as the API endpoint ``/analyze``.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr

from instrusense.analysis import Analysis, analyze_file
from instrusense.audio import AudioError
from instrusense.export import analysis_record, audacity_labels, segments_csv
from instrusense.logs import configure_logging
from instrusense.model import ModelUnavailableError, Tagger, load_tagger, resolve_model_id
from instrusense.plot import label_plot
from instrusense.settings import REPO_ROOT, Settings, load_settings
from instrusense.taxonomy import display_name

log = logging.getLogger("instrusense.app")
EXAMPLES_DIR = REPO_ROOT / "examples"
EXPORT_DIR = Path(tempfile.gettempdir()) / "instrusense-exports"
EXPORT_MAX_AGE_S = 3600


def _load(settings: Settings) -> tuple[Tagger | None, str | None]:
    try:
        return load_tagger(resolve_model_id(settings.model), settings.threads), None
    except ModelUnavailableError as exc:
        log.error("%s", exc)
        return None, str(exc)


def _write_exports(analysis: Analysis, stem: str) -> tuple[str, str]:
    """CSV and Audacity files for download; old ones are pruned so the folder stays small."""
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - EXPORT_MAX_AGE_S
    for old in EXPORT_DIR.iterdir():
        if old.stat().st_mtime < cutoff:
            old.unlink(missing_ok=True)
    tag = uuid.uuid4().hex[:8]
    csv_path = EXPORT_DIR / f"{stem}-{tag}-segments.csv"
    aud_path = EXPORT_DIR / f"{stem}-{tag}-audacity-labels.txt"
    csv_path.write_text(segments_csv(analysis.segments), encoding="utf-8")
    aud_path.write_text(audacity_labels(analysis.segments), encoding="utf-8")
    return str(csv_path), str(aud_path)


def make_analyze(settings: Settings):
    """The request handler, bound to one loaded model (loaded once, shared by all requests)."""
    tagger, model_error = _load(settings)

    def analyze(audio_path: str | None):
        if tagger is None:
            raise gr.Error(f"No model loaded. {model_error}")
        if not audio_path:
            raise gr.Error("Record or upload a recording first.")
        started = time.perf_counter()
        name = Path(audio_path).name
        try:
            analysis = analyze_file(audio_path, tagger, settings)
        except AudioError as exc:
            log.info("request file=%s outcome=rejected reason=%r seconds=%.2f", name, str(exc),
                     time.perf_counter() - started)
            raise gr.Error(str(exc)) from None
        except Exception as exc:  # no traceback reaches a user
            log.exception("request file=%s outcome=error", name)
            raise gr.Error(f"Internal error while analysing the recording ({type(exc).__name__}).") from None
        for notice in analysis.notices:
            gr.Warning(notice)
        top = analysis.top(settings.top_k)
        ranking = {display_name(s.label): s.confidence for s in top if s.confidence > 0}
        table = [[display_name(s.label), round(s.start, 2), round(s.end, 2), round(s.confidence, 3)]
                 for s in analysis.segments]
        csv_file, audacity_file = _write_exports(analysis, Path(audio_path).stem[:40] or "recording")
        record = analysis_record(name, analysis)
        notes = "\n".join(f"- {n}" for n in analysis.notices)
        log.info("request file=%s outcome=ok audio_seconds=%.1f seconds=%.2f", name, analysis.analysed_seconds,
                 time.perf_counter() - started)
        return ranking, label_plot(analysis, settings.top_k, settings.threshold), table, csv_file, audacity_file, record, notes

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
        with gr.Row():
            with gr.Column(scale=1):
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                 label="Recording")
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
        button.click(analyze, inputs=[audio], outputs=outputs, api_name="analyze")
        audio.stop_recording(analyze, inputs=[audio], outputs=outputs, api_name=False)
    demo.queue(default_concurrency_limit=settings.concurrency_limit)
    return demo


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    build_app(settings).launch(server_name=settings.host or None, server_port=settings.port,
                               max_file_size=f"{settings.max_upload_mb:g}mb", show_error=True)


if __name__ == "__main__":
    main()
