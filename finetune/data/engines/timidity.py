"""GUS patches (freepats, or any TiMidity config) through the ``timidity`` command: it gets one MIDI file
holding a batch of parts back to back, since a process start costs more than the rendering."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from finetune.data.engines.base import Engine
from finetune.data.midi import write_midi
from finetune.data.music import Part
from finetune.data.schema import SAMPLE_RATE
from finetune.data.sources import DRUM_BANK, Program, Source


class TimidityRenderer(Engine):
    """A TiMidity config through the ``timidity`` CLI, many parts per process start."""

    kind = "timidity"
    GAP = 2.0  # seconds of silence between batched parts, so that release tails do not bleed over

    def __init__(self, source: Source, sample_rate: int = SAMPLE_RATE):
        super().__init__(source, sample_rate)
        self.defined = timidity_programs(source.path)
        self.drum_keys = timidity_drum_keys(source.path)

    @classmethod
    def available(cls, source: Source) -> bool:
        return Path(source.path).is_file() and shutil.which("timidity") is not None

    def has_preset(self, prog: Program) -> bool:
        return (prog.bank, prog.program) in self.defined

    def render_many(self, parts: list[Part], seconds: float) -> list[np.ndarray]:
        if not parts:
            return []
        import soundfile as sf

        # TiMidity always reads its system config first (Debian's maps every GM slot to FluidR3), so a
        # program or drum key this config lacks would sound from FluidR3: play only what it defines.
        parts = [Part(p.program, [n for n in p.notes if n.pitch in self.drum_keys.get(p.program.program, ())], p.bends)
                 if p.program.is_drums else p for p in parts]
        bad = [p.program.gm_name for p in parts if not self.has_preset(p.program)]
        if bad:
            raise ValueError(f"{self.source.name} lacks {bad}")
        slot = seconds + self.GAP
        with tempfile.TemporaryDirectory() as tmp:
            mid, wav = Path(tmp) / "batch.mid", Path(tmp) / "batch.wav"
            write_midi(mid, [(i * slot, p) for i, p in enumerate(parts)], slot)
            cmd = ["timidity", "-c", self.source.path, "-Ow1M", "-s", str(self.sample_rate),
                   "--reverb=d", "--chorus=d", "-EFresamp=1", "--preserve-silence", "-o", str(wav), str(mid)]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            audio, sr = sf.read(wav, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        n = int(round(seconds * self.sample_rate))
        outs = []
        for i in range(len(parts)):
            a = int(round(i * slot * self.sample_rate))
            seg = audio[a:a + n]
            outs.append(np.pad(seg, (0, n - len(seg))).astype(np.float32))
        return outs

    def render(self, part: Part, seconds: float) -> np.ndarray:
        return self.render_many([part], seconds)[0]


def timidity_programs(cfg_path: str | Path) -> set[tuple[int, int]]:
    """(bank, program) pairs a TiMidity config defines: ``bank N`` / ``drumset N`` sections of patch lines."""
    found: set[tuple[int, int]] = set()
    bank = None
    for line in Path(cfg_path).read_text(errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if m := re.match(r"^bank\s+(\d+)", line):
            bank = ("bank", int(m.group(1)))
        elif m := re.match(r"^drumset\s+(\d+)", line):
            bank = ("drumset", int(m.group(1)))
        elif bank and (m := re.match(r"^(\d+)\s+\S+", line)):
            kind, num = bank
            if kind == "bank" and num == 0:
                found.add((0, int(m.group(1))))
            elif kind == "drumset":
                found.add((DRUM_BANK, num))
    return found


def timidity_drum_keys(cfg_path: str | Path) -> dict[int, set[int]]:
    """drumset number -> the MIDI keys a TiMidity config defines in it."""
    keys: dict[int, set[int]] = {}
    current = None
    for line in Path(cfg_path).read_text(errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if m := re.match(r"^drumset\s+(\d+)", line):
            current = int(m.group(1))
        elif re.match(r"^bank\s+", line):
            current = None
        elif current is not None and (m := re.match(r"^(\d+)\s+\S+", line)):
            keys.setdefault(current, set()).add(int(m.group(1)))
    return keys
