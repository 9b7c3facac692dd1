"""Clips rendered from sample libraries (SoundFonts, freepats, extracted banks, the real multi-sampled
libraries): which library plays what, the seeded plan of every clip, and the rows of the train,
one-shot, validation and real_heldout splits.

A library is opened once and probed: a program counts only if it really sounds in it. Clip ``i`` of a
split depends only on (seed, split code, i, attempt), so adding clips or splits leaves the others as they
were.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from finetune.data.config import BuildConfig
from finetune.data.engines import available, make_renderer
from finetune.data.engines.base import Engine
from finetune.data.libraries import library_sources, load_manifest
from finetune.data.mixing import SILENCE_PEAK, assemble
from finetune.data.music import Note, Part, choose_kind, make_part
from finetune.data.rows.base import RowSource, Stats, flac_bytes
from finetune.data.sources import SOURCES, Program, Source, load_programs

log = logging.getLogger(__name__)

SPLIT_CODES = {"train": 1, "validation": 2, "real_heldout": 4}
REAL_HELDOUT_PER_LIBRARY = 40  # clips of the real_heldout split per held-out real library
ONE_SHOT_CODE = 3  # extra training one-shots: their own seeds, so the other clips stay as they are
P_MIXTURE = 0.3
CHUNK = 64  # clips planned and rendered together (lets TiMidity render a batch per process start)
MAX_ATTEMPTS = 6
MIN_ENSEMBLE_LABELS = 8


# ------------------------------------------------------------------------------------- libraries
@dataclass
class Library:
    """An opened source: its renderer and the programs that really sound in it, by label."""

    name: str
    renderer: Engine
    by_label: dict[str, list[Program]]
    excluded: dict[str, str]


def _spectrum(x: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(x, 1024)[::512] * np.hanning(1024)
    return np.log1p(np.abs(np.fft.rfft(frames, axis=1)).mean(axis=0) * 100)


def probe_programs(renderer: Engine, programs: tuple[Program, ...] | None = None
                   ) -> tuple[list[Program], dict[str, str]]:
    """Programs of the table that exist in this source and really sound.

    Returns (usable programs, {gm_name: reason} for the excluded ones). A program is excluded if the
    library lacks the preset, if its test note is silent, or if it sounds the same as the piano
    (a font that silently falls back to program 0).
    """
    programs = load_programs() if programs is None else programs
    candidates = [p for p in programs if renderer.has_preset(p)]
    missing = {p.gm_name: "not in library" for p in programs if p not in candidates}
    piano = Program(0, 0, "probe piano", "piano", 21, 108, True, False)
    has_piano = renderer.has_preset(piano)  # a drum-kit-only library has none
    probes = [piano] * has_piano + candidates
    parts = []
    for p in probes:
        if p.is_drums:
            notes = [Note(0.05 + 0.25 * i, 0.2, k, 110) for i, k in enumerate((36, 38, 42, 49))]
        else:
            notes = [Note(0.05, 0.9, int(np.clip(60, p.low, p.high)), 100)]
        parts.append(Part(p, notes))
    audios = renderer.render_many(parts, 1.2)
    ref = _spectrum(audios[0]) if has_piano and np.abs(audios[0]).max() > SILENCE_PEAK else None
    usable = []
    for p, a in zip(probes[has_piano:], audios[has_piano:]):
        if np.abs(a).max() < SILENCE_PEAK:
            missing[p.gm_name] = "silent"
            continue
        if ref is not None and not p.is_drums and p.label != "piano":
            sp = _spectrum(a)
            if np.corrcoef(sp, ref)[0, 1] > 0.999:
                missing[p.gm_name] = "sounds like the piano (fall-back)"
                continue
        usable.append(p)
    return usable, missing


def open_library(name: str, source: Source | None = None) -> Library:
    """Open a library of ``SOURCES`` (or the given source: a real library); a real library offers the
    programs of its own .sfz files instead of the General MIDI table."""
    src = source or SOURCES[name]
    renderer = make_renderer(src)
    own = renderer.programs
    usable, excluded = probe_programs(renderer, tuple(own) if own is not None else None)
    by_label: dict[str, list[Program]] = {}
    for p in usable:
        by_label.setdefault(p.label, []).append(p)
    return Library(name, renderer, by_label, excluded)


def open_real_libraries(root: Path, manifest: str | Path | None = None) -> dict[str, Library]:
    """The manifest's real libraries fetched under ``root`` that load and have a sounding program; the
    others are logged and left out (a missing checkout, or no .sfz that loads)."""
    out = {}
    for name, src in library_sources(root, load_manifest(manifest)).items():
        if not available(src):
            log.warning("real library %s: no checkout at %s (run python -m finetune.data.libraries fetch), "
                        "left out", name, src.path)
            continue
        try:
            lib = open_library(name, src)
        except (OSError, ValueError, RuntimeError) as e:
            log.warning("real library %s: cannot be opened (%s), left out", name, e)
            continue
        if not lib.by_label:
            log.warning("real library %s: nothing sounds (%s), left out", name, lib.excluded)
            continue
        out[name] = lib
    return out


@dataclass
class Libraries:
    """The opened libraries of a build, by role."""

    libs: dict[str, Library]
    train: list[str]  # rendered training libraries, then train-role real ones
    validation: list[str]  # held-out rendered libraries
    real_heldout: list[str]  # held-out real libraries
    open_seconds: float


def open_libraries(config: BuildConfig) -> Libraries:
    """Check the chosen libraries against ``SOURCES`` and the held-out ones, and open them all."""
    names = list(config.sources) if config.sources else [n for n, s in SOURCES.items() if available(s)]
    holdout = list(config.holdout)
    unknown = [n for n in names + holdout if n not in SOURCES]
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; valid: {sorted(SOURCES)}")
    missing = [n for n in names if not available(SOURCES[n])]
    if missing:
        raise FileNotFoundError(f"source(s) {missing} not installed ({[SOURCES[n].path for n in missing]}); "
                                "run scripts/install.sh")
    held = [n for n in names if n in holdout]
    train_names = [n for n in names if n not in holdout]
    if not held or not train_names:
        raise ValueError(f"need at least one held-out and one training source; "
                         f"sources={names}, holdout={holdout}")
    shared = sorted({SOURCES[n].lineage for n in held} & {SOURCES[n].lineage for n in train_names})
    if shared:
        log.warning("held-out and training sources share a lineage %s: validation is not fully independent", shared)

    t_open = time.perf_counter()
    libs = {n: open_library(n) for n in names}
    real_held: list[str] = []
    if config.libraries is not None:
        real_libs = open_real_libraries(Path(config.libraries), config.manifest)
        libs.update(real_libs)
        train_names += [n for n, lib in real_libs.items() if lib.renderer.source.library.role == "train"]
        real_held = [n for n, lib in real_libs.items() if lib.renderer.source.library.role == "heldout"]
        leak = sorted({libs[n].renderer.source.lineage for n in real_held}
                      & {libs[n].renderer.source.lineage for n in train_names})
        if leak:
            raise ValueError(f"held-out and training real libraries share an instrument (lineage {leak})")
    return Libraries(libs, train_names, held, real_held, time.perf_counter() - t_open)


# ------------------------------------------------------------------------------------------ plans
def plan_clip(rng: np.random.Generator, libs: dict[str, Library], seconds: float) -> tuple[str, str, list[Part]]:
    """(source, kind, parts) of one clip: a single instrument, or a mixture of 2-4 from one library."""
    all_labels = sorted({l for lib in libs.values() for l in lib.by_label})
    # a band from one library: a drum kit alone is no mixture, and a library of a few instruments would
    # make those few far more frequent in mixtures than the rest
    ensembles = sorted(n for n, lib in libs.items() if len(lib.by_label) >= MIN_ENSEMBLE_LABELS)
    if ensembles and rng.random() < P_MIXTURE:
        name = str(rng.choice(ensembles))
        lib = libs[name]
        labels = sorted(lib.by_label)
        n = int(min(len(labels), rng.integers(2, 5)))
        parts = []
        for label in rng.choice(labels, size=n, replace=False):
            progs = lib.by_label[str(label)]
            prog = progs[int(rng.integers(len(progs)))]
            if prog.is_drums:
                kind = "drums"  # grooves: one-shots are rare inside songs
            elif prog.poly:
                kind = str(rng.choice(["phrase", "chord", "note"], p=[0.5, 0.35, 0.15]))
            else:
                kind = str(rng.choice(["phrase", "note"], p=[0.8, 0.2]))
            part = make_part(rng, prog, kind, seconds)
            if rng.random() < 0.4:  # enters late and/or leaves early: who plays when
                a = rng.uniform(0, seconds / 2)
                b = rng.uniform(min(seconds, a + 1.0), seconds)
                part = part.clipped(a, b)
            parts.append(part)
        return name, "mixture", parts
    label = str(rng.choice(all_labels))  # labels uniform, so rare instruments are as frequent as pianos
    names = sorted(n for n, lib in libs.items() if label in lib.by_label)
    origins = sorted({libs[n].renderer.source.origin for n in names})
    if len(origins) > 1:  # a label with real libraries: half its clips real, whatever the number of libraries
        origin = str(rng.choice(origins))
        names = [n for n in names if libs[n].renderer.source.origin == origin]
    name = str(rng.choice(names))
    progs = libs[name].by_label[label]
    prog = progs[int(rng.integers(len(progs)))]
    kind = choose_kind(rng, prog)
    return name, kind, [make_part(rng, prog, kind, seconds)]


def plan_one_shot(rng: np.random.Generator, libs: dict[str, Library], seconds: float) -> tuple[str, str, list[Part]]:
    """(source, "hits", parts) of a clip of drum one-shots from a library with a kit, libraries uniform.

    In the default plan a drum one-shot clip is about 1 % of the training clips (labels are uniform and
    kits share their label's draws with grooves), while drum sample packs are mostly one-shots.
    """
    names = sorted(n for n, lib in libs.items() if "drums" in lib.by_label)
    name = str(rng.choice(names))
    progs = libs[name].by_label["drums"]
    prog = progs[int(rng.integers(len(progs)))]
    return name, "hits", [make_part(rng, prog, "hits", seconds)]


# ------------------------------------------------------------------------------------------- rows
class RenderedRows(RowSource):
    """``n_clips`` clips of a split, each seeded by (seed, code, index, attempt); ``code`` is the split's
    own unless given, ``planner`` plans each clip."""

    def __init__(self, split: str, libs: dict[str, Library], n_clips: int, seed: int, seconds: float,
                 progress: bool = True, code: int | None = None, planner=plan_clip, prefix: str = ""):
        super().__init__(split, seconds)
        self.libs, self.n_clips, self.seed, self.progress = libs, n_clips, seed, progress
        self.code = SPLIT_CODES[split] if code is None else code
        self.planner, self.prefix = planner, prefix

    def rows(self, stats: Stats) -> Iterator[dict]:
        split, libs, seconds = self.split, self.libs, self.seconds
        bar = tqdm(total=self.n_clips, desc=f"render {split} {self.prefix}".strip(), unit="clip",
                   disable=not self.progress, file=sys.stderr)
        t0 = time.perf_counter()
        for start in range(0, self.n_clips, CHUNK):
            pending = {i: 0 for i in range(start, min(self.n_clips, start + CHUNK))}
            done: dict[int, dict] = {}
            while pending:
                plans = {}
                for i, attempt in pending.items():
                    rng = np.random.default_rng([self.seed, self.code, i, attempt])
                    plans[i] = (rng, *self.planner(rng, libs, seconds))
                audio: dict[tuple[int, int], np.ndarray] = {}
                for name, lib in libs.items():
                    keys = [(i, k) for i, (_, src, _, parts) in plans.items() if src == name
                            for k in range(len(parts))]
                    outs = lib.renderer.render_many([plans[i][3][k] for i, k in keys], seconds)
                    audio.update(zip(keys, outs))
                retry = {}
                for i, (rng, src, kind, parts) in plans.items():
                    clip = assemble(rng, parts, [audio[i, k] for k in range(len(parts))], kind, src, seconds)
                    if clip is None and pending[i] + 1 < MAX_ATTEMPTS:
                        retry[i] = pending[i] + 1
                        stats.retries += 1
                    elif clip is not None:
                        done[i] = {"audio": {"bytes": flac_bytes(clip.audio),
                                             "path": f"{split}/{self.prefix}{i:07d}.flac"},
                                   "labels": clip.labels, "source": clip.source, "kind": clip.kind,
                                   "activity": clip.activity, "origin": libs[src].renderer.source.origin}
                    else:
                        log.warning("%s clip %d: no usable render after %d attempts, skipped", split, i, MAX_ATTEMPTS)
                pending = retry
            for i in sorted(done):
                yield done[i]
            bar.update(len(range(start, min(self.n_clips, start + CHUNK))))
        bar.close()
        stats.render_wall += time.perf_counter() - t0


def row_sources(config: BuildConfig, opened: Libraries) -> list[RowSource]:
    """The rendered rows of a build: train (then its one-shots), validation, and real_heldout with held-out
    real libraries."""
    libs = opened.libs
    total = max(2, int(round(config.hours * 3600 / config.clip_seconds)))
    n_val = max(1, int(round(total * config.val_fraction)))
    common = {"seed": config.seed, "seconds": config.clip_seconds, "progress": not config.quiet}
    train = {k: libs[k] for k in opened.train}
    out: list[RowSource] = [RenderedRows("train", train, total - n_val, **common)]
    if config.one_shots:
        if not any("drums" in lib.by_label for lib in train.values()):
            raise ValueError(f"one_shots needs a training source with a drum kit; training sources: {opened.train}")
        out.append(RenderedRows("train", train, config.one_shots, code=ONE_SHOT_CODE, planner=plan_one_shot,
                                prefix="one-shot-", **common))
    out.append(RenderedRows("validation", {k: libs[k] for k in opened.validation}, n_val, **common))
    if opened.real_heldout:
        out.append(RenderedRows("real_heldout", {k: libs[k] for k in opened.real_heldout},
                                REAL_HELDOUT_PER_LIBRARY * len(opened.real_heldout), **common))
    return out
