"""From window scores to answers: clip-level confidences ("what") and segments ("when").

Pure NumPy; `probs` is always (n_windows, n_labels) in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Segment:
    """A stretch of the recording where one instrument plays."""

    label: str
    start: float
    end: float
    confidence: float


def activate(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Sigmoid for multi-label checkpoints, softmax over labels for single-label ones."""
    logits = np.asarray(logits, dtype=np.float64)
    if multi_label:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def clip_confidence(probs: np.ndarray, top_fraction: float) -> np.ndarray:
    """Per-label confidence for the whole clip: mean of each label's top windows.

    An instrument that plays in only part of a long recording still counts (unlike a plain mean),
    while a single spurious window is damped (unlike a plain max). Equals the max for short clips.
    """
    if probs.shape[0] == 0:
        return np.zeros(probs.shape[1])
    k = max(1, math.ceil(top_fraction * probs.shape[0]))
    top = -np.partition(-probs, k - 1, axis=0)[:k]
    return top.mean(axis=0)


def runs_above(values: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Half-open index ranges [i, j) where values ≥ threshold, adjacent windows merged."""
    above = np.concatenate([[False], np.asarray(values) >= threshold, [False]])
    edges = np.flatnonzero(above[1:] != above[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def runs_with_hysteresis(values: np.ndarray, threshold: float, low: float) -> list[tuple[int, int]]:
    """Half-open index ranges [i, j) of consecutive values ≥ `low` that hold at least one value ≥ `threshold`:
    a run starts only where the evidence is strong and goes on while it stays fair (`runs_above` for
    `low` ≥ `threshold`)."""
    values = np.asarray(values)
    return [(a, b) for a, b in runs_above(values, min(low, threshold)) if values[a:b].max() >= threshold]


def extract_segments(probs: np.ndarray, labels: tuple[str, ...] | list[str], threshold: float, low: float,
                     place: Callable[[int, int], tuple[float, float]]) -> list[Segment]:
    """Every run of windows of `runs_with_hysteresis` (`threshold`, `low`) for each label given, in time order,
    where `place(first, last)` puts the run of windows first..last on the timeline (start, end seconds).

    No cap per label: the table, the exports and the plot show the whole recording. A segment's
    confidence is the mean score of its windows.
    """
    segments = [Segment(label, *place(a, b - 1), float(probs[a:b, j].mean()))
                for j, label in enumerate(labels) for a, b in runs_with_hysteresis(probs[:, j], threshold, low)]
    segments.sort(key=lambda s: (s.start, -s.confidence, s.label))
    return segments
