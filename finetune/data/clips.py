"""Read dataset splits into memory as plain arrays (training reads each clip many times)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import soundfile as sf

from finetune.data.schema import FPS, SAMPLE_RATE


@dataclass
class Clips:
    waves: list[np.ndarray]
    labels: list[list[str]]
    activity: list[list[list[float]]]
    sources: list[str]
    kinds: list[str]
    origins: list[str] = field(default_factory=list)  # "real" or "rendered", per clip (empty: unknown)

    def __len__(self) -> int:
        return len(self.waves)

    def labels_in(self, i: int, start: int, length: int, min_active_s: float = 0.2) -> list[str]:
        """Labels active for at least `min_active_s` inside samples [start, start+length) of clip i."""
        a, b = start * FPS // SAMPLE_RATE, -(-(start + length) * FPS // SAMPLE_RATE)
        need = max(1, round(min_active_s * FPS))
        return [lab for lab, act in zip(self.labels[i], self.activity[i])
                if not act or sum(act[a:b]) >= min(need, len(act[a:b]) or 1)]


def crop(wave: np.ndarray, length: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A random window of `length` samples (zero-padded at a random offset when the clip is shorter)."""
    if len(wave) >= length:
        start = int(rng.integers(0, len(wave) - length + 1))
        return wave[start:start + length], start
    out = np.zeros(length, np.float32)
    offset = int(rng.integers(0, length - len(wave) + 1))
    out[offset:offset + len(wave)] = wave
    return out, 0


def _decode(audio: dict) -> np.ndarray:
    data = audio.get("bytes")
    x, sr = sf.read(io.BytesIO(data) if data else audio["path"], dtype="float32", always_2d=True)
    if sr != SAMPLE_RATE:
        raise ValueError(f"expected {SAMPLE_RATE} Hz audio, got {sr}")
    return x.mean(axis=1)


def load_clips(path: str | Path, split: str, limit: int | None = None, seed: int = 0) -> Clips:
    """Decode a split (optionally a seeded random subset of `limit` clips)."""
    ds = datasets.load_from_disk(str(path))[split].cast_column("audio", datasets.Audio(decode=False))
    if limit is not None and limit < len(ds):
        ds = ds.shuffle(seed=seed).select(range(limit))
    cols = ds.to_dict()
    # datasets built before the origin column: only the real split held recordings
    origins = cols.get("origin") or ["real" if k == "real" else "rendered" for k in cols["kind"]]
    return Clips(waves=[_decode(a) for a in cols["audio"]], labels=cols["labels"], activity=cols["activity"],
                 sources=cols["source"], kinds=cols["kind"], origins=origins)
