"""Windowing arithmetic: how a recording is cut into model inputs and where each lands on the timeline."""

from __future__ import annotations

import math

import numpy as np


def window_starts(n_samples: int, window: int, hop: int) -> np.ndarray:
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
    starts = window_starts(len(samples), window, hop)
    padded_len = int(starts[-1]) + window
    padded = np.zeros(padded_len, dtype=np.float32)
    padded[: len(samples)] = samples
    idx = starts[:, None] + np.arange(window)[None, :]
    return padded[idx]


def looped(windows: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Each window's first `filled` samples repeated end to end to its full width (a window with nothing
    in it is returned as it is): how a recording shorter than one window sounds played as a loop."""
    out = windows.copy()
    for k, n in enumerate(filled):
        if n > 0:
            out[k] = np.resize(windows[k, :n], windows.shape[1])
    return out


def window_cells(n_windows: int, window_s: float, hop_s: float, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Timeline interval (start, end in seconds) each window stands for.

    Window i covers [i·hop, i·hop + window]; its cell is the hop-long stretch around the window's
    centre, so consecutive cells tile the recording. The first cell starts at 0 and the last ends
    at `duration`.
    """
    centres = np.arange(n_windows) * hop_s + window_s / 2.0
    starts = np.clip(centres - hop_s / 2.0, 0.0, duration)
    ends = np.clip(centres + hop_s / 2.0, 0.0, duration)
    starts[0] = 0.0
    ends[-1] = duration
    return starts, ends
