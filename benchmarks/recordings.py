"""Music-like test recordings, generated on the spot (no files ship with the benchmark).

Two voices of harmonic notes (a bass line and a melody, each note with its own partials and decay)
over drum-like noise bursts on the beat, 44.1 kHz stereo. Never silent, so every window reaches the
model: the benchmark times the worst case, not a recording whose quiet windows are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 44_100
CHANNELS = 2
FORMATS = {"wav": ("WAV", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III")}
_BLOCK_SECONDS = 10  # written block by block: a 10-minute file never sits in memory whole
_SCALE = 2.0 ** (np.array([0, 2, 4, 5, 7, 9, 11]) / 12)  # major scale, as frequency ratios


def _voice(n: int, rate: int, rng: np.random.Generator, base_hz: float, note_s: tuple[float, float],
           partials: int, decay_s: float) -> np.ndarray:
    """Consecutive notes of one instrument-like voice: harmonic partials under an attack-decay envelope."""
    out = np.zeros(n, np.float32)
    pos = 0
    while pos < n:
        length = min(int(rng.uniform(*note_s) * rate), n - pos)
        f0 = base_hz * rng.choice(_SCALE) * rng.choice([1.0, 2.0])
        t = np.arange(length, dtype=np.float32) / rate
        tone = np.zeros(length, np.float32)
        for k in range(1, partials + 1):
            if f0 * k < rate / 2:
                tone += np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)).astype(np.float32) / k
        envelope = np.minimum(t / 0.01, 1.0) * np.exp(-t / decay_s)
        out[pos:pos + length] = tone * envelope
        pos += length
    return out


def _drums(n: int, rate: int, rng: np.random.Generator, beat_s: float = 0.5) -> np.ndarray:
    """Noise bursts on the beat (kick-like low thump plus hat-like high noise)."""
    out = np.zeros(n, np.float32)
    hit = int(0.15 * rate)
    t = np.arange(hit, dtype=np.float32) / rate
    for start in range(0, n, int(beat_s * rate)):
        noise = rng.standard_normal(hit).astype(np.float32)
        hat = np.diff(noise, prepend=0.0) * np.exp(-t / 0.02) * 0.3
        kick = np.sin(2 * np.pi * 60 * t) * np.exp(-t / 0.08)
        burst = (hat + kick).astype(np.float32)
        m = min(hit, n - start)
        out[start:start + m] += burst[:m]
    return out


def synth_music(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """(frames, 2) float32 stereo in [-1, 1]: bass, melody and drums, panned apart."""
    n = int(round(seconds * rate))
    rng = np.random.default_rng(seed)
    bass = _voice(n, rate, rng, 55.0, (0.4, 1.0), partials=8, decay_s=0.6)
    melody = _voice(n, rate, rng, 220.0, (0.15, 0.6), partials=6, decay_s=0.3)
    drums = _drums(n, rate, rng)
    left = 0.5 * bass + 0.3 * melody + 0.4 * drums
    right = 0.5 * bass + 0.45 * melody + 0.3 * drums
    stereo = np.stack([left, right], axis=1)
    stereo += 0.003 * rng.standard_normal(stereo.shape).astype(np.float32)  # room noise: never digital silence
    return (0.8 * stereo / max(float(np.abs(stereo).max()), 1e-6)).astype(np.float32)


def write_recording(path: Path, seconds: float, fmt: str, seed: int = 0, rate: int = RATE) -> Path:
    """Write a music-like `seconds`-long stereo recording as `fmt` ("wav" or "mp3")."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {sorted(FORMATS)}")
    major, subtype = FORMATS[fmt]
    total = int(round(seconds * rate))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=CHANNELS, format=major, subtype=subtype) as f:
        written, block = 0, 0
        while written < total:
            n = min(_BLOCK_SECONDS * rate, total - written)
            f.write(synth_music(n / rate, rate, seed=seed * 100_003 + block))
            written += n
            block += 1
    return path


def recording_set(folder: Path, lengths: list[float], formats: list[str]) -> dict[tuple[float, str], Path]:
    """One recording per (length, format), named like ``180s.mp3``."""
    return {(s, fmt): write_recording(Path(folder) / f"{s:g}s.{fmt}", s, fmt, seed=int(s))
            for s in lengths for fmt in formats}


def batch_set(folder: Path, count: int, seconds: float) -> list[Path]:
    """`count` short files for the CLI batch, alternating wav and mp3, each with different music."""
    fmts = sorted(FORMATS)
    return [write_recording(Path(folder) / f"clip{i:03d}.{fmts[i % 2]}", seconds, fmts[i % 2], seed=1000 + i)
            for i in range(count)]
