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

    def run_span(self, first: int, last: int, n_windows: int, duration: float) -> tuple[float, float]:
        """Where a run of consecutive windows `first`..`last` that hear an instrument places it (seconds).

        It starts where the window before the run ends (the first moment that no window below the threshold
        covers), at most half a hop before its end: the model names an instrument as soon as a note's attack
        lies in a window, even near its end, so the first window to hear it holds the onset in the part it
        does not share with its predecessor (the first window's cell put onsets with other music across them
        1.3 s early, median, on recordings with known onsets: benchmarks/segment_edges.md). It ends where the
        last window's cell ends: the model keeps hearing an instrument while its last attack is in a window,
        and its sound goes on for about as long after it. The recording's start and end bound both.
        """
        end = duration if last == n_windows - 1 else min(self.cell(last)[1], duration)
        start = 0.0 if first == 0 else min(first * self.hop + self.window - self.hop, end - self.hop / 2.0)
        return max(0.0, start), end

    def span(self, index: int, duration: float) -> tuple[float, float]:
        """The stretch of the recording that window `index` covers (seconds; its padded tail left out)."""
        start = index * self.hop
        return min(start, duration), min(start + self.window, duration)


def snap_to_silence(start: float, end: float, first: tuple[float, float], last: tuple[float, float],
                    silences: np.ndarray, shortest: float = 0.0) -> tuple[float, float]:
    """A segment's edges moved to the silences beside them, which are finer evidence than any window.

    The start goes to the end of the silence it lies in, else to the end of the last silence before it when
    that silence ends inside the run's `first` window (the window hears the instrument: it plays from where
    the sound it is part of begins); the end likewise to the start of the silence it lies in, else of the
    next silence after it that starts inside the `last` window. `silences` is (k, 2) start and end seconds
    in time order (`audio.quiet_stretches`). A start moved past a silence takes the end along to keep the
    segment `shortest` seconds long where its last window allows; both edges stay where moving them would
    leave nothing.
    """
    new_start, new_end = start, end
    i = int(np.searchsorted(silences[:, 0], start, side="right")) - 1  # the last silence starting at or before it
    if i >= 0 and (silences[i, 1] > start or silences[i, 1] > first[0]):
        new_start = float(silences[i, 1])
    reach = new_end = max(end, min(new_start + shortest, last[1]))
    j = int(np.searchsorted(silences[:, 1], reach, side="left"))  # the first silence ending at or after it
    if j < len(silences) and (silences[j, 0] < reach or silences[j, 0] < last[1]):
        new_end = float(silences[j, 0])
    return (new_start, new_end) if new_end > new_start else (start, end)


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
