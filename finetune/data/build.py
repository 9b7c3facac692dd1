"""Build the instrument dataset: rendered train/validation splits plus a real-recordings split.

:func:`build` (the CLI is ``python -m finetune.data``) writes a ``datasets.DatasetDict``
(``save_to_disk``) with splits ``train`` (rendered, training
sources), ``validation`` (rendered, held-out sample libraries only) and ``real`` (real recordings,
evaluation only), and a dataset card (README.md) with counts, measured throughput and size.
Rendering is deterministic: clip ``i`` of a split depends only on (seed, split, i).
"""

from __future__ import annotations

import io
import logging
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import soundfile as sf
from tqdm import tqdm

from finetune.data.music import Part, choose_kind, make_part
from finetune.data.negatives import HELDOUT_SPLIT, negative_rows
from finetune.data.render import assemble, make_renderer, probe_programs, render_parts
from finetune.data.schema import SAMPLE_RATE, features
from finetune.data.sources import SOURCES, Program, Source

log = logging.getLogger(__name__)

DEFAULT_HOLDOUT = ("sf_gmbank",)
SPLIT_CODES = {"train": 1, "validation": 2, "real_heldout": 4}
REAL_HELDOUT_PER_LIBRARY = 40  # clips of the real_heldout split per held-out real library
ONE_SHOT_CODE = 3  # extra training one-shots: their own seeds, so the other clips stay as they are
P_MIXTURE = 0.3
CHUNK = 64  # clips planned and rendered together (lets TiMidity render a batch per process start)
MAX_ATTEMPTS = 6
MIN_ENSEMBLE_LABELS = 8


@dataclass
class Library:
    """An opened source: its renderer and the programs that really sound in it, by label."""

    name: str
    renderer: object
    by_label: dict[str, list[Program]]
    excluded: dict[str, str]


def open_library(name: str, source: Source | None = None) -> Library:
    """Open a library of ``SOURCES`` (or the given source: a real library); a real library offers the
    programs of its own .sfz files instead of the General MIDI table."""
    src = source or SOURCES[name]
    renderer = make_renderer(src)
    own = getattr(renderer, "programs", None)
    usable, excluded = probe_programs(renderer, tuple(own) if own is not None else None)
    by_label: dict[str, list[Program]] = {}
    for p in usable:
        by_label.setdefault(p.label, []).append(p)
    return Library(name, renderer, by_label, excluded)


def open_real_libraries(root: Path) -> dict[str, Library]:
    """The manifest's real libraries fetched under ``root`` that load and have a sounding program; the
    others are logged and left out (a missing checkout, or no .sfz that loads)."""
    from finetune.data.libraries import library_sources

    out = {}
    for name, src in library_sources(root).items():
        if not src.available():
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
class Stats:
    clips: Counter = field(default_factory=Counter)  # split
    seconds: Counter = field(default_factory=Counter)  # split
    label: Counter = field(default_factory=Counter)  # (split, label)
    label_source: Counter = field(default_factory=Counter)  # (split, label, source)
    source: Counter = field(default_factory=Counter)  # (split, source)
    kind: Counter = field(default_factory=Counter)  # (split, kind)
    retries: int = 0
    render_wall: float = 0.0

    def add(self, split: str, r: dict, seconds: float) -> None:
        self.clips[split] += 1
        self.seconds[split] += seconds
        self.source[split, r["source"]] += 1
        self.kind[split, r["kind"]] += 1
        for label in r["labels"]:
            self.label[split, label] += 1
            self.label_source[split, label, r["source"]] += 1


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


