"""Modelled instruments: a sound source with no samples in it, one more independent lineage per label.

Every SoundFont we may train on shares one idea of an electric bass or a Rhodes (a few sampled notes,
looped). These instruments are computed instead, from the physics of how they sound:

* plucked strings (bass guitar, acoustic guitar): Karplus-Strong digital waveguides (Jaffe & Smith's
  extensions): a one-period excitation shaped by where and how hard the string is plucked, a loop
  filter whose gain sets the decay time and whose low-pass sets how fast the upper partials die, a
  magnetic pickup's comb filter (bass) or a wooden body's resonances (acoustic guitar), then a tone
  control, and the finger damping the string at note-off;
* electric pianos: a struck tine as frequency modulation with a decaying index (the hammer's "bark"
  at high velocity), the tine's short inharmonic ping, a pickup's asymmetric non-linearity (even
  harmonics), sometimes tremolo, and the damper at note-off.

Each note's free parameters (pluck position, decay, brightness, pickup, ...) are drawn from a
generator seeded by the note itself, so a part always renders the same. Pitch bends are not played.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

from finetune.music import Note, Part
from finetune.sources import Program

# (bank, program) -> instrument model; the labels follow gm_programs.csv
MODELS = {(0, 24): "nylon_guitar", (0, 25): "steel_guitar", (0, 33): "finger_bass", (0, 34): "pick_bass",
          (0, 4): "tine_piano", (0, 5): "fm_piano"}


def _midi_hz(pitch: int) -> float:
    return 440.0 * 2 ** ((pitch - 69) / 12)


def _note_rng(program: int, note: Note) -> np.random.Generator:
    return np.random.default_rng([program, note.pitch, note.vel, round(note.start * 1000), round(note.dur * 1000)])


def _release(y: np.ndarray, off: int, seconds: float, sr: int) -> np.ndarray:
    """Damp the note from sample `off` on with an exponential fade (-60 dB after `seconds`)."""
    if off < len(y):
        t = np.arange(len(y) - off) / sr
        y[off:] *= np.exp(-6.9 * t / seconds)
    return y


def plucked_string(f0: float, n: int, off: int, vel: int, sr: int, rng: np.random.Generator, kind: str) -> np.ndarray:
    """One plucked note, `n` samples long, released at sample `off`."""
    period = max(2, int(round(sr / f0)))
    loud = vel / 127
    pos = rng.uniform(0.08, 0.3) if kind.endswith("bass") else rng.uniform(0.1, 0.45)
    x = np.arange(period) / period
    shape = np.where(x < pos, x / pos, (1 - x) / (1 - pos)) - 0.5  # the string's displacement at release
    exc = shape + rng.normal(0, rng.uniform(0.05, 0.4), period)  # finger/pick noise
    hard = kind in ("pick_bass", "steel_guitar")
    pole = rng.uniform(0.1, 0.45) if hard else rng.uniform(0.45, 0.85)  # soft flesh: a darker excitation
    pole *= 1.2 - 0.4 * loud
    exc = lfilter([1 - min(pole, 0.95)], [1, -min(pole, 0.95)], exc)
    t60 = {"finger_bass": (2.5, 7.0), "pick_bass": (2.0, 6.0), "nylon_guitar": (1.5, 4.0),
           "steel_guitar": (2.0, 5.0)}[kind]
    t60 = rng.uniform(*t60) * (f0 / 110) ** -0.3
    g = 10 ** (-3 * period / (t60 * sr))
    s = rng.uniform(0.15, 0.5)  # loop low-pass: how fast the upper partials die
    a = np.zeros(period + 2)
    a[0], a[period], a[period + 1] = 1.0, -g * (1 - s), -g * s
    drive = np.zeros(n)
    drive[:period] = exc
    y = lfilter([1.0], a, drive)
    if kind.endswith("bass"):  # magnetic pickup: sees the string at one point, a comb over the partials
        lag = max(1, int(round(rng.uniform(0.04, 0.25) * period)))
        y[lag:] = y[lag:] - y[:-lag]
        cutoff = rng.uniform(600, 4000)
    else:  # hollow body: a few resonances below 600 Hz
        for _ in range(3):
            fc, q = rng.uniform(90, 600), rng.uniform(2, 8)
            b, a2 = _peak(fc, q, rng.uniform(3, 12), sr)
            y = lfilter(b, a2, y)
        cutoff = rng.uniform(2500, 7000)
    y = sosfilt(butter(2, min(cutoff, sr / 2 - 200), fs=sr, output="sos"), y)
    y = _release(y, off, rng.uniform(0.03, 0.15), sr)
    y = y / (np.abs(y).max() + 1e-9) * loud ** 1.5
    if rng.random() < 0.3:  # an amplifier pushed a little
        k = rng.uniform(1.0, 3.0)
        y = np.tanh(k * y) / np.tanh(k)
    return y


def _peak(fc: float, q: float, gain_db: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ peaking-EQ biquad."""
    amp, w = 10 ** (gain_db / 40), 2 * np.pi * fc / sr
    alpha = np.sin(w) / (2 * q)
    b = np.array([1 + alpha * amp, -2 * np.cos(w), 1 - alpha * amp])
    a = np.array([1 + alpha / amp, -2 * np.cos(w), 1 - alpha / amp])
    return b / a[0], a / a[0]


