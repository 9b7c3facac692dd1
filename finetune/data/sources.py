"""Sound sources the renderer can draw on, and which taxonomy labels each one actually has.

A *source* is one sample library: a SoundFont played through FluidSynth, the GUS patches of
``freepats`` played through TiMidity, or a bank of webaudiofont wavetables extracted to a folder. ``gm_programs.csv`` maps General MIDI programs and drum kits to
taxonomy labels; a source offers a program only if the library has it *and* it sounds (not silent,
not a fall-back to the piano), which :func:`probe_programs` checks by rendering one test note.
"""

from __future__ import annotations

import csv
import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from instrusense.taxonomy import LABEL_INDEX

if TYPE_CHECKING:
    from finetune.data.libraries import LibrarySpec

PROGRAMS_CSV = Path(__file__).with_name("gm_programs.csv")
DRUM_BANK = 128
GENERALUSER_GS_DIR = Path(__file__).resolve().parents[2] / "cache" / "generaluser-gs"


@dataclass(frozen=True)
class Program:
    """One General MIDI program (or drum kit, ``bank == 128``) and the taxonomy label it plays."""

    bank: int
    program: int
    gm_name: str
    label: str
    low: int
    high: int
    poly: bool
    sustain: bool

    @property
    def is_drums(self) -> bool:
        return self.bank == DRUM_BANK


@dataclass(frozen=True)
class Source:
    """A sample library. ``lineage`` groups libraries that share recordings (not independent)."""

    name: str
    path: str
    # "fluidsynth" (SoundFont), "timidity" (GUS patch config), "sfz" (a real library) or "webaudiofont" (extracted)
    engine: str
    lineage: str
    description: str
    # A drum-kit-only library: its one preset (bank, program), played as GM Standard Kit (bank 128, 0).
    drum_kit: tuple[int, int] | None = None
    origin: str = "rendered"  # "real": recorded notes of one instrument (a real sample library)
    library: LibrarySpec | None = None  # the manifest entry of a real library (engine "sfz"): its role, label

    def preset(self, prog: Program) -> tuple[int, int] | None:
        """The (bank, program) of this library that plays ``prog``; None if the library cannot."""
        if self.drum_kit is None:
            return prog.bank, prog.program
        return self.drum_kit if (prog.bank, prog.program) == (DRUM_BANK, 0) else None

    def available(self) -> bool:
        if self.engine == "sfz":
            return Path(self.path).is_dir()
        if self.engine == "webaudiofont":
            from finetune.data.webaudiofont import BANK_INDEX

            return (Path(self.path) / BANK_INDEX).is_file()
        if not Path(self.path).is_file():
            return False
        return self.engine != "timidity" or shutil.which("timidity") is not None


# MuseScore General was built from FluidR3Mono (S. Christian Collins), so the two share many samples:
# they count as one lineage when we ask whether a label has two *independent* training sources.
SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("fluidr3", "/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluidsynth", "fluidr3",
               "FluidR3 GM (Frank Wen), Debian fluid-soundfont-gm"),
        Source("musescore", "/usr/share/sounds/sf3/MuseScore_General_Full.sf3", "fluidsynth", "fluidr3",
               "MuseScore General (S. Christian Collins, derived from FluidR3Mono), "
               "Debian musescore-general-soundfont"),
        Source("timgm6mb", "/usr/share/sounds/sf2/TimGM6mb.sf2", "fluidsynth", "timgm6mb",
               "TimGM6mb (Tim Brechbill), Debian timgm6mb-soundfont"),
        Source("sf_gmbank", "/usr/share/sounds/sf2/sf_GMbank.sf2", "fluidsynth", "sf_gmbank",
               "csound GM bank, Debian csound-soundfont"),
        Source("freepats", "/etc/timidity/freepats.cfg", "timidity", "freepats",
               "freepats GUS patches through TiMidity++, Debian freepats + timidity"),
        # Extracted from webaudiofont wavetables (python -m finetune.data.webaudiofont extract). Own lineage:
        # of its ~770 samples only the cello, celesta and a few synth/sine ones are MuseScore General's
        # (same names and loop lengths); flute, clarinet, guitars, brass differ. No drums in that bank.
        Source("generaluser_gs", str(GENERALUSER_GS_DIR), "webaudiofont", "generaluser_gs",
               "GeneralUser GS v1.471 (S. Christian Collins), webaudiofont wavetables of surikov/webaudiofontdata"),
        # Multi-sampled acoustic kits (real recordings, GM key map): the only real drums we may train on.
        Source("avl_black_pearl", "/usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2", "fluidsynth", "avl",
               "AVL Drumkits Black Pearl 4-piece (Glen MacArthur), Debian avldrums.lv2-soundfont", (0, 0)),
        Source("avl_red_zeppelin", "/usr/share/sounds/sf2/Red_Zeppelin_4_LV2.sf2", "fluidsynth", "avl",
               "AVL Drumkits Red Zeppelin 4-piece (Glen MacArthur), Debian avldrums.lv2-soundfont", (0, 0)),
    )
}


@lru_cache(maxsize=None)
def load_programs(path: str | Path = PROGRAMS_CSV) -> tuple[Program, ...]:
    """The rows of ``gm_programs.csv``; every label must be a taxonomy key."""
    rows = []
    with open(path, newline="") as f:
        lines = [line for line in f if not line.startswith("#")]
    for r in csv.DictReader(lines):
        if r["label"] not in LABEL_INDEX:
            raise ValueError(f"{path}: {r['label']!r} is not a taxonomy label; valid: {sorted(LABEL_INDEX)}")
        rows.append(Program(int(r["bank"]), int(r["program"]), r["gm_name"], r["label"], int(r["low"]),
                            int(r["high"]), r["poly"] == "1", r["sustain"] == "1"))
    return tuple(rows)


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
