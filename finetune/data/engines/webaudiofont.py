"""Extracted webaudiofont banks (``python -m finetune.data.webaudiofont extract``) played like a SoundFont, in
NumPy: the zone by key, pitch by resampling, the loop while the note is held, the envelope, a release on
note-off. Pitch bends are ignored."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from finetune.data.engines.base import Engine
from finetune.data.music import Part
from finetune.data.schema import SAMPLE_RATE
from finetune.data.sources import Program, Source
from finetune.data.webaudiofont import BANK_INDEX

RELEASE_SECONDS = 0.1  # linear fade after note-off (webaudiofont's player uses 0.05 s)
ATTACK_SECONDS = 0.002  # against a click at the onset
# webaudiofont's envelope for ``ahdsr: true``: (seconds since note-on, gain) points, linear between.
DEFAULT_AHDSR = ((0.0, 1.0), (0.5, 1.0), (2.0, 0.5), (5.0, 0.0))


@dataclass(frozen=True)
class Zone:
    """One zone, its audio resampled to the output rate; loop points in output-rate samples."""

    key_low: int
    key_high: int
    base_cents: float  # the pitch (cents) at which the sample plays at its own speed
    audio: np.ndarray
    loop_start: float
    loop_end: float
    envelope: tuple[tuple[float, float], ...] | None

    @property
    def looped(self) -> bool:
        return 0 < self.loop_start < self.loop_end <= len(self.audio)


def _envelope(ahdsr) -> tuple[tuple[float, float], ...] | None:
    """(time, gain) points from ``ahdsr``: true = webaudiofont's default, a list = its {duration, volume} steps."""
    if ahdsr is True:
        return DEFAULT_AHDSR
    if isinstance(ahdsr, list) and ahdsr:
        t, points = 0.0, []
        for step in ahdsr:
            t += float(step.get("duration", 0))
            points.append((t, float(step.get("volume", 1))))
        return tuple(points)
    return None


@lru_cache(maxsize=None)
def _resampler(orig: int, new: int):
    """One resampler per rate pair: building its sinc kernel costs more than applying it to a sample."""
    import torchaudio

    return torchaudio.transforms.Resample(orig, new)


def load_zones(folder: Path, entry: dict, sample_rate: int) -> list[Zone]:
    import soundfile as sf
    import torch

    zones = []
    preset = json.loads((folder / entry["file"]).read_text())
    for z in preset["zones"]:
        audio, rate = sf.read(folder / z["audio"], dtype="float32")
        if rate != sample_rate:
            with torch.no_grad():
                audio = _resampler(rate, sample_rate)(torch.from_numpy(audio)).numpy()
        # webaudiofont's convention: playback rate = 2^((100*key - base)/1200), base = pitch - 100*coarse - fine.
        base = z["original_pitch"] - 100 * z["coarse_tune"] - z["fine_tune"] + preset.get("octave_fix", 0)
        zones.append(Zone(z["key_low"], z["key_high"], base, np.append(audio, 0).astype(np.float32),
                          z["loop_start"] * sample_rate, z["loop_end"] * sample_rate, _envelope(z["ahdsr"])))
    return zones


def find_zone(zones: list[Zone], key: int) -> Zone:
    """The last zone whose key range holds ``key`` (as webaudiofont's player), else the nearest one."""
    for z in reversed(zones):
        if z.key_low <= key <= z.key_high:
            return z
    return min(zones, key=lambda z: min(abs(key - z.key_low), abs(key - z.key_high)))


def play_note(zone: Zone, key: int, hold: float, max_seconds: float, sample_rate: int = SAMPLE_RATE,
              release: float = RELEASE_SECONDS) -> np.ndarray:
    """One note at unit velocity: held ``hold`` s (looping if the zone loops), then released; at most ``max_seconds``."""
    step = 2.0 ** ((100.0 * key - zone.base_cents) / 1200.0)
    n = int(min(hold + release, max_seconds) * sample_rate)
    pos = step * np.arange(n)
    if zone.looped:
        span = zone.loop_end - zone.loop_start
        past = pos >= zone.loop_end
        pos[past] = zone.loop_start + np.mod(pos[past] - zone.loop_start, span)
    else:
        pos = pos[pos < len(zone.audio) - 1]
    i = pos.astype(np.int64)
    frac = (pos - i).astype(np.float32)
    out = zone.audio[i] * (1 - frac) + zone.audio[i + 1] * frac
    t = np.arange(len(out)) / sample_rate
    gain = np.minimum(1.0, t / ATTACK_SECONDS)
    if zone.envelope is not None:
        times, values = zip(*zone.envelope)
        gain = gain * np.interp(t, times, values)
    gain = gain * np.clip(1.0 - (t - hold) / release, 0.0, 1.0)
    return (out * gain).astype(np.float32)


class WebAudioFontRenderer(Engine):
    """An extracted webaudiofont bank.

    A GM program plays the preset of variant 0 (the bank's main preset on that program); drum kit
    0 (Standard) plays the drum presets of kit variant 0, one per key. Drum notes ring to the end of
    their sample (no note-off), as on a GM drum channel.
    """

    kind = "webaudiofont"

    def __init__(self, source: Source, sample_rate: int = SAMPLE_RATE, variant: int = 0):
        super().__init__(source, sample_rate)
        self.folder = Path(source.path)
        index_path = self.folder / BANK_INDEX
        if not index_path.is_file():
            raise FileNotFoundError(f"{self.folder} is not an extracted webaudiofont bank (no {BANK_INDEX}); "
                                    "run python -m finetune.data.webaudiofont extract")
        entries = json.loads(index_path.read_text())["presets"].values()
        self.presets = {e["number"]: e for e in entries if e["kind"] == "program" and e["variant"] == variant}
        self.drums = {e["number"]: e for e in entries if e["kind"] == "drum" and e["variant"] == variant}
        self._zones: dict[tuple[str, int], list[Zone]] = {}

    @classmethod
    def available(cls, source: Source) -> bool:
        return (Path(source.path) / BANK_INDEX).is_file()

    def has_preset(self, prog: Program) -> bool:
        if prog.is_drums:
            return prog.program == 0 and bool(self.drums)
        return prog.bank == 0 and prog.program in self.presets

    def _preset(self, kind: str, number: int) -> list[Zone]:
        if (kind, number) not in self._zones:
            entry = (self.drums if kind == "drum" else self.presets)[number]
            self._zones[kind, number] = load_zones(self.folder, entry, self.sample_rate)
        return self._zones[kind, number]

    def render(self, part: Part, seconds: float) -> np.ndarray:
        if not self.has_preset(part.program):
            raise ValueError(f"{self.source.name} lacks {part.program.gm_name}")
        drums = part.program.is_drums
        total = int(round(seconds * self.sample_rate))
        out = np.zeros(total, np.float32)
        for note in part.notes:
            at = int(round(note.start * self.sample_rate))
            if at >= total:
                continue
            left = (total - at) / self.sample_rate
            if drums and note.pitch not in self.drums:
                continue
            zones = self._preset("drum", note.pitch) if drums else self._preset("program", part.program.program)
            audio = play_note(find_zone(zones, note.pitch), note.pitch, left if drums else note.dur, left,
                              self.sample_rate)[: total - at]
            out[at:at + len(audio)] += audio * (note.vel / 127.0) ** 2
        return out
