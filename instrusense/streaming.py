"""Live analysis: audio arrives in chunks, a window score comes out every hop, and the finished
stream is analysed exactly as a file of the same audio would be.

The live scores are a preview, and the final result is the batch analysis of the kept take rather
than the live scores put together, because three things the batch path does cannot be done live:
it scales the whole recording by its peak before the model (a stream learns its peak only at the
end), it resamples the whole signal at once (a chunk's last samples depend on audio not yet heard),
and on CPUs the model's dynamic int8 layers quantise each batch of windows with one scale (a window
scored alone differs a little from the same window scored among fifteen others). `finish` therefore
builds the take with the same `RecordingBuilder` a decoded file goes through (block by block) and hands
it to `analyze_recording`: stream-final == batch by construction, whatever the batch path does (README,
"Listen live").
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from instrusense.analysis import Analysis, analyze_recording, geometry_for, predict_windows
from instrusense.audio import (MAX_CHANNELS, AudioError, Recording, RecordingBuilder, check_sample_rate, long_enough,
                               resample, rms_dbfs, to_mono)
from instrusense.model import Tagger
from instrusense.scores import Segment
from instrusense.settings import Settings
from instrusense.taxonomy import LABELS

_CONTEXT_S = 0.05  # audio kept before a live window so that resampling its first samples has real context
_INT_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0, np.dtype(np.int8): 128.0}
_EPS = 1e-9


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch ops of the calling thread on `n` intra-op threads (0: unchanged). OpenMP keeps the count per
    thread, so requests running in other threads keep theirs."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class StreamError(ValueError):
    """A stream that cannot be analysed (wrong format, a chunk too large, a changing rate); the message
    says why, in words for a user."""


@dataclass(frozen=True)
class Hop:
    """One live window score."""

    time: float
    """End of the audio covered, seconds since the stream began."""
    start: float
    """Start of the window scored (windows shorter than the model's are heard padded and looped, as in batch)."""
    probs: np.ndarray
    """(len(LABELS),) confidences; zeros for a silent window."""
    closed: list[Segment]
    """Segments that ended with this hop (live preview: the final analysis has the authoritative ones)."""

    def top(self, k: int) -> list[tuple[str, float]]:
        order = np.argsort(-self.probs, kind="stable")[:k]
        return [(LABELS[i], float(self.probs[i])) for i in order]


class _OpenRuns:
    """Segments kept open and closed hop by hop: the incremental form of `scores.runs_above` (a run of
    consecutive windows at or above the threshold, from its first window's cell to its last one's; its
    confidence is the mean of its windows). A preview: the final analysis also extends a run over weaker
    neighbouring windows and places its edges by the windows' overlap and the silences beside them
    (`analysis.segment_placer`), which a window at a time cannot do, so its segments may differ."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.start = np.zeros(len(LABELS))
        self.total = np.zeros(len(LABELS))
        self.count = np.zeros(len(LABELS), dtype=np.int64)
        self.end = 0.0

    def push(self, probs: np.ndarray, cell_start: float, cell_end: float) -> list[Segment]:
        above = probs >= self.threshold
        closed = self._close(~above)
        opening = above & (self.count == 0)
        self.start[opening] = cell_start
        self.total[above] += probs[above]
        self.count[above] += 1
        self.end = cell_end
        return closed

    def close_all(self) -> list[Segment]:
        return self._close(np.ones(len(LABELS), dtype=bool))

    def _close(self, mask: np.ndarray) -> list[Segment]:
        ending = np.flatnonzero(mask & (self.count > 0))
        closed = [Segment(LABELS[j], float(self.start[j]), self.end, float(self.total[j] / self.count[j]))
                  for j in ending]
        self.total[ending], self.count[ending] = 0.0, 0
        return sorted(closed, key=lambda s: (s.start, -s.confidence, s.label))


def to_float_mono(chunk: np.ndarray) -> np.ndarray:
    """A chunk of samples, (frames,) or (frames, channels), integer or float PCM, as mono float32 scaled
    as a decoder would scale it (int16 / 32768, ...); NaN/Inf are kept for the `RecordingBuilder` to count."""
    chunk = np.asarray(chunk)
    if chunk.dtype == np.uint8:  # 8-bit PCM is unsigned
        chunk = (chunk.astype(np.float32) - 128.0) / 128.0
    elif chunk.dtype in _INT_SCALE:
        chunk = chunk.astype(np.float32) / np.float32(_INT_SCALE[chunk.dtype])
    elif chunk.dtype.kind == "f":
        chunk = chunk.astype(np.float32, copy=False)
    else:
        raise StreamError(f"Audio chunks must hold PCM samples (integers or floats), not {chunk.dtype}.")
    if chunk.ndim == 1:
        return chunk
    if chunk.ndim != 2 or not 1 <= chunk.shape[1] <= MAX_CHANNELS:
        raise StreamError(f"An audio chunk must be (frames,) or (frames, channels ≤ {MAX_CHANNELS}); "
                          f"got shape {chunk.shape}.")
    return to_mono(chunk)


class StreamAnalyser:
    """Feed chunks of any size at one sample rate; get a `Hop` every `hop_seconds`; `finish` gives the
    analysis of the whole take.

    Memory is bounded: the take is kept up to INSTRUSENSE_MAX_DURATION_SECONDS (beyond it the final
    analysis covers the first part, with a notice, as for a file; live hops go on), the live path
    keeps a window and a hop of audio and `history` the scores of the last INSTRUSENSE_LIVE_VIEW_SECONDS.
    """

    def __init__(self, tagger: Tagger, settings: Settings, sample_rate: int, hop_seconds: float | None = None):
        try:
            check_sample_rate(int(sample_rate))
        except AudioError as exc:
            raise StreamError(str(exc)) from None
        self.tagger, self.settings, self.rate = tagger, settings, int(sample_rate)
        self.geometry = geometry_for(tagger, settings, hop_seconds)
        self.history: deque[Hop] = deque(maxlen=math.ceil(settings.live_view_seconds / self.geometry.hop) + 1)
        self._take = RecordingBuilder(self.rate, tagger.sampling_rate)  # at the model's rate: 38 MB per 10 min
        self._take_cap = int(math.ceil(settings.max_duration_seconds * self.rate))  # as `decode` cuts a file
        self._kept = 0
        self._unpushed: list[np.ndarray] = []  # pushed to the builder a second at a time: one resampling call each
        self._recording: Recording | None = None
        self._fed = 0
        self._tail = np.zeros(0, np.float32)
        # one window and its context behind the newest hop due, which is less than a hop behind the audio
        self._tail_cap = int(math.ceil((self.geometry.window + self.geometry.hop + _CONTEXT_S) * self.rate))
        self._peak = 0.0
        self._next = self.geometry.hop  # never past the window (`Geometry.resolve`)
        self._pending: float | None = None  # the newest hop due that `score_pending` has not scored
        self._runs = _OpenRuns(settings.threshold)
        self._cells = 0
        self._audio_lock = threading.Lock()  # `keep` and a snapshot of what to score
        self._score_lock = threading.Lock()  # hops are scored one call at a time, in order

    @property
    def seconds(self) -> float:
        """Audio received so far, in seconds."""
        return self._fed / self.rate

    def feed(self, chunk: np.ndarray, max_scored: int | None = None) -> list[Hop]:
        """Take one chunk; return the hops it completed (none, one, or several for a long chunk).

        `max_scored` scores only the newest hops due (0: none), e.g. for a live view that has fallen
        behind: the audio is kept all the same, so the final analysis is unaffected.
        """
        with self._score_lock:
            with self._audio_lock:
                due, buffer, buffer_start = self._keep(chunk)
                self._pending, peak = None, self._peak
            if max_scored is not None:
                due = due[len(due) - max_scored:] if max_scored > 0 else []
            return self._score(due, buffer, buffer_start, peak)

    def keep(self, chunk: np.ndarray) -> None:
        """Take one chunk without scoring it: `score_pending`, called from another thread, scores the newest
        hop due. For a caller that must return at once, such as a web server whose stream keeps only the
        latest chunk sent while its handler runs (Gradio's does: a handler that waits for the model loses
        audio from the take)."""
        with self._audio_lock:
            due, _, _ = self._keep(chunk)
            if due:
                self._pending = due[-1]

    def score_pending(self) -> list[Hop]:
        """Score the newest hop due since the last call, skipping older ones (a live view shows the newest);
        [] when none is due. Safe to run while `keep` takes chunks in another thread."""
        with self._score_lock:
            with self._audio_lock:
                if self._pending is None:
                    return []
                due, self._pending = [self._pending], None
                buffer, buffer_start, peak = self._tail.copy(), self._fed - len(self._tail), self._peak
            return self._score(due, buffer, buffer_start, peak)

    def _keep(self, chunk: np.ndarray) -> tuple[list[float], np.ndarray, int]:
        """Keep a chunk for the take and the live tail; the hops it makes due, and the audio that covers them
        (with the sample index where it starts)."""
        mono = to_float_mono(chunk)
        if len(mono) > self.settings.stream_max_chunk_seconds * self.rate:
            raise StreamError(f"A chunk of {len(mono) / self.rate:.1f} s arrived at once; a live stream takes at "
                              f"most {self.settings.stream_max_chunk_seconds:g} s per chunk "
                              "(INSTRUSENSE_STREAM_MAX_CHUNK_SECONDS). Send smaller chunks.")
        if self._recording is not None:
            raise StreamError("This stream has finished; start a new one.")
        if self._kept < self._take_cap:
            part = mono[:self._take_cap - self._kept].copy()
            self._kept += len(part)
            self._unpushed.append(part)
            if self._kept - self._take.samples_in >= self.rate:
                self._push_take()
        live = np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0)
        if live.size:
            self._peak = max(self._peak, float(np.abs(live).max()))
        buffer = np.concatenate([self._tail, live])
        buffer_start = self._fed - len(self._tail)
        self._fed += len(live)
        self._tail = buffer[-self._tail_cap:]
        due = []
        window, hop = self.geometry.window, self.geometry.hop
        while self._next <= self.seconds + _EPS:
            due.append(self._next)
            following = self._next + hop
            if self._next < window - _EPS and following > window + _EPS:
                following = window  # the first whole window, whatever the hop
            self._next = following
        return due, buffer, buffer_start

    def finish(self) -> Analysis:
        """The analysis of the whole take, equal to `analyze_file` on a file holding the same samples.
        Raises `AudioError` for a take that cannot be analysed (empty, too short)."""
        return analyze_recording(long_enough(self.recording(), self.settings.min_duration_seconds),
                                 self.tagger, self.settings)

    def recording(self) -> Recording:
        """The take as the analysis reads it (at the model's rate, cleaned); ends the stream."""
        with self._audio_lock:
            if self._recording is None:
                self._push_take()
                self._recording = self._take.finish(source_duration=self.seconds)
            return self._recording

    def _push_take(self) -> None:
        if self._unpushed:
            self._take.push(np.concatenate(self._unpushed))
            self._unpushed = []

    def close_segments(self) -> list[Segment]:
        """Close the live segments still open (end of stream)."""
        return self._runs.close_all()

    def _window(self, end_s: float, buffer: np.ndarray, buffer_start: int) -> tuple[np.ndarray, int]:
        """The model-rate window ending at `end_s` and how many of its samples hold audio (it is
        zero-padded at the end while the stream is younger than one window, as `windows.frame` pads a
        short recording)."""
        model_rate = self.tagger.sampling_rate
        start_s = max(0.0, end_s - self.geometry.window)
        lo = max(0, round((start_s - _CONTEXT_S) * self.rate)) - buffer_start
        hi = round(end_s * self.rate) - buffer_start
        audio = resample(buffer[max(lo, 0):hi], self.rate, model_rate)
        width, have = round(self.geometry.window * model_rate), round((end_s - start_s) * model_rate)
        window = np.zeros(width, np.float32)
        got = audio[-have:] if have else audio[:0]
        window[:len(got)] = got
        return window, len(got)

    def _score(self, due: list[float], buffer: np.ndarray, buffer_start: int, peak: float) -> list[Hop]:
        if not due:
            return []
        over = max(peak, 1.0)  # `clean` scales over-range float audio back by its peak
        windows, filled = zip(*(self._window(t, buffer, buffer_start) for t in due))
        windows, filled = np.stack(windows), np.array(filled)
        loud = np.array([rms_dbfs(w / over) >= self.settings.silence_dbfs for w in windows])
        probs = np.zeros((len(due), len(LABELS)), np.float32)
        if loud.any():
            gain = np.float32(0.9 / peak)
            with torch_threads(self.settings.stream_threads):
                probs[loud] = predict_windows(self.tagger, windows[loud] * gain, filled[loud], self.settings.batch_size)
        hops = []
        for t, p in zip(due, probs):
            closed: list[Segment] = []
            if t >= self.geometry.window - _EPS:  # a whole window: its timeline cell, as a file's is placed
                closed = self._runs.push(p, *self.geometry.cell(self._cells))
                self._cells += 1
            hop = Hop(time=round(t, 6), start=round(max(0.0, t - self.geometry.window), 6), probs=p, closed=closed)
            self.history.append(hop)
            hops.append(hop)
        return hops
