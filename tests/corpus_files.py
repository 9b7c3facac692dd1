"""A mixed archive for the corpus tests, generated on the spot: cuts of the shipped examples, generated
sounds at odd rates and channel counts, silence, and broken files, in nested folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FORMATS = [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS")]
BROKEN_KINDS = ("empty", "garbage", "truncated", "too_short", "nan")


def _broken(path: Path, kind: str, rng: np.random.Generator) -> Path:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(rng.bytes(2000))
    elif kind == "truncated":  # a WAV header and nothing it promises
        sf.write(str(path), np.zeros(16000, np.float32), 16000)
        path.write_bytes(path.read_bytes()[:60])
    elif kind == "too_short":
        sf.write(str(path), 0.3 * rng.standard_normal(3000).astype(np.float32), 16000)
    else:  # every sample NaN: decoded as silence, with a notice (not an error)
        sf.write(str(path), np.full(24000, np.nan, np.float32), 16000, subtype="FLOAT")
    return path


def _generated(rng: np.random.Generator, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    kind = rng.integers(3)
    if kind == 0:  # a harmonic tone
        f0 = rng.uniform(80, 1000)
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3, 4))
    elif kind == 1:  # a chirp
        x = np.sin(2 * np.pi * (100 + rng.uniform(200, 2000) * t / seconds) * t)
    else:  # noise bursts
        x = rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0)
    return (0.5 * x / max(np.abs(x).max(), 1e-6)).astype(np.float32)


def make_corpus(root: Path, n_files: int, seed: int = 0) -> list[str]:
    """Write `n_files` files under `root` (a tenth broken, one in ten silent) and return their paths, sorted."""
    rng = np.random.default_rng(seed)
    examples = [sf.read(str(p), dtype="float32", always_2d=True) for p in sorted(EXAMPLES.glob("*.flac"))]
    paths = []
    for i in range(n_files):
        folder = root / f"box{i % 5}" / (f"shelf{i % 3}" if i % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        ext, fmt, subtype = FORMATS[i % len(FORMATS)]
        path = folder / f"item{i:04d}.{ext}"
        kind = i % 10
        if kind == 9:
            broken = BROKEN_KINDS[(i // 10) % len(BROKEN_KINDS)]
            path = _broken(path.with_suffix(".flac" if broken == "garbage" else ".wav"), broken, rng)
        elif kind == 8:
            sf.write(str(path), np.zeros((16000, 2), np.float32), 16000, format=fmt, subtype=subtype)
        elif kind >= 5:
            rate = int(rng.choice([8000, 16000, 22050, 44100]))
            sf.write(str(path), _generated(rng, rng.uniform(0.6, 3.0), rate), rate, format=fmt, subtype=subtype)
        else:
            data, rate = examples[i % len(examples)]
            length = min(len(data), int(rng.uniform(0.6, 3.0) * rate))
            start = int(rng.integers(0, len(data) - length + 1))
            channels = data[start:start + length]
            sf.write(str(path), np.repeat(channels, 1 + i % 2, axis=1), rate, format=fmt, subtype=subtype)
        paths.append(str(path))
    return sorted(paths)


def crash_on_crash_wav(items: list) -> list[dict]:
    """A pool task that ends its worker at once on a file named crash.wav, as a decoder crash would."""
    import os

    from instrusense.corpus.pool import analyse_chunk

    if any(Path(item.path).name == "crash.wav" for item in items):
        os._exit(3)
    return analyse_chunk(items)
