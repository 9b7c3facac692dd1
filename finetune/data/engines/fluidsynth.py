"""SoundFonts (sf2/sf3) played in-process by libfluidsynth (``pyfluidsynth``): no process start, no MIDI
files, far faster than real time."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from finetune.data.engines.base import Engine, events
from finetune.data.music import Part
from finetune.data.schema import SAMPLE_RATE
from finetune.data.sources import Program, Source


class FluidRenderer(Engine):
    """A SoundFont played by libfluidsynth: dry (no built-in reverb/chorus), float output."""

    kind = "fluidsynth"

    def __init__(self, source: Source, sample_rate: int = SAMPLE_RATE):
        import fluidsynth  # pyfluidsynth, imported lazily so that the rest works without it

        super().__init__(source, sample_rate)
        self.synth = fluidsynth.Synth(gain=0.5, samplerate=float(sample_rate), **{
            "synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 256,
            "synth.cpu-cores": 1})
        self.sfid = self.synth.sfload(source.path)
        if self.sfid < 0:
            raise RuntimeError(f"fluidsynth could not load {source.path}")
        self._write = fluidsynth._fl.fluid_synth_write_float
        self._write.restype = ctypes.c_int
        self._write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                ctypes.c_void_p, ctypes.c_int, ctypes.c_int]

    @classmethod
    def available(cls, source: Source) -> bool:
        return Path(source.path).is_file()

    def has_preset(self, prog: Program) -> bool:
        preset = self.source.preset(prog)
        return preset is not None and self.synth.sfpreset_name(self.sfid, *preset) is not None

    def _samples(self, out: np.ndarray, start: int, stop: int) -> None:
        n = stop - start
        if n <= 0:
            return
        left = np.zeros(n, np.float32)
        right = np.zeros(n, np.float32)
        self._write(self.synth.synth, n, left.ctypes.data, 0, 1, right.ctypes.data, 0, 1)
        out[start:stop] = 0.5 * (left + right)

    def render(self, part: Part, seconds: float) -> np.ndarray:
        chan = 9 if part.program.is_drums else 0
        s = self.synth
        s.system_reset()
        preset = self.source.preset(part.program)
        if preset is None or s.program_select(chan, self.sfid, *preset) != 0:
            raise ValueError(f"{self.source.name} lacks {part.program.gm_name}")
        total = int(round(seconds * self.sample_rate))
        out = np.zeros(total, np.float32)
        pos = 0
        for t, _order, kind, a, b in events(part):
            at = min(total, int(round(t * self.sample_rate)))
            self._samples(out, pos, at)
            pos = at
            if kind == "on":
                s.noteon(chan, a, b)
            elif kind == "off":
                s.noteoff(chan, a)
            else:
                s.pitch_bend(chan, a)
        self._samples(out, pos, total)
        s.all_sounds_off(chan)
        s.pitch_bend(chan, 0)
        # libfluidsynth renders 64-frame blocks and keeps the unread rest for the next call: drain to a
        # block boundary plus some silence, so that the next clip starts clean (deterministic renders).
        self._samples(np.zeros(64 * 8 + (-total) % 64, np.float32), 0, 64 * 8 + (-total) % 64)
        return out
