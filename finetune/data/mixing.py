"""Rendered parts to one labelled clip: random levels, activity per label, peak normalisation.

Kept apart from the engines, so that every engine's audio becomes a clip the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from finetune.data.music import Part
from finetune.data.schema import FPS, SAMPLE_RATE

SILENCE_PEAK = 1e-3  # a rendered part quieter than this (float full scale) counts as silent
ACTIVITY_GATE_DB = -45.0  # a note-on frame counts as sounding if its RMS is above peak-frame RMS + this
DRUM_HIT_SECONDS = 0.3


def activity(part: Part, audio: np.ndarray, seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Per-frame (10 fps) 0/1 activity: a note (drum hit: 0.3 s) sounds in the frame and is audible."""
    n_frames = int(round(seconds * FPS))
    on = np.zeros(n_frames, bool)
    for n in part.notes:
        dur = DRUM_HIT_SECONDS if part.program.is_drums else n.dur
        a = int(np.floor(n.start * FPS))
        b = int(np.ceil((n.start + dur) * FPS))
        on[max(0, a):min(n_frames, b)] = True
    hop = sample_rate // FPS
    frames = np.pad(audio, (0, max(0, n_frames * hop - len(audio))))[: n_frames * hop].reshape(n_frames, hop)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    gate = rms > rms.max() * 10 ** (ACTIVITY_GATE_DB / 20) if rms.max() > 0 else np.zeros(n_frames, bool)
    return (on & gate).astype(np.float32)


@dataclass
class Clip:
    audio: np.ndarray  # float32 mono, peak-normalised below 0 dBFS
    labels: list[str]
    activity: list[list[float]]  # parallel to labels
    kind: str
    source: str
    programs: list[str]


def assemble(rng: np.random.Generator, parts: list[Part], audios: list[np.ndarray], kind: str, source: str,
             seconds: float) -> Clip | None:
    """Mix parts (random levels), merge activity per label, peak-normalise; None if the clip is unusable."""
    if any(np.abs(a).max() < SILENCE_PEAK for a in audios):
        return None
    acts: dict[str, np.ndarray] = {}
    mix = np.zeros_like(audios[0], dtype=np.float64)
    for p, a in zip(parts, audios):
        act = activity(p, a, seconds)
        if act.sum() == 0:
            return None
        rms = np.sqrt(np.mean(a.astype(np.float64) ** 2)) + 1e-9
        level = 10 ** (rng.uniform(-10, 0) / 20) if len(parts) > 1 else 1.0
        mix += a / rms * level
        acts[p.label] = np.maximum(acts.get(p.label, 0), act)
    peak = np.abs(mix).max()
    if not np.isfinite(peak) or peak <= 0:
        return None
    target = 10 ** (rng.uniform(-20, -1) / 20)  # random gain, always below 0 dBFS
    out = (mix / peak * target).astype(np.float32)
    labels = sorted(acts)
    return Clip(out, labels, [acts[l].tolist() for l in labels], kind, source,
                [p.program.gm_name for p in parts])


def active_mask(wave: np.ndarray, activity: Sequence[float] | None = None) -> np.ndarray:
    """Per sample, whether the part sounds there: its activity frames (FPS per second) when given and any is
    set, else the frames whose RMS is within ``ACTIVITY_GATE_DB`` of the loudest frame (as rendered parts are
    gated in :func:`activity`)."""
    hop = SAMPLE_RATE // FPS
    n_frames = -(-len(wave) // hop)
    act = np.asarray(activity if activity is not None else [], np.float32)[:n_frames] > 0
    if not act.any():
        frames = np.pad(wave.astype(np.float64), (0, n_frames * hop - len(wave))).reshape(n_frames, hop)
        rms = np.sqrt((frames ** 2).mean(axis=1))
        act = rms > rms.max() * 10 ** (ACTIVITY_GATE_DB / 20) if rms.max() > 0 else np.ones(n_frames, bool)
    act = np.pad(act, (0, n_frames - len(act)))
    return np.repeat(act, hop)[:len(wave)]


def active_rms(wave: np.ndarray, activity: Sequence[float] | None = None) -> float:
    """The RMS of ``wave`` over the samples where it sounds (:func:`active_mask`): a part's level that a
    decaying note's silent tail does not lower."""
    mask = active_mask(wave, activity)
    return float(np.sqrt(np.mean(wave[mask].astype(np.float64) ** 2))) if mask.any() else 0.0
