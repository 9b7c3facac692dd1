"""Decoding and cleaning recordings into the mono float signal the model needs.

Every way a file can be unusable ends in an `AudioError` whose message is fit to show a user;
nothing else escapes `load_audio`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from instrusense.native_output import native_output_to_log
from instrusense.stopping import StopSignal, Stopped, check_stop

log = logging.getLogger(__name__)

MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 64
"""More channels than any recording people analyse (7.1 is 8, Ambisonics of order 7 is 64): a header claiming
more is refused before decoding, as decoding time grows with channels × rate × duration."""
EMPTY = "The recording is empty (it holds no audio samples)."
_MAX_FILTER_TAPS = 1 << 21  # bounds torchaudio's resampling filter bank (~8 MB of float32)
_BLOCK_SAMPLES = 1 << 20  # decode in blocks of ~4 MB: memory follows what is analysed, not the file


class AudioError(ValueError):
    """A recording that cannot be analysed; the message says why, in words for a user."""


@dataclass(frozen=True)
class Recording:
    """A decoded recording: mono float32 at `sample_rate`, possibly cut to the analysis limit."""

    samples: np.ndarray
    sample_rate: int
    source_duration: float
    """Length of the whole file in seconds (longer than `samples` when truncated)."""
    nonfinite_samples: int = 0

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def truncated(self) -> bool:
        return self.source_duration - self.duration > 1.0 / self.sample_rate


def to_mono(frames: np.ndarray) -> np.ndarray:
    """Average channels of a (frames, channels) block; 1-D input passes through."""
    return frames if frames.ndim == 1 else frames.mean(axis=1, dtype=np.float32)


def resample(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's windowed sinc) to ``round(len * new / orig)`` samples."""
    if orig_rate == new_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    resampler = BlockResampler(orig_rate, new_rate)
    out = np.concatenate([resampler.push(np.asarray(samples, np.float32)), resampler.flush()])
    return _fit(out, round(len(samples) * new_rate / orig_rate))


def _fit(samples: np.ndarray, length: int) -> np.ndarray:
    return samples[:length] if len(samples) >= length else np.pad(samples, (0, length - len(samples)))


