"""Windowing arithmetic: how a recording is cut into model inputs and where each lands on the timeline."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Geometry:
    """Window length and hop in seconds: window i covers [i·hop, i·hop + window] and stands on the timeline
    for its *cell*, the hop-long stretch around its centre, so that consecutive cells tile the recording."""

    window: float
    hop: float

    @classmethod
    def resolve(cls, native_window: float | None, window: float, hop: float) -> Geometry:
        """The one rule for every face: the model's own input length where it has one (Whisper-style
        extractors pad to a fixed length), else `window`; the hop capped at the window, the same at any length."""
        width = native_window or window
        return cls(width, min(hop, width))

    def in_samples(self, rate: int) -> tuple[int, int]:
        """Window and hop in samples at `rate`."""
        return round(self.window * rate), round(self.hop * rate)

    def window_starts(self, n_windows: int) -> np.ndarray:
        """Start (seconds) of each of the first `n_windows` windows."""
        return np.arange(n_windows) * self.hop

    def cell(self, index: int) -> tuple[float, float]:
        """The cell of window `index` (the first starts at 0), not clipped to any recording's end: what a
        live stream, whose end is not known yet, can place."""
        centre = index * self.hop + self.window / 2.0
        return (0.0 if index == 0 else centre - self.hop / 2.0), centre + self.hop / 2.0

    def cells(self, n_windows: int, duration: float) -> tuple[np.ndarray, np.ndarray]:
        """Cell starts and ends (seconds) of a recording's windows; the last cell ends at `duration`."""
        centres = self.window_starts(n_windows) + self.window / 2.0
        starts = np.clip(centres - self.hop / 2.0, 0.0, duration)
        ends = np.clip(centres + self.hop / 2.0, 0.0, duration)
        starts[0] = 0.0
        ends[-1] = duration
        return starts, ends


def window_offsets(n_samples: int, window: int, hop: int) -> np.ndarray:
    """Start offsets (samples) of windows covering the whole signal; always at least one window.

    The last window may run past the end; `frame` pads it with silence.
    """
    if window <= 0 or hop <= 0:
        raise ValueError("window and hop must be positive")
    if n_samples <= window:
        return np.zeros(1, dtype=np.int64)
    count = 1 + math.ceil((n_samples - window) / hop)
    return np.arange(count, dtype=np.int64) * hop


def frame(samples: np.ndarray, window: int, hop: int) -> np.ndarray:
    """(n_windows, window) array of windows, the tail zero-padded."""
    offsets = window_offsets(len(samples), window, hop)
    padded = np.zeros(int(offsets[-1]) + window, dtype=np.float32)
    padded[: len(samples)] = samples
    return padded[offsets[:, None] + np.arange(window)[None, :]]


def looped(windows: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Each window's first `filled` samples repeated end to end to its full width (a window with nothing
    in it is returned as it is): how a recording shorter than one window sounds played as a loop."""
    out = windows.copy()
    for k, n in enumerate(filled):
        if n > 0:
            out[k] = np.resize(windows[k, :n], windows.shape[1])
    return out
