"""The analysis pipeline: recording → windows → model → clip labels ("what") and timeline ("when")."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from instrusense.audio import Recording, load_audio, quiet_stretches, rms_dbfs
from instrusense.model import Tagger
from instrusense.stopping import StopSignal
from instrusense.scores import Segment, clip_confidence, extract_segments
from instrusense.settings import Settings
from instrusense.taxonomy import FAMILY_OF, LABELS
from instrusense.windows import Geometry, frame, looped, snap_to_silence

log = logging.getLogger(__name__)

SILENT_MESSAGE = "No instrument detected: the recording is silent."


@dataclass(frozen=True)
class LabelScore:
    label: str
    family: str
    confidence: float


@dataclass(frozen=True)
class Timeline:
    """Confidence of every label over time: window i starts at i·hop and stands on the timeline for its
    cell [cell_starts[i], cell_ends[i]) (`windows.Geometry`)."""

    cell_starts: np.ndarray
    cell_ends: np.ndarray
    probs: np.ndarray  # (n_windows, len(LABELS))
    geometry: Geometry

    @property
    def window(self) -> float:
        """Window length in seconds."""
        return self.geometry.window

    @property
    def hop(self) -> float:
        """Step between windows in seconds: the timeline's resolution."""
        return self.geometry.hop

    @property
    def window_starts(self) -> np.ndarray:
        return self.geometry.window_starts(len(self.probs))


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

    threshold: float = 0.5
    """Clip confidence at or above which an instrument counts as playing (and gets segments)."""

    def top(self, k: int) -> list[LabelScore]:
        return self.labels[:k]

    def shown(self, k: int) -> list[LabelScore]:
        """What a face shows: the top k, and every instrument that passes the threshold (it has segments)."""
        passing = sum(s.confidence >= self.threshold for s in self.labels)
        return [s for s in self.labels[:max(k, passing)] if s.confidence > 0]


def _fmt_minutes(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"


def geometry_for(tagger: Tagger, settings: Settings, hop_seconds: float | None = None) -> Geometry:
    """Window and hop for this model and these settings (`hop_seconds` overrides the setting's hop: the live view)."""
    return Geometry.resolve(tagger.native_window_seconds, settings.window_seconds, hop_seconds or settings.hop_seconds)


def predict_windows(tagger: Tagger, windows: np.ndarray, filled: np.ndarray, batch_size: int,
                    should_stop: StopSignal | None = None) -> np.ndarray:
    """Window scores, where a window that only the first `filled` samples fill (a recording shorter than
    one window) is heard twice and the two scores are averaged: zero-padded, as the model was trained on
    short recordings, and looped to fill the window. Padded, a 0.1–0.5 s recording is mostly silence and
    sustained instruments are missed; looped, a decaying note turns into repeated ones and piano and banjo
    are missed; the mean names more of both (finetune/EXPERIMENTS.md, "a looped view")."""
    short = np.flatnonzero((filled > 0) & (filled < windows.shape[1]))
    if not len(short):  # the usual case: no second view, and no copy of a long recording's windows
        return tagger.predict(windows, batch_size, should_stop)
    probs = tagger.predict(np.concatenate([windows, looped(windows[short], filled[short])]), batch_size,
                           should_stop)
    out = probs[:len(windows)].copy()
    out[short] = (out[short] + probs[len(windows):]) / 2
    return out


def segment_placer(rec: Recording, geometry: Geometry, n_windows: int,
                   settings: Settings) -> Callable[[int, int], tuple[float, float]]:
    """Where a run of windows first..last that hear an instrument puts it on the timeline: the overlap of the
    windows (`Geometry.run_span`), then the silences inside its first and last window
    (`windows.snap_to_silence`; quieter than INSTRUSENSE_SILENCE_DBFS). Measured against recordings with
    known onsets by `benchmarks/segment_edges.py`."""
    silences = quiet_stretches(rec.samples, rec.sample_rate, settings.silence_dbfs)

    def place(first: int, last: int) -> tuple[float, float]:
        start, end = geometry.run_span(first, last, n_windows, rec.duration)
        return snap_to_silence(start, end, geometry.span(first, rec.duration), geometry.span(last, rec.duration),
                               silences, shortest=geometry.hop / 2.0)

    return place


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

    geometry = geometry_for(tagger, settings)
    window, hop = geometry.in_samples(rec.sample_rate)
    windows = frame(rec.samples, window, hop)
    starts, ends = geometry.cells(len(windows), rec.duration)

    loud = np.array([rms_dbfs(w) >= settings.silence_dbfs for w in windows])
    probs = np.zeros((len(windows), len(LABELS)), dtype=np.float32)
    if loud.any():
        peak = float(np.abs(rec.samples).max())
        gain = np.float32(0.9 / peak) if peak > 0 else np.float32(1.0)
        filled = np.full(len(windows), min(window, len(rec.samples)))  # < window: a short recording
        probs[loud] = predict_windows(tagger, windows[loud] * gain, filled[loud], settings.batch_size, should_stop)
    else:
        notices.append(SILENT_MESSAGE)

    clip = clip_confidence(probs, settings.pool_top_fraction)
    order = np.argsort(-clip, kind="stable")
    labels = [LabelScore(LABELS[i], FAMILY_OF[LABELS[i]], float(clip[i])) for i in order]
    passing = [i for i in order if clip[i] >= settings.threshold]  # below it: never a segment
    segments = extract_segments(probs[:, passing], [LABELS[i] for i in passing], settings.threshold,
                                settings.extend_threshold, segment_placer(rec, geometry, len(windows), settings))
    if loud.any() and not segments:
        notices.append(f"No instrument detected with confidence ≥ {settings.threshold:g}.")
    return Analysis(duration=rec.source_duration, analysed_seconds=rec.duration, labels=labels,
                    segments=segments, timeline=Timeline(starts, ends, probs, geometry), notices=notices,
                    threshold=settings.threshold)


def analyze_file(path: str | Path, tagger: Tagger, settings: Settings,
                 should_stop: StopSignal | None = None) -> Analysis:
    """Decode a file and analyse it. Raises `AudioError` for unusable input, `Stopped` when told to stop."""
    rec = load_audio(path, tagger.sampling_rate, max_seconds=settings.max_duration_seconds,
                     min_seconds=settings.min_duration_seconds, should_stop=should_stop)
    return analyze_recording(rec, tagger, settings, should_stop)
