"""All tunable settings in one place, each overridable by an ``INSTRUSENSE_*`` environment variable.

`.env.example` lists every variable with its default; keep the two in step.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The checkout's root; in an installed package, the folder holding `instrusense/` (site-packages)."""
PACKAGED_MODEL = Path(__file__).resolve().parent / "shipped_model"
"""Where the wheel carries the shipped model (pyproject.toml, `force-include`); absent in a checkout."""


def _default_model() -> str:
    """The shipped model: inside the installed package, else the checkout's models/instrusense."""
    if (PACKAGED_MODEL / "config.json").is_file():
        return str(PACKAGED_MODEL)
    return str(REPO_ROOT / "models" / "instrusense")


DEFAULT_MODEL = _default_model()


class SettingsError(ValueError):
    """An environment variable holds a value the setting cannot take."""


@dataclass(frozen=True)
class Settings:
    model: str = DEFAULT_MODEL
    """Local checkpoint directory or Hugging Face Hub id of an audio-classification model."""
    window_seconds: float = 3.0
    """Analysis window for models without a fixed input length (Whisper models bring their own)."""
    hop_seconds: float = 1.5
    """Step between windows: the timeline's resolution, the same at any length (capped at the window)."""
    batch_size: int = 16
    """Windows per forward pass."""
    threads: int = 0
    """Torch intra-op threads; 0 keeps torch's default (one per core)."""
    quantize: bool = True
    """On CPUs, run the model's linear layers in dynamic int8: about twice as fast, accuracy level (benchmarks/README.md,
    Speed). 0 for float32. GPUs always run float32."""
    device: str = "auto"
    """Where the model runs: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N."""
    max_duration_seconds: float = 600.0
    """Longer recordings are analysed up to this point, with a notice saying so (bounds memory and time)."""
    min_duration_seconds: float = 0.1
    """Shorter recordings are refused: too little sound to name an instrument. Longer ones down to this (a drum
    one-shot, a staccato note) fill one window, heard padded with silence and looped (`analysis.predict_windows`)."""
    silence_dbfs: float = -60.0
    """Windows (and whole recordings) quieter than this RMS level count as silence."""
    threshold: float = 0.5
    """Confidence at or above which an instrument counts as playing: over the clip to be listed with
    segments, over a window for that stretch to start a segment."""
    extend_threshold: float = 0.2
    """A segment goes on over the neighbouring windows that score at least this (hysteresis; at most the
    threshold): the model hears a held note less surely than its attack."""
    pool_top_fraction: float = 0.1
    """Clip confidence = mean of the top fraction of window scores (max for short clips)."""
    live_hop_seconds: float = 0.5
    """Step of the app's live view (its "now playing" ranking and rolling timeline) while the microphone records."""
    live_view_seconds: float = 30.0
    """Length of the rolling timeline the app's live view shows."""
    live_listeners: int = 4
    """Live microphone sessions the app scores at once; chunks of further sessions wait in the queue."""
    stream_threads: int = 1
    """Torch threads that score a live window (one per hop): more only wait on each other on a busy CPU
    (README, "Listen live"); 0 keeps the process's. The final analysis of a take uses the process's."""
    stream_stall_seconds: float = 10.0
    """A live stream whose producer sends nothing for this long is closed with a message."""
    stream_max_chunk_seconds: float = 30.0
    """Longest chunk a live stream accepts at once (bounds memory per call)."""
    top_k: int = 5
    """Instruments shown in the app's ranking and label plot, and in the CLI's table."""
    max_upload_mb: float = 200.0
    """Largest upload the app accepts, in MB; Gradio refuses larger ones (HTTP 413) before any analysis."""
    request_timeout_seconds: float = 60.0
    """An app request still analysing after this long is stopped with a message (checked between batches)."""
    concurrency_limit: int = 1
    """Analyses the app runs at once (one shared model); further requests wait in the queue."""
    queue_max_size: int = 16
    """Requests the app holds queued or running; beyond this a new one is refused as busy."""
    queue_per_client: int = 4
    """Requests one client (address) may have queued or running at once; more are refused as busy."""
    upload_max_age_seconds: float = 1800.0
    """Uploads and download exports older than this are removed (analysed or not)."""
    upload_max_total_mb: float = 1000.0
    """Uploads (and, separately, exports) beyond this total are removed, oldest first."""
    cleanup_interval_seconds: float = 60.0
    """How often the app prunes its upload and export folders (uploads cut off mid-body included)."""
    host: str = ""
    """Address the app listens on; empty lets Gradio decide (GRADIO_SERVER_NAME, else 127.0.0.1)."""
    port: int = 0
    """Port the app listens on; 0 lets Gradio decide (GRADIO_SERVER_PORT, else 7860)."""
    log_level: str = "INFO"
    """Level of the logs written to stderr."""


def _env_name(field_name: str) -> str:
    return "INSTRUSENSE_" + field_name.upper()


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(raw)


def load_settings(environ: dict[str, str] | None = None, **overrides: object) -> Settings:
    """Defaults, then environment variables, then explicit overrides (e.g. from CLI flags)."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(Settings):
        raw = env.get(_env_name(f.name))
        if raw is None or raw == "":
            continue
        kind = type(f.default)
        try:
            values[f.name] = _parse_bool(raw) if kind is bool else kind(raw)
        except ValueError as exc:
            raise SettingsError(f"{_env_name(f.name)}={raw!r} is not a valid {kind.__name__}") from exc
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)  # type: ignore[arg-type]
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    positive = ("window_seconds", "hop_seconds", "batch_size", "max_duration_seconds", "top_k",
                "max_upload_mb", "request_timeout_seconds", "concurrency_limit", "queue_max_size", "queue_per_client",
                "upload_max_age_seconds", "upload_max_total_mb", "cleanup_interval_seconds",
                "live_hop_seconds", "live_view_seconds", "live_listeners", "stream_stall_seconds",
                "stream_max_chunk_seconds")
    for name in positive:
        if getattr(s, name) <= 0:
            raise SettingsError(f"{_env_name(name)} must be positive, got {getattr(s, name)}")
    for name in ("threshold", "extend_threshold"):
        if not 0.0 < getattr(s, name) < 1.0:
            raise SettingsError(f"{_env_name(name)} must lie between 0 and 1, got {getattr(s, name)}")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", s.device):
        raise SettingsError(f"{_env_name('device')} must be auto, cpu, cuda or cuda:N, got {s.device!r}")
    if not 0.0 < s.pool_top_fraction <= 1.0:
        raise SettingsError(f"{_env_name('pool_top_fraction')} must lie in (0, 1], got {s.pool_top_fraction}")