class BlockResampler:
    """torchaudio's resampling fed block by block, equal to resampling the whole signal at once.

    Memory is bounded by one block, not by the recording: a 0.9 MB FLAC can hold 11 minutes at
    384 kHz (1 GB as float32). Blocks are cut at multiples of the rate ratio's input period and get
    the sinc filter's reach of context on each side, so each output sample sees the input it would
    see in one pass. torchaudio's filter bank holds (orig/g)·(new/g) taps, g = gcd(orig, new): a few
    thousand for the usual rates, but tens of GB for an odd one such as 383 999 Hz. Such a rate is
    first rounded to the nearest rate with a small filter bank (a change of at most 0.1 %, which the
    tagger does not hear), so memory stays bounded whatever a file's header claims.
    """

    def __init__(self, orig_rate: int, new_rate: int):
        self.rate, self.new_rate = _tractable_rate(orig_rate, new_rate), new_rate
        g = math.gcd(self.rate, new_rate)
        self._o, self._n = self.rate // g, new_rate // g
        reach = math.ceil(6 * self._o / (0.99 * min(self._o, self._n)))  # torchaudio's default filter width
        self._pad = self._o * (-(-reach // self._o) + 1)
        self._history = np.zeros(self._pad, np.float32)  # zeros before the start, as torchaudio pads
        self._pending = np.zeros(0, np.float32)

    def push(self, block: np.ndarray) -> np.ndarray:
        """Resampled output for as much of the input so far as has its right-hand context."""
        if self.rate == self.new_rate:
            return block
        self._pending = np.concatenate([self._pending, block])
        usable = (len(self._pending) - self._pad) // self._o * self._o
        if usable <= 0:
            return np.zeros(0, np.float32)
        out = self._run(np.concatenate([self._history, self._pending[:usable + self._pad]]), usable)
        self._history = np.concatenate([self._history, self._pending[:usable]])[-self._pad:]
        self._pending = self._pending[usable:]
        return out

    def flush(self) -> np.ndarray:
        """The rest of the output, the end padded with zeros as torchaudio pads it."""
        if self.rate == self.new_rate:
            return np.zeros(0, np.float32)
        tail = np.concatenate([self._history, self._pending, np.zeros(self._pad, np.float32)])
        out = self._run(tail, len(self._pending))
        self._pending = np.zeros(0, np.float32)
        return out

    def _run(self, segment: np.ndarray, n_input: int) -> np.ndarray:
        out = AF.resample(torch.from_numpy(segment), self.rate, self.new_rate).numpy()
        lead = self._pad // self._o * self._n
        return out[lead:lead + math.ceil(n_input * self._n / self._o)]


def _tractable_rate(orig: int, new: int) -> int:
    """`orig`, or the nearest rate whose filter bank towards `new` stays small (see `resample`)."""
    for step in (1, 2, 4, 5, 8, 10, 20, 25, 50, 100, 200, 500, 1000):
        rate = max(round(orig / step) * step, step)
        g = math.gcd(rate, new)
        if (rate // g) * (new // g) <= _MAX_FILTER_TAPS:
            return rate
    return orig


def rms_dbfs(samples: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale; -inf for digital silence."""
    if samples.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


QUIET_FRAME_SECONDS = 0.05
"""The resolution of `quiet_stretches`."""


def quiet_stretches(samples: np.ndarray, rate: int, floor_dbfs: float) -> np.ndarray:
    """(k, 2) start and end seconds of the stretches whose 50 ms frames all have an RMS level under
    `floor_dbfs` (the pauses a segment's edges can snap to), in time order; the last one may end at the
    recording's end."""
    n = max(1, round(QUIET_FRAME_SECONDS * rate))
    full = len(samples) // n
    frames = samples[:full * n].reshape(full, n)
    power = np.einsum("ij,ij->i", frames, frames) / n
    if len(samples) > full * n:
        tail = samples[full * n:]
        power = np.append(power, float(np.dot(tail, tail)) / len(tail))
    quiet = np.concatenate([[False], power < 10.0 ** (floor_dbfs / 10.0), [False]])
    edges = np.flatnonzero(quiet[1:] != quiet[:-1]).reshape(-1, 2) * n / rate
    return np.minimum(edges, len(samples) / rate)


@dataclass
class _Source:
    """An opened file: its rate, the duration its header claims (None if unknown) and its mono blocks."""

    rate: int
    seconds: float | None
    blocks: Iterator[np.ndarray]
    format: str = ""
    cut: bool = False
    """Set once the blocks stopped at `max_seconds` with more audio to come."""


@contextmanager
def _open_soundfile(path: Path, max_seconds: float) -> Iterator[_Source]:
    with sf.SoundFile(str(path)) as f:
        rate, total, channels = int(f.samplerate), int(f.frames), max(int(f.channels), 1)
        check_sample_rate(rate)
        check_channels(channels)
        if total <= 0:
            raise AudioError(EMPTY)
        limit = min(total, int(math.ceil(max_seconds * rate)))

        def blocks() -> Iterator[np.ndarray]:
            buffer = np.empty((min(max(_BLOCK_SAMPLES // channels, 1), limit), channels), np.float32)
            left = limit
            while left > 0:
                got = f.read(out=buffer[:left])  # only the frames really read (never stale buffer)
                if len(got) == 0:  # a header may claim more frames than the file holds
                    return
                left -= len(got)
                yield to_mono(got)
            source.cut = limit < total

        source = _Source(rate, total / rate, blocks(), str(f.format))
        yield source


@contextmanager
def _open_ffmpeg(path: Path, max_seconds: float) -> Iterator[_Source]:
    """Formats libsndfile lacks (m4a/aac, webm/opus from browsers) through FFmpeg via torchcodec."""
    from torchcodec.decoders import AudioDecoder  # imported lazily: needs FFmpeg's libraries

    decoder = AudioDecoder(str(path))
    meta = decoder.metadata
    rate = int(meta.sample_rate or 0)
    check_sample_rate(rate)
    check_channels(int(meta.num_channels or 1))
    step = max(_BLOCK_SAMPLES // max(int(meta.num_channels or 1), 1), 1) / rate
    source = _Source(rate, meta.duration_seconds_from_header, iter(()))  # 0.8 has no `duration_seconds`
    counting = source.seconds is None  # WebM from browsers: decoded to the end to learn the duration

    def blocks() -> Iterator[np.ndarray]:
        start = 0.0
        while start < max_seconds or counting:
            try:
                clip = decoder.get_samples_played_in_range(start, start + step)
            except RuntimeError:  # "No audio frames were decoded": past the end
                if start == 0.0:
                    raise
                return
            n = clip.data.shape[-1]
            if n == 0:
                return
            if start < max_seconds:
                keep = math.ceil((max_seconds - start) * rate)
                source.cut = source.cut or n > keep
                yield clip.data[:, :keep].mean(dim=0).numpy()
            else:
                source.cut = True
            if counting:
                source.seconds = start + n / rate
            start += step
        source.cut = source.cut or (source.seconds or 0.0) > max_seconds  # stopped at a block's edge

    source.blocks = blocks()
    yield source


def check_sample_rate(rate: int) -> None:
    """Raise `AudioError` for a rate outside what InstruSense reads (files and live streams alike)."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"Unsupported sample rate {rate} Hz: InstruSense reads {MIN_SAMPLE_RATE // 1000}"
                         f"–{MAX_SAMPLE_RATE // 1000} kHz audio.")


def check_channels(channels: int) -> None:
    """Raise `AudioError` for a channel count beyond `MAX_CHANNELS` (files and live streams alike)."""
    if channels > MAX_CHANNELS:
        raise AudioError(f"The file claims {channels} audio channels; InstruSense reads recordings of at most "
                         f"{MAX_CHANNELS} channels.")


def _undecodable(path: Path) -> AudioError:
    return AudioError(f"Could not decode {path.name} as audio: the file is not a recording in a readable "
                      "format, or it is corrupt. Readable formats: WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF, "
                      "and M4A/AAC/WebM where FFmpeg is installed.")


def _id3_bytes(path: Path) -> int:
    """Size of a leading ID3v2 tag (cover art can be most of a short MP3)."""
    with path.open("rb") as f:
        head = f.read(10)
    if len(head) == 10 and head[:3] == b"ID3":
        return 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
    return 0


def _not_mostly_mp3(path: Path, seconds: float) -> bool:
    """libmpg123 skips junk until something looks like a frame: a binary named .mp3 decodes to a few
    milliseconds. At MPEG's highest bit rate (448 kbit/s) real frames fill most of the file."""
    return seconds * 56_000 < 0.5 * (path.stat().st_size - _id3_bytes(path) - 128)


class RecordingBuilder:
    """Mono blocks of any size in, a `Recording` out: NaN/Inf silenced, resampled block by block,
    over-range audio scaled back by its peak. The one way decoded audio becomes a `Recording`, from a
    file or from a live stream (`streaming.py`), so that both are analysed alike."""

    def __init__(self, rate: int, sample_rate: int):
        self.rate, self.sample_rate = rate, sample_rate
        self._resampler = BlockResampler(rate, sample_rate)
        self._parts: list[np.ndarray] = []
        self.samples_in = 0
        self.nonfinite = 0
        self.peak = 0.0

    def push(self, block: np.ndarray) -> None:
        block, bad = _finite(block)
        self.samples_in, self.nonfinite = self.samples_in + len(block), self.nonfinite + bad
        if block.size:
            self.peak = max(self.peak, float(block.max()), -float(block.min()))
        self._parts.append(self._resampler.push(block))

    def finish(self, source_duration: float) -> Recording:
        """The recording (call once); `source_duration` is the length of the whole source."""
        self._parts.append(self._resampler.flush())
        if self.samples_in == 0:
            raise AudioError(EMPTY)
        samples = _fit(np.concatenate(self._parts), round(self.samples_in * self.sample_rate / self.rate))
        self._parts = []
        if self.peak > 1.0:  # over-range float audio; scaling commutes with resampling
            samples /= np.float32(self.peak)
        return Recording(samples=samples, sample_rate=self.sample_rate, source_duration=source_duration,
                         nonfinite_samples=self.nonfinite)


def _read(opener, path: Path, sample_rate: int, max_seconds: float, should_stop: StopSignal | None) -> Recording:
    """Decode, mix down, clean and resample block by block: memory follows the output, not the file, and a
    stop signal (a cancel, a time limit) is seen between blocks, so no file holds its caller for long."""
    with native_output_to_log(), opener(path, max_seconds) as source:
        builder = RecordingBuilder(source.rate, sample_rate)
        for block in source.blocks:
            check_stop(should_stop)
            builder.push(block)
    if builder.samples_in == 0:
        raise AudioError(EMPTY)
    read_seconds = builder.samples_in / source.rate
    if source.format == "MP3" and not source.cut and _not_mostly_mp3(path, read_seconds):
        raise _undecodable(path)
    return builder.finish(max(source.seconds or 0.0, read_seconds) if source.cut else read_seconds)


def _finite(block: np.ndarray) -> tuple[np.ndarray, int]:
    block = np.asarray(block, dtype=np.float32)
    bad = ~np.isfinite(block)
    n_bad = int(bad.sum())
    return (np.where(bad, np.float32(0.0), block) if n_bad else block), n_bad


def decode(path: str | Path, sample_rate: int, max_seconds: float, should_stop: StopSignal | None = None) -> Recording:
    """Mono float32 at `sample_rate` (at most `max_seconds`), NaN/Inf silenced, with the file's full duration.
    Raises `AudioError` for unusable input, `Stopped` once `should_stop` is set."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"File not found: {path.name}")
    if path.stat().st_size == 0:
        raise AudioError("The file is empty (0 bytes).")
    try:
        return _read(_open_soundfile, path, sample_rate, max_seconds, should_stop)
    except (AudioError, Stopped):  # a verdict on the file, or the caller gave up: no second decoder
        raise
    except Exception as sf_exc:  # libsndfile raises several types; all mean "could not read"
        sf_reason = str(sf_exc).strip() or type(sf_exc).__name__
    try:
        return _read(_open_ffmpeg, path, sample_rate, max_seconds, should_stop)
    except (AudioError, Stopped):  # a verdict on the file, or the caller gave up: no second decoder
        raise
    except Exception as ff_exc:
        # the decoders' reasons name the file by its full path: the log shows only its name (no server paths)
        log.info("cannot decode %s: libsndfile: %s; ffmpeg: %s", path.name, sf_reason.replace(str(path), path.name),
                 str(ff_exc).replace(str(path), path.name))
    raise _undecodable(path)


def load_audio(path: str | Path, sample_rate: int, *, max_seconds: float, min_seconds: float,
               should_stop: StopSignal | None = None) -> Recording:
    """Decode, mix to mono, clean and resample a file for analysis (stopping between blocks once told to)."""
    rec = decode(path, sample_rate, max_seconds, should_stop)
    if rec.nonfinite_samples:
        log.warning("%s: %d non-finite samples replaced by silence", Path(path).name, rec.nonfinite_samples)
    return long_enough(rec, min_seconds)


def long_enough(rec: Recording, min_seconds: float) -> Recording:
    """`rec`, or an `AudioError` if it is too short to name an instrument."""
    if rec.duration < min_seconds:
        raise AudioError(f"The recording is too short ({rec.duration:.2f} s): InstruSense needs at least "
                         f"{min_seconds:g} s of audio.")
    return rec
