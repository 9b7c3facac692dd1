"""What a clip is rendered from: General MIDI programs mapped to labels, and the sample libraries.

Plain data read by every other module of the build, so it imports none of them. A source names the kind
of engine that plays it (``engines/``); ``gm_programs.csv`` maps General MIDI programs and drum kits to
taxonomy labels.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from instrusense.taxonomy import LABEL_INDEX

PROGRAMS_CSV = Path(__file__).with_name("gm_programs.csv")
DRUM_BANK = 128
GENERALUSER_GS_DIR = Path(__file__).resolve().parents[2] / "cache" / "generaluser-gs"
DEBIAN = "debian:"  # a manifest repo "debian:PACKAGE" is a Debian package; its commit is the package version


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
class LibrarySpec:
    """One (library, label) entry of the real-library manifest (``libraries.json``)."""

    name: str
    repo: str
    commit: str
    licence: str
    label: str
    role: str
    lineage: str
    description: str = ""
    sfz: tuple[str, ...] = ()
    folder: dict | None = None  # plain folder: {"path", "glob", and "note_regex" or "chord_regex"}
    include: tuple[str, ...] = ()  # the only paths extracted; empty: the whole repository
    header: str = ""  # SFZ text put before a .sfz file (e.g. a #define the library leaves undefined)
    replace: dict[str, str] = field(default_factory=dict)  # text replaced in a .sfz file (e.g. .wav -> .ogg)
    aliases: dict[str, str] = field(default_factory=dict)  # link -> target inside the checkout (Samples -> samples)
    transcode: str = ""  # samples with this suffix (".ogg": Opus, which sfizz cannot read) get a FLAC copy
    drum_map: dict[int, int] = field(default_factory=dict)  # GM key -> kit key
    unpack: str = ""  # samples packed in source code (``mda_epiano``), unpacked to WAV and an SFZ at first use
    restriction: str = ""

    @property
    def checkout(self) -> str:
        """Folder name of the repository at its commit (entries of one repository share it)."""
        return self.repo.replace("/", "+").replace(":", "+")

    @property
    def debian_package(self) -> str:
        """The Debian package the library comes from ("" for a GitHub repository)."""
        return self.repo.removeprefix(DEBIAN) if self.repo.startswith(DEBIAN) else ""


@dataclass(frozen=True)
class Source:
    """A sample library. ``lineage`` groups libraries that share recordings (not independent)."""

    name: str
    path: str
    engine: str  # the kind of engine that plays it (a module of ``engines/``): fluidsynth, timidity, sfz, webaudiofont
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
