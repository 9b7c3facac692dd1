"""Decoding and cleaning recordings into the mono float signal the model needs.

Every way a file can be unusable ends in an `AudioError` whose message is fit to show a user;
nothing else escapes `load_audio`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

log = logging.getLogger(__name__)

MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 384_000
_MAX_FILTER_TAPS = 1 << 21  # bounds torchaudio's resampling filter bank (~8 MB of float32)
_BLOCK_SAMPLES = 1 << 22  # decode in blocks of ~16 MB so that many-channel files never sit in memory whole


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


def clean(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace NaN/Inf by silence and bring over-range float audio back into [-1, 1].

    Returns the cleaned copy and how many samples were not finite.
    """
    samples = np.asarray(samples, dtype=np.float32)
    bad = ~np.isfinite(samples)
    n_bad = int(bad.sum())
    if n_bad:
        samples = np.where(bad, np.float32(0.0), samples)
    peak = max(float(samples.max()), -float(samples.min())) if samples.size else 0.0  # no |x| copy
    if peak > 1.0:
        samples = samples / np.float32(peak)
    return samples, n_bad


def resample(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's windowed sinc) to ``round(len * new / orig)`` samples.

    torchaudio's filter bank holds (orig/g)·(new/g) taps, g = gcd(orig, new): a few thousand for the usual
    rates, but tens of GB for an odd one such as 383 999 Hz. Such a rate is first rounded to the nearest
    rate with a small filter bank (a change of at most 0.1 %, which the tagger does not hear), so memory
    stays bounded whatever a file's header claims.
    """
    if orig_rate == new_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    target = round(len(samples) * new_rate / orig_rate)
    rate = _tractable_rate(orig_rate, new_rate)
    if rate == new_rate:
        out = np.asarray(samples, dtype=np.float32)
    else:
        out = AF.resample(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)), rate, new_rate).numpy()
    return out[:target] if len(out) >= target else np.pad(out, (0, target - len(out)))


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


def _decode_soundfile(path: Path, max_seconds: float) -> tuple[np.ndarray, int, float]:
    with sf.SoundFile(str(path)) as f:
        rate, total, channels = int(f.samplerate), int(f.frames), max(int(f.channels), 1)
        _check_rate(rate)
        if total <= 0:
            raise AudioError("The recording is empty (it holds no audio samples).")
        limit = min(total, int(math.ceil(max_seconds * rate)))
        samples = np.empty(limit, np.float32)  # filled block by block: no list of parts to concatenate
        block = np.empty((min(max(_BLOCK_SAMPLES // channels, 1), limit), channels), np.float32)
        filled = 0
        while filled < limit:
            got = f.read(out=block[:limit - filled])  # only the frames really read (never stale buffer)
            if len(got) == 0:
                break
            samples[filled:filled + len(got)] = to_mono(got)
            filled += len(got)
    # A header may claim more frames than the file holds: trust what was actually read.
    return samples[:filled], rate, (total if filled == limit else filled) / rate


def _decode_ffmpeg(path: Path, max_seconds: float) -> tuple[np.ndarray, int, float]:
    """Formats libsndfile lacks (m4a/aac, webm/opus from browsers) through FFmpeg via torchcodec."""
    from torchcodec.decoders import AudioDecoder  # imported lazily: needs FFmpeg's libraries

    decoder = AudioDecoder(str(path))
    meta = decoder.metadata
    rate = int(meta.sample_rate or 0)
    _check_rate(rate)
    total = float(meta.duration_seconds or 0.0)
    clip = decoder.get_samples_played_in_range(0.0, max_seconds if total > max_seconds else None)
    samples = clip.data.mean(dim=0).numpy().astype(np.float32)
    return samples, rate, max(total, len(samples) / rate)


def _check_rate(rate: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"Unsupported sample rate {rate} Hz: InstruSense reads {MIN_SAMPLE_RATE // 1000}"
                         f"–{MAX_SAMPLE_RATE // 1000} kHz audio.")


def decode(path: str | Path, max_seconds: float) -> tuple[np.ndarray, int, float]:
    """Mono float32 samples (at most `max_seconds`), their sample rate and the file's full duration."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"File not found: {path.name}")
    if path.stat().st_size == 0:
        raise AudioError("The file is empty (0 bytes).")
    try:
        return _decode_soundfile(path, max_seconds)
    except AudioError:
        raise
    except Exception as sf_exc:  # libsndfile raises several types; all mean "could not read"
        sf_reason = str(sf_exc).strip() or type(sf_exc).__name__
    try:
        return _decode_ffmpeg(path, max_seconds)
    except AudioError:
        raise
    except Exception as ff_exc:
        log.info("cannot decode %s: libsndfile: %s; ffmpeg: %s", path.name, sf_reason, ff_exc)
    raise AudioError(f"Could not decode {path.name} as audio: the file is not a recording in a readable "
                     "format, or it is corrupt. Readable formats: WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF, "
                     "and M4A/AAC/WebM where FFmpeg is installed.")


def load_audio(path: str | Path, sample_rate: int, *, max_seconds: float, min_seconds: float) -> Recording:
    """Decode, mix to mono, clean and resample a file for analysis."""
    samples, rate, full_duration = decode(path, max_seconds)
    rec = prepare(samples, rate, sample_rate, full_duration=full_duration, min_seconds=min_seconds)
    if rec.nonfinite_samples:
        log.warning("%s: %d non-finite samples replaced by silence", Path(path).name, rec.nonfinite_samples)
    return rec


def prepare(samples: np.ndarray, rate: int, sample_rate: int, *, full_duration: float,
            min_seconds: float) -> Recording:
    """Clean, check and resample decoded mono samples: the one way a file or a finished stream becomes
    a `Recording`, so that both are analysed alike."""
    if samples.size == 0:
        raise AudioError("The recording is empty (it holds no audio samples).")
    samples, n_bad = clean(samples)
    duration = len(samples) / rate
    if duration < min_seconds:
        raise AudioError(f"The recording is too short ({duration:.2f} s): InstruSense needs at least "
                         f"{min_seconds:g} s of audio.")
    samples = resample(samples, rate, sample_rate)
    return Recording(samples=samples, sample_rate=sample_rate, source_duration=full_duration,
                     nonfinite_samples=n_bad)
