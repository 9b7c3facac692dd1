"""The analysis pipeline: recording → windows → model → clip labels ("what") and timeline ("when")."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from instrusense.audio import Recording, load_audio, rms_dbfs
from instrusense.model import StopSignal, Tagger, check_stop
from instrusense.scores import Segment, clip_confidence, extract_segments
from instrusense.settings import Settings
from instrusense.taxonomy import FAMILY_OF, LABELS
from instrusense.windows import choose_hop, frame, window_cells

log = logging.getLogger(__name__)

SILENT_MESSAGE = "No instrument detected: the recording is silent."


@dataclass(frozen=True)
class LabelScore:
    label: str
    family: str
    confidence: float


@dataclass(frozen=True)
class Timeline:
    """Confidence of every label over time: row i covers [starts[i], ends[i]) seconds."""

    starts: np.ndarray
    ends: np.ndarray
    probs: np.ndarray  # (n_cells, len(LABELS))


@dataclass(frozen=True)
class Analysis:
    duration: float
    """Duration of the whole file in seconds."""
    analysed_seconds: float
    labels: list[LabelScore]
    """Every taxonomy label, highest confidence first."""
    segments: list[Segment]
    timeline: Timeline
    notices: list[str] = field(default_factory=list)
    """Things the user should know about this result (truncation, silence, repaired samples)."""

    def top(self, k: int) -> list[LabelScore]:
        return self.labels[:k]


def _fmt_minutes(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"


def analyze_recording(rec: Recording, tagger: Tagger, settings: Settings,
                      should_stop: StopSignal | None = None) -> Analysis:
    """Run the model over windows of a decoded recording and summarise what plays when.

    `should_stop` is checked between model batches (see `Tagger.predict`); it raises `Stopped`.
    """
    notices: list[str] = []
    if rec.truncated:
        notices.append(f"Only the first {_fmt_minutes(rec.duration)} of {_fmt_minutes(rec.source_duration)} "
                       "were analysed (limit: INSTRUSENSE_MAX_DURATION_SECONDS).")
    if rec.nonfinite_samples:
        notices.append(f"{rec.nonfinite_samples} invalid samples (NaN/Inf) were treated as silence.")

    window_s = tagger.native_window_seconds or settings.window_seconds
    hop_s = choose_hop(rec.duration, window_s, settings.hop_seconds, settings.max_windows)
    window, hop = round(window_s * rec.sample_rate), round(hop_s * rec.sample_rate)
    windows = frame(rec.samples, window, hop)
    starts, ends = window_cells(len(windows), window_s, hop_s, rec.duration)

    loud = np.array([rms_dbfs(w) >= settings.silence_dbfs for w in windows])
    probs = np.zeros((len(windows), len(LABELS)), dtype=np.float32)
    if loud.any():
        peak = float(np.abs(rec.samples).max())
        gain = np.float32(0.9 / peak) if peak > 0 else np.float32(1.0)
        probs[loud] = tagger.predict(windows[loud] * gain, settings.batch_size, should_stop)
    else:
        notices.append(SILENT_MESSAGE)

    clip = clip_confidence(probs, settings.pool_top_fraction)
    order = np.argsort(-clip, kind="stable")
    labels = [LabelScore(LABELS[i], FAMILY_OF[LABELS[i]], float(clip[i])) for i in order]
    segments = extract_segments(probs, starts, ends, LABELS, settings.threshold, settings.segments_per_label)
    if loud.any() and not segments:
        notices.append(f"No instrument detected with confidence ≥ {settings.threshold:g}.")
    return Analysis(duration=rec.source_duration, analysed_seconds=rec.duration, labels=labels,
                    segments=segments, timeline=Timeline(starts, ends, probs), notices=notices)


def analyze_file(path: str | Path, tagger: Tagger, settings: Settings,
                 should_stop: StopSignal | None = None) -> Analysis:
    """Decode a file and analyse it. Raises `AudioError` for unusable input, `Stopped` when told to stop."""
    rec = load_audio(path, tagger.sampling_rate, max_seconds=settings.max_duration_seconds,
                     min_seconds=settings.min_duration_seconds)
    check_stop(should_stop)
    return analyze_recording(rec, tagger, settings, should_stop)