def flac_bytes(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def render_split(split: str, libs: dict[str, Library], n_clips: int, seed: int, seconds: float,
                 stats: Stats, progress: bool = True, code: int | None = None, planner=plan_clip,
                 prefix: str = ""):
    """Yield ``n_clips`` rows of a split, in index order, each seeded by (seed, code, index, attempt);
    ``code`` is the split's own unless given, ``planner`` plans each clip."""
    code = SPLIT_CODES[split] if code is None else code
    bar = tqdm(total=n_clips, desc=f"render {split} {prefix}".strip(), unit="clip", disable=not progress,
               file=sys.stderr)
    t0 = time.perf_counter()
    for start in range(0, n_clips, CHUNK):
        pending = {i: 0 for i in range(start, min(n_clips, start + CHUNK))}
        done: dict[int, dict] = {}
        while pending:
            plans = {}
            for i, attempt in pending.items():
                rng = np.random.default_rng([seed, code, i, attempt])
                plans[i] = (rng, *planner(rng, libs, seconds))
            audio: dict[tuple[int, int], np.ndarray] = {}
            for name, lib in libs.items():
                keys = [(i, k) for i, (_, src, _, parts) in plans.items() if src == name for k in range(len(parts))]
                outs = render_parts(lib.renderer, [plans[i][3][k] for i, k in keys], seconds)
                audio.update(zip(keys, outs))
            retry = {}
            for i, (rng, src, kind, parts) in plans.items():
                clip = assemble(rng, parts, [audio[i, k] for k in range(len(parts))], kind, src, seconds)
                if clip is None and pending[i] + 1 < MAX_ATTEMPTS:
                    retry[i] = pending[i] + 1
                    stats.retries += 1
                elif clip is not None:
                    done[i] = {"audio": {"bytes": flac_bytes(clip.audio), "path": f"{split}/{prefix}{i:07d}.flac"},
                               "labels": clip.labels, "source": clip.source, "kind": clip.kind,
                               "activity": clip.activity, "origin": libs[src].renderer.source.origin}
                else:
                    log.warning("%s clip %d: no usable render after %d attempts, skipped", split, i, MAX_ATTEMPTS)
            pending = retry
        for i in sorted(done):
            stats.add(split, done[i], seconds)
            yield done[i]
        bar.update(len(range(start, min(n_clips, start + CHUNK))))
    bar.close()
    stats.render_wall += time.perf_counter() - t0


# Renderers hold C pointers that `datasets` cannot hash; the generator gets them by key from here.
_LIVE: dict[str, tuple[dict[str, Library], Stats]] = {}


def _rows(key: str, one_shots: int = 0, negatives: int = 0, fsdd: str | None = None, **kwargs):
    libs, stats = _LIVE[key]
    yield from render_split(libs=libs, stats=stats, **kwargs)
    if one_shots:
        yield from render_split(libs=libs, stats=stats, **{**kwargs, "n_clips": one_shots}, code=ONE_SHOT_CODE,
                                planner=plan_one_shot, prefix="one-shot-")
    if negatives:
        yield from _counted(stats, "train", kwargs["seconds"],
                            negative_rows("train", negatives, kwargs["seed"], kwargs["seconds"], fsdd, flac_bytes))


def _counted(stats: Stats, split: str, seconds: float, rows):
    for r in rows:
        stats.add(split, r, seconds)
        yield r


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(out: Path, hours: float, seed: int = 0, clip_seconds: float = 4.0, holdout=DEFAULT_HOLDOUT,
          sources=None, val_fraction: float = 0.15, real: bool = True, progress: bool = True,
          real_eval_dir: Path | None = None, one_shots: int = 0,
          libraries: Path | None = None, negatives: int = 0, negatives_heldout: int = 300,
          fsdd: str | Path | None = None) -> datasets.DatasetDict:
    """Render, load, save and describe the dataset; returns the saved DatasetDict.

    ``libraries`` (the folder ``python -m finetune.data.libraries fetch`` filled) adds the real sample
    libraries of the manifest: train-role ones to the training split, held-out ones as the
    ``real_heldout`` split (:data:`REAL_HELDOUT_PER_LIBRARY` clips each, never trained on).

    ``negatives`` training clips without any instrument (`finetune.data.negatives`) follow the rest of train;
    with them, a held-out split ``negatives`` of ``negatives_heldout`` clips (other speakers, voices, sounds).

    ``one_shots`` extra training clips of drum one-shots follow the ``hours`` of clips, which keep their
    seeds and so their plans; the validation and real splits are the same as without them.
    """
    from finetune.data import card
    from finetune.data.real import REAL_EVAL_DIR, real_rows

    names = list(sources) if sources else [n for n, s in SOURCES.items() if s.available()]
    unknown = [n for n in list(names) + list(holdout) if n not in SOURCES]
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; valid: {sorted(SOURCES)}")
    missing = [n for n in names if not SOURCES[n].available()]
    if missing:
        raise FileNotFoundError(f"source(s) {missing} not installed ({[SOURCES[n].path for n in missing]}); "
                                "run scripts/install.sh")
    held = [n for n in names if n in holdout]
    train_names = [n for n in names if n not in holdout]
    if not held or not train_names:
        raise ValueError(f"need at least one held-out and one training source; "
                         f"sources={names}, holdout={list(holdout)}")
    shared = sorted({SOURCES[n].lineage for n in held} & {SOURCES[n].lineage for n in train_names})
    if shared:
        log.warning("held-out and training sources share a lineage %s: validation is not fully independent", shared)

    if one_shots < 0 or negatives < 0 or negatives_heldout < 1:
        raise ValueError(f"one_shots and negatives must be >= 0 and negatives_heldout >= 1, got {one_shots}, "
                         f"{negatives}, {negatives_heldout}")
    t_open = time.perf_counter()
    libs = {n: open_library(n) for n in names}
    real_held: list[str] = []
    if libraries is not None:
        real_libs = open_real_libraries(Path(libraries))
        libs.update(real_libs)
        train_names += [n for n, lib in real_libs.items() if lib.renderer.source.library.role == "train"]
        real_held = [n for n, lib in real_libs.items() if lib.renderer.source.library.role == "heldout"]
        leak = sorted({libs[n].renderer.source.lineage for n in real_held}
                      & {libs[n].renderer.source.lineage for n in train_names})
        if leak:
            raise ValueError(f"held-out and training real libraries share an instrument (lineage {leak})")
    open_seconds = time.perf_counter() - t_open
    if one_shots and not any("drums" in libs[n].by_label for n in train_names):
        raise ValueError(f"one_shots needs a training source with a drum kit; training sources: {train_names}")
    total = max(2, int(round(hours * 3600 / clip_seconds)))
    n_val = max(1, int(round(total * val_fraction)))
    n_train = total - n_val
    stats = Stats()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
    try:
        splits = {}
        plan = [("train", n_train, train_names), ("validation", n_val, held)]
        if real_held:
            plan.append(("real_heldout", REAL_HELDOUT_PER_LIBRARY * len(real_held), real_held))
        for split, n, chosen in plan:
            _LIVE[f"{cache}/{split}"] = ({k: libs[k] for k in chosen}, stats)
            splits[split] = datasets.Dataset.from_generator(
                _rows, features=features(), cache_dir=str(cache / split), keep_in_memory=False,
                gen_kwargs={"key": f"{cache}/{split}", "split": split, "n_clips": n, "seed": seed,
                            "seconds": clip_seconds, "progress": progress,
                            "one_shots": one_shots if split == "train" else 0,
                            "negatives": negatives if split == "train" else 0, "fsdd": str(fsdd) if fsdd else None})
        if negatives:
            splits[HELDOUT_SPLIT] = datasets.Dataset.from_list(list(_counted(stats, HELDOUT_SPLIT, clip_seconds, (
                negative_rows(HELDOUT_SPLIT, negatives_heldout, seed, clip_seconds, fsdd, flac_bytes)))),
                features=features())
        if real:
            t = time.perf_counter()
            rows = list(real_rows(clip_seconds, real_eval_dir or REAL_EVAL_DIR))
            for r in rows:
                stats.add("real", r, len(r["activity"][0]) / 10)
            splits["real"] = datasets.Dataset.from_list(rows, features=features())
            log.info("real split: %d clips in %.1f s", len(rows), time.perf_counter() - t)
        dd = datasets.DatasetDict(splits)
        target = out
        tmp_out = out / ".dataset-tmp"
        dd.save_to_disk(str(tmp_out))
    finally:
        for split in SPLIT_CODES:
            _LIVE.pop(f"{cache}/{split}", None)
        shutil.rmtree(cache, ignore_errors=True)
    # move the saved splits into place (out/ may hold an older build)
    for item in tmp_out.iterdir():
        dest = target / item.name
        if dest.is_dir():
            shutil.rmtree(dest)
        elif dest.exists():
            dest.unlink()
        item.rename(dest)
    tmp_out.rmdir()
    sizes = {s: dir_size(target / s) for s in dd}
    card.write_card(target, libs=libs, stats=stats, sizes=sizes, holdout=held, train_sources=train_names,
                    real_heldout=real_held, open_seconds=open_seconds, argv=sys.argv, seed=seed, hours=hours, clip_seconds=clip_seconds)
    return datasets.load_from_disk(str(target))