def electric_piano(f0: float, n: int, off: int, vel: int, sr: int, rng: np.random.Generator, kind: str) -> np.ndarray:
    """One struck-tine (or FM) electric-piano note, `n` samples long, released at sample `off`."""
    t = np.arange(n) / sr
    loud = vel / 127
    decay = rng.uniform(0.8, 3.0) * (f0 / 262) ** -0.6
    env = (1 - np.exp(-t / rng.uniform(0.001, 0.006))) * np.exp(-t / decay)
    bark = (1.8 if kind == "fm_piano" else 1.0) * loud * rng.uniform(0.4, 2.2)
    index = bark * np.exp(-t / rng.uniform(0.05, 0.5)) + rng.uniform(0.0, 0.4)
    y = env * np.sin(2 * np.pi * f0 * t + index * np.sin(2 * np.pi * f0 * t))
    ratio = rng.uniform(6.5, 15.0) if kind == "tine_piano" else rng.choice([14.0, rng.uniform(9.0, 15.0)])
    ping = rng.uniform(0.03, 0.25) * loud * np.exp(-t / rng.uniform(0.008, 0.06))
    y = y + ping * np.sin(2 * np.pi * min(f0 * ratio, sr / 2 - 300) * t)
    even = rng.uniform(0.0, 0.5)  # pickup non-linearity: even harmonics
    y = y + even * (y ** 2 - np.mean(y ** 2))
    if rng.random() < 0.3:  # tremolo, the "vibrato" knob
        y *= 1 + rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * rng.uniform(3.0, 7.0) * t + rng.uniform(0, 6.3))
    y = _release(y, off, rng.uniform(0.05, 0.25), sr)
    return y / (np.abs(y).max() + 1e-9) * loud ** 1.5


class ModelledRenderer:
    """The renderer interface (`has_preset`, `render`) over computed instruments."""

    def __init__(self, source, sample_rate: int = 16000):
        self.source, self.sample_rate = source, sample_rate

    def has_preset(self, prog: Program) -> bool:
        return (prog.bank, prog.program) in MODELS

    def render(self, part: Part, seconds: float) -> np.ndarray:
        kind = MODELS.get((part.program.bank, part.program.program))
        if kind is None:
            raise ValueError(f"{self.source.name} lacks {part.program.gm_name}")
        sr = self.sample_rate
        total = int(round(seconds * sr))
        out = np.zeros(total)
        synth = electric_piano if kind.endswith("piano") else plucked_string
        for note in part.notes:
            a = int(round(note.start * sr))
            if a >= total:
                continue
            rng = _note_rng(part.program.program, note)
            n = total - a
            off = max(1, int(round(note.dur * sr)))
            out[a:] += 0.3 * synth(_midi_hz(note.pitch), n, off, note.vel, sr, rng, kind)
        return out.astype(np.float32)
