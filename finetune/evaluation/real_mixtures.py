"""Real mixtures: duos and trios summed from real recordings no model trained on, scored as the CLI scores them.

    python -m finetune.evaluation.real_mixtures --dataset data/instruments-v9 \
        --model shipped=models/instrusense:int8 [--model NAME=PATH[:int8] ...] [--out finetune/results/real_mixtures]

Issue 38 (item 3): the validation mixtures are rendered; a musician's recording holds real instruments. The
mixtures here are made in memory (nothing is written to the dataset), with a fixed seed, from the single-label
clips of the `real_heldout` split (sample libraries held out of training):

- **duos**: `--duos` label pairs (with 10 labels and the default 135, every pair three times, with other clips
  each time: 45 duos, every pair once, left the figure to which clips were drawn), each pair's two clips
  from different sources, mixed at 0 dB (equal), ±6 dB and ±12 dB (the same two clips at every level; which
  of the two is the quieter one is drawn once per pair);
- **trios**: `--trios` label triples, three clips from three sources, at equal level and with one part
  (drawn per triple) 12 dB below the other two.

Each part is cut to the shortest part's length (`finetune.data.clips.crop`), brought to the same *active* RMS
(the RMS over its sounding frames: the clip's activity column, else the frames within
`finetune.data.mixing.ACTIVITY_GATE_DB` of its loudest frame), then offset by its level, summed, and
peak-normalised only if the sum would clip. Every mixture is scored by `finetune.scoring.score_clips`, the
library's analysis (what `python -m instrusense analyze` reports for a file holding it); `--model` means
what it means for `finetune.evaluation.evaluate`.

Figures per model and group (duos 0 dB, duos ±6 dB, duos ±12 dB, trios equal, trios with a −12 dB part):
mAP over the labels present (`finetune.metrics`), the share of mixtures in which every instrument present is
at or above the threshold (`Settings().threshold`), the shares in which the quieter part is and the louder
part(s) are (unequal levels), and the mean number of absent labels at or above it. Every part is also scored
alone (the same cut at the same level): the share of mixtures whose every part is heard alone, and of those the
share still all heard in the sum ("kept"), which tells a recognition limit from masking. Also the issue's example:
`examples/saxophone.flac` + `examples/acoustic_guitar.flac` summed 1:1 (equal gain, no level matching), cut to
the shorter file's length (both instruments sound throughout: the check), and with the shorter file
zero-padded to the longer's length.
`--split validation --pair_by label --labels ...` makes the same mixtures from rendered clips of a SoundFont no model
trained on (one source, so every label counts as its own): what the sum takes away from parts the model
recognises alone, apart from what a real part's origin adds.
With two or more models, each after the first is also set against the first, per group: the difference in the
"all heard" share and its paired-bootstrap standard error (the same resampled mixtures for both).
Writes results.json and results.md to --out and prints the markdown.
"""

from __future__ import annotations

import datetime
import itertools
import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import HfArgumentParser

from finetune.data.clips import Clips, crop, load_clips
from finetune.data.mixing import active_rms
from finetune.data.schema import DEFAULT_DATASET, FPS, SAMPLE_RATE
from finetune.evaluation.evaluate import (_json_safe, _num, _pct, _table, gather_models, machine, make_scorer,
                                          model_specs)
from finetune.metrics import mean_average_precision, multi_hot, solo_mask
from instrusense.audio import decode
from instrusense.logs import configure_logging
from instrusense.settings import Settings
from instrusense.taxonomy import LABEL_INDEX, LABELS

log = logging.getLogger("finetune.evaluation.real_mixtures")

SPLIT = "real_heldout"
DUO_LEVELS_DB = (0.0, 6.0, 12.0)  # level difference between the two parts of a duo
TRIO_QUIET_DB = 12.0  # the quiet part of an unequal trio is this far below the other two
REFERENCE_RMS = 0.1  # active RMS of a part at 0 dB (−20 dBFS) before any peak normalisation
PEAK = 0.99  # a sum that would clip is scaled to this peak
EQUAL_DUOS_BAR = 0.60  # issue 38: both instruments of an equal-level duo heard in ≥ 60 % of duos
EXAMPLES = ("examples/saxophone.flac", "examples/acoustic_guitar.flac")
EXAMPLE_MODES = ("cropped", "padded")
PAIR_BY = ("source", "label")


def group_name(n_parts: int, offsets_db: Sequence[float]) -> str:
    """The row a mixture counts in: "duos 0 dB", "duos ±6 dB", "duos ±12 dB", "trios equal", "trios −12 dB"."""
    spread = max(offsets_db) - min(offsets_db)
    if n_parts == 2:
        return f"duos {'0' if spread == 0 else f'±{spread:g}'} dB"
    return "trios equal" if spread == 0 else f"{'trios' if n_parts == 3 else f'{n_parts} parts'} −{spread:g} dB"


GROUPS = tuple(group_name(2, (0, -d)) for d in DUO_LEVELS_DB) + (group_name(3, (0, 0, 0)),
                                                                  group_name(3, (0, 0, -TRIO_QUIET_DB)))


@dataclass
class Mixture:
    wave: np.ndarray  # float32 mono at SAMPLE_RATE: the sum
    parts: list[np.ndarray]  # each part as it is in the sum (levelled, cut, scaled with the sum)
    labels: list[str]  # per part
    sources: list[str]  # per part
    clips: list[int]  # per part: its index in the split
    offsets_db: list[float]  # per part: its level relative to the loudest part (0 or negative)
    activity: list[list[float]]  # per part: its activity frames over the mixture

    @property
    def group(self) -> str:
        return group_name(len(self.parts), self.offsets_db)

    @property
    def quieter(self) -> str | None:
        """The label of the quietest part when the levels differ (None at equal level)."""
        if max(self.offsets_db) == min(self.offsets_db):
            return None
        return self.labels[int(np.argmin(self.offsets_db))]


# --------------------------------------------------------------------------------------------- mixing


def mix_parts(waves: Sequence[np.ndarray], activities: Sequence[Sequence[float] | None],
              offsets_db: Sequence[float], rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray],
                                                                             list[list[float]]]:
    """Sum parts at the given levels: each cut to the shortest part's length (a random window of a longer
    one, ``finetune.data.clips.crop``), scaled to an active RMS of ``REFERENCE_RMS`` × 10^(offset/20), summed
    and scaled down to a ``PEAK`` peak if the sum would clip. Returns the sum, the parts as they are in it
    and their activity frames over the sum."""
    length = min(len(w) for w in waves)
    hop = SAMPLE_RATE // FPS
    parts, acts = [], []
    for wave, activity, offset in zip(waves, activities, offsets_db):
        cut, start = crop(np.asarray(wave, np.float32), length, rng)
        act = list(activity or [])[start // hop: -(-(start + length) // hop)]
        level = active_rms(cut, act)
        if level <= 0:
            raise ValueError("a part of the mixture is silent")
        parts.append(cut.astype(np.float64) / level * REFERENCE_RMS * 10 ** (offset / 20))
        acts.append([float(a) for a in act])
    mix = np.sum(parts, axis=0)
    peak = float(np.abs(mix).max())
    if peak > PEAK:
        mix, parts = mix * (PEAK / peak), [p * (PEAK / peak) for p in parts]
    return mix.astype(np.float32), [p.astype(np.float32) for p in parts], acts


def _pick_clips(rng: np.random.Generator, labels: Sequence[str], by_label: dict[str, list[int]],
                sources: Sequence[str]) -> list[int] | None:
    """One clip per label, no two from one source (None when the sources do not allow it)."""
    chosen: list[int] = []
    for label in labels:
        used = {sources[i] for i in chosen}
        options = [i for i in by_label[label] if sources[i] not in used]
        if not options:
            return None
        chosen.append(int(options[rng.integers(len(options))]))
    return chosen


def _draw(rng: np.random.Generator, by_label: dict[str, list[int]], sources: Sequence[str], k: int,
          n: int) -> list[list[int]]:
    """Clips for ``n`` mixtures of ``k`` parts: every label combination whose clips can come from ``k``
    different sources once, in a seeded order, before any combination repeats (with other clips drawn)."""
    combos = list(itertools.combinations(sorted(by_label), k))
    out: list[list[int]] = []
    while len(out) < n:
        before = len(out)
        for i in rng.permutation(len(combos)):
            idx = _pick_clips(rng, combos[i], by_label, sources)
            if idx is not None:
                out.append(idx)
                if len(out) == n:
                    break
        if len(out) == before:
            log.warning("only %d mixtures of %d parts with different labels and sources", len(out), k)
            break
    return out


def make_mixtures(clips: Clips, duos: int = 135, trios: int = 90, seed: int = 0) -> list[Mixture]:
    """Duos at every level of ``DUO_LEVELS_DB`` and trios at equal level and with one part ``TRIO_QUIET_DB``
    lower, from the single-label clips of ``clips`` (labels and sources differ within a mixture). The same
    ``clips`` and ``seed`` give the same mixtures."""
    rng = np.random.default_rng(seed)
    solo = solo_mask(multi_hot(clips.labels)) if len(clips) else np.zeros(0, bool)
    by_label: dict[str, list[int]] = {}
    for i in np.flatnonzero(solo):
        by_label.setdefault(clips.labels[i][0], []).append(int(i))
    mixtures = []

    def add(idx: list[int], offsets: Sequence[float], cut_seed: int) -> None:  # one seed: one cut at every level
        wave, parts, acts = mix_parts([clips.waves[i] for i in idx], [clips.activity[i][0] if clips.activity[i]
                                                                      else None for i in idx], offsets,
                                      np.random.default_rng(cut_seed))
        mixtures.append(Mixture(wave, parts, [clips.labels[i][0] for i in idx], [clips.sources[i] for i in idx],
                                idx, [float(o) for o in offsets], acts))

    for k, n in ((2, duos), (3, trios)):
        for idx in _draw(rng, by_label, clips.sources, k, n):
            quiet, cut_seed = int(rng.integers(k)), int(rng.integers(2 ** 32))
            if k == 2:
                for d in DUO_LEVELS_DB:
                    add(idx, [0.0 - d if j == quiet else 0.0 for j in range(2)], cut_seed)
            else:
                add(idx, [0.0] * 3, cut_seed)
                add(idx, [-TRIO_QUIET_DB if j == quiet else 0.0 for j in range(3)], cut_seed)
    return mixtures


def select_parts(clips: Clips, labels: Sequence[str] = (), pair_by: str = "source") -> Clips:
    """The clips mixtures may draw parts from: only ``labels`` (all when empty); with ``pair_by="label"`` every
    label counts as its own source, so a split rendered from one SoundFont (``validation``) pairs as the real
    libraries do: the same mixtures of parts no model trained on, made of rendered audio, tell masking in
    general from what the origin of a part adds."""
    if pair_by not in PAIR_BY:
        raise ValueError(f"pair_by is one of {PAIR_BY}, got {pair_by!r}")
    wanted = set(labels)
    keep = [i for i in range(len(clips)) if not wanted or set(clips.labels[i]) <= wanted]
    sources = [("+".join(clips.labels[i]) if pair_by == "label" else clips.sources[i]) for i in keep]
    return Clips(waves=[clips.waves[i] for i in keep], labels=[clips.labels[i] for i in keep],
                 activity=[clips.activity[i] for i in keep], sources=sources, kinds=[clips.kinds[i] for i in keep],
                 origins=[clips.origins[i] for i in keep] if clips.origins else [])


def as_clips(mixtures: Sequence[Mixture]) -> Clips:
    """The mixtures as the `Clips` a scorer takes."""
    return Clips(waves=[m.wave for m in mixtures], labels=[list(m.labels) for m in mixtures],
                 activity=[m.activity for m in mixtures], sources=["+".join(m.sources) for m in mixtures],
                 kinds=["mixture"] * len(mixtures), origins=["real"] * len(mixtures))


def parts_as_clips(mixtures: Sequence[Mixture]) -> Clips:
    """Every part of every mixture alone, as it is in its sum, one clip each in mixture order."""
    n = sum(len(m.parts) for m in mixtures)
    return Clips(waves=[p for m in mixtures for p in m.parts], labels=[[lab] for m in mixtures for lab in m.labels],
                 activity=[[a] for m in mixtures for a in m.activity], sources=[s for m in mixtures for s in m.sources],
                 kinds=["part"] * n, origins=["real"] * n)


def example_mix(waves: Sequence[np.ndarray], mode: str = "cropped") -> np.ndarray:
    """Recordings summed 1:1 (equal gain, no level matching), as the issue mixed the shipped examples:
    "cropped" cuts every one to the shortest's length (from the start), "padded" zero-pads to the longest's;
    scaled to a ``PEAK`` peak only if the sum would clip."""
    if mode not in EXAMPLE_MODES:
        raise ValueError(f"mode is one of {EXAMPLE_MODES}, got {mode!r}")
    n = (min if mode == "cropped" else max)(len(w) for w in waves)
    mix = np.sum([np.pad(np.asarray(w, np.float64)[:n], (0, max(0, n - len(w)))) for w in waves], axis=0)
    peak = float(np.abs(mix).max())
    return (mix * (PEAK / peak if peak > PEAK else 1.0)).astype(np.float32)


# -------------------------------------------------------------------------------------------- figures


def all_heard(scores: np.ndarray, labels: Sequence[Sequence[str]], threshold: float) -> np.ndarray:
    """Per mixture, whether every instrument present (its ``labels``) is at or above ``threshold``."""
    return np.asarray([all(scores[i, LABEL_INDEX[lab]] >= threshold for lab in labs)
                       for i, labs in enumerate(labels)], bool)


def alone_scores(part_scores: np.ndarray, mixtures: Sequence[Mixture]) -> list[list[float]]:
    """Per mixture and part, the score of the part's own label when the part is scored alone (the same cut at
    the same level as in the sum); ``part_scores`` holds one row per part, in mixture order
    (:func:`parts_as_clips`)."""
    out, row = [], 0
    for m in mixtures:
        out.append([float(part_scores[row + k, LABEL_INDEX[lab]]) for k, lab in enumerate(m.labels)])
        row += len(m.labels)
    return out


def mixture_figures(scores: np.ndarray, labels: Sequence[Sequence[str]], offsets_db: Sequence[Sequence[float]],
                    threshold: float, alone: Sequence[Sequence[bool]] | None = None) -> dict:
    """One row, from each mixture's clip scores, labels and parts' levels (dB, parallel to its labels): mAP over
    the labels present; the share of mixtures with every label present at or above ``threshold`` ("all
    heard"); among the mixtures whose levels differ, the share with the quietest part heard ("quieter heard")
    and the share with every loudest part heard ("louder heard"); the mean number of absent labels heard
    ("extra"); and per label present, the share of its mixtures in which it is heard. With ``alone`` (per
    mixture and part, heard when scored alone: from :func:`alone_scores`) also the share of parts heard alone, the
    share of mixtures whose every part is ("all heard alone"), and among those the share with every part still
    heard in the sum ("kept"): what the sum takes away, apart from what a part alone already misses."""
    y = multi_hot([list(lab) for lab in labels]).astype(bool)
    heard = np.asarray(scores) >= threshold
    n = len(y)

    def parts_heard(i: int, which) -> bool:
        offs = offsets_db[i]
        return all(heard[i, LABEL_INDEX[lab]] for lab, off in zip(labels[i], offs) if which(off, offs))

    unequal = [i for i in range(n) if max(offsets_db[i]) > min(offsets_db[i])]
    together = all_heard(np.asarray(scores), labels, threshold) if n else np.zeros(0, bool)
    alone_rows = {}
    if alone is not None:
        every = np.asarray([all(a) for a in alone], bool)
        alone_rows = {"parts_heard_alone": float(np.mean([x for a in alone for x in a])) if n else float("nan"),
                      "all_heard_alone": float(every.mean()) if n else float("nan"),
                      "kept": float(together[every].mean()) if every.any() else float("nan")}
    return {
        "mixtures": int(n),
        "mAP": mean_average_precision(np.asarray(scores), y.astype(np.float32)) if n else float("nan"),
        "all_heard": float(together.mean()) if n else float("nan"),
        "unequal": len(unequal),
        "quieter_heard": float(np.mean([parts_heard(i, lambda o, offs: o == min(offs)) for i in unequal]))
        if unequal else float("nan"),
        "louder_heard": float(np.mean([parts_heard(i, lambda o, offs: o == max(offs)) for i in unequal]))
        if unequal else float("nan"),
        "extra": float((heard & ~y).sum(axis=1).mean()) if n else float("nan"),
        "per_label_heard": {LABELS[j]: float(heard[y[:, j], j].mean()) for j in range(len(LABELS)) if y[:, j].any()},
        **alone_rows,
    }


def group_figures(scores: np.ndarray, mixtures: Sequence[Mixture], threshold: float,
                  alone: Sequence[Sequence[bool]] | None = None) -> dict[str, dict]:
    """:func:`mixture_figures` per group, in ``GROUPS`` order (groups without mixtures left out)."""
    groups = [m.group for m in mixtures]
    order = list(GROUPS) + sorted(set(groups) - set(GROUPS))
    rows = {}
    for g in order:
        idx = [i for i, name in enumerate(groups) if name == g]
        if idx:
            rows[g] = mixture_figures(scores[idx], [mixtures[i].labels for i in idx],
                                      [mixtures[i].offsets_db for i in idx], threshold,
                                      [alone[i] for i in idx] if alone is not None else None)
    return rows


def paired_difference(reference: np.ndarray, other: np.ndarray, draws: int = 1000, seed: int = 0) -> tuple[float, float]:
    """``mean(other) - mean(reference)`` over the same mixtures, and its paired-bootstrap standard error (the same
    resampled mixtures for both): the tolerance a per-group bar is read with (issue 38)."""
    if not len(reference):
        return float("nan"), float("nan")
    diff = other.astype(float) - reference.astype(float)
    idx = np.random.default_rng(seed).integers(0, len(diff), (draws, len(diff)))
    return float(diff.mean()), float(diff[idx].mean(axis=1).std())


def paired_rows(flags: dict[str, np.ndarray], mixtures: Sequence[Mixture]) -> dict[str, dict[str, dict]]:
    """For every model after the first: per group, its "all heard" share minus the first model's and the paired
    standard error of that difference."""
    names = list(flags)
    groups = [m.group for m in mixtures]
    out = {}
    for name in names[1:]:
        out[name] = {}
        for g in dict.fromkeys(groups):
            idx = [i for i, x in enumerate(groups) if x == g]
            d, se = paired_difference(flags[names[0]][idx], flags[name][idx])
            out[name][g] = {"difference": d, "se": se, "mixtures": len(idx)}
    return out


def example_figures(scores: np.ndarray, labels: Sequence[str], threshold: float) -> dict:
    """The example mix's confidence for each of its instruments, and whether all of them are named."""
    conf = {label: float(scores[LABEL_INDEX[label]]) for label in labels}
    return {"confidence": conf, "named_all": all(v >= threshold for v in conf.values())}


# ------------------------------------------------------------------------------------------- command


@dataclass
class RealMixtureArguments:
    dataset: str = field(default=DEFAULT_DATASET, metadata={"help": f"DatasetDict with a {SPLIT} split"})
    model: list[str] = field(default_factory=lambda: ["shipped=models/instrusense:int8"], metadata={
        "help": "NAME=PATH[:int8], repeatable, in table order (as for finetune.evaluation.evaluate)"})
    out: str = field(default="finetune/results/real_mixtures", metadata={"help": "folder for results.json and .md"})
    split: str = field(default=SPLIT, metadata={"help": "the split whose single-label clips are mixed"})
    labels: list[str] = field(default_factory=list, metadata={
        "choices": LABELS, "help": "mix only clips of these labels (default: every label of the split)"})
    pair_by: str = field(default="source", metadata={
        "choices": PAIR_BY, "help": "parts of a mixture come from different sources ('source'), or every label counts as its own "
                "source ('label': for a split rendered from one SoundFont, such as validation)"})
    duos: int = field(default=135, metadata={"help": "label pairs, each mixed at every level of the duos"})
    trios: int = field(default=90, metadata={"help": "label triples, each mixed at equal level and with a quiet part"})
    seed: int = field(default=0)
    examples: list[str] = field(default_factory=lambda: list(EXAMPLES), metadata={
        "help": "recordings summed 1:1 for the example check; each file's stem is its label"})
    batch_size: int = field(default=32)
    threads: int = field(default=0, metadata={"help": "torch threads (0: torch default)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})


def _example_waves(paths: Sequence[str]) -> tuple[list[str], list[np.ndarray]]:
    labels = [Path(p).stem for p in paths]
    unknown = [label for label in labels if label not in LABEL_INDEX]
    if unknown:
        raise ValueError(f"example files are named after their label; not a label: {unknown}")
    return labels, [decode(p, SAMPLE_RATE, max_seconds=600.0).samples for p in paths]


def evaluate_mixtures(a: RealMixtureArguments, command: str = "") -> dict:
    specs = model_specs(a.model)
    if a.threads:
        torch.set_num_threads(a.threads)
    threshold = Settings().threshold
    clips = select_parts(load_clips(a.dataset, a.split), a.labels, a.pair_by)
    mixtures = make_mixtures(clips, a.duos, a.trios, a.seed)
    example_labels, example_waves = _example_waves(a.examples) if a.examples else ([], [])
    examples = Clips(waves=[example_mix(example_waves, m) for m in EXAMPLE_MODES] if example_waves else [],
                     labels=[], activity=[], sources=[], kinds=[])
    used = sorted({i for m in mixtures for i in m.clips})
    results = {
        "command": command, "date": datetime.datetime.now().isoformat(timespec="seconds"), "args": asdict(a),
        "machine": machine(), "threshold": threshold,
        "data": {"split": a.split, "clips_used": len(used), "labels": sorted({clips.labels[i][0] for i in used}),
                 "sources": sorted({clips.sources[i] for i in used}),
                 "mixtures": {g: sum(m.group == g for m in mixtures)
                              for g in dict.fromkeys(m.group for m in mixtures)}},
        "mixtures": [{"group": m.group, "labels": m.labels, "sources": m.sources, "clips": m.clips,
                      "offsets_db": m.offsets_db, "seconds": round(len(m.wave) / SAMPLE_RATE, 3)} for m in mixtures],
        "examples": {"files": list(a.examples), "labels": example_labels,
                     "modes": {"cropped": "cut to the shorter file's length, from the start",
                               "padded": "the shorter file zero-padded at its end to the longer's length"}},
        "models": {}, "skipped": {},
    }
    log.info("%d mixtures from %d clips of %s (%s)", len(mixtures), len(used), a.split, results["data"]["mixtures"])
    flags = {}
    for spec in specs:
        t0 = time.time()
        scorer, info, note = make_scorer(spec, a.batch_size, a.device)
        if scorer is None:
            log.warning("skipping %s: %s", spec.name, note)
            results["skipped"][spec.name] = note
            continue
        scores = scorer(as_clips(mixtures)) if mixtures else np.zeros((0, len(LABELS)), np.float32)
        own = alone_scores(scorer(parts_as_clips(mixtures)), mixtures) if mixtures else []
        info["groups"] = group_figures(scores, mixtures, threshold, [[x >= threshold for x in row] for row in own])
        flags[spec.name] = all_heard(scores, [m.labels for m in mixtures], threshold)
        if len(examples):
            ex = scorer(examples)
            info["examples"] = {mode: example_figures(ex[k], example_labels, threshold)
                                for k, mode in enumerate(EXAMPLE_MODES)}
        info["int8"] = spec.int8
        info["seconds"] = round(time.time() - t0, 1)
        info["mixture_scores"] = [{"present": {lab: round(float(s[LABEL_INDEX[lab]]), 4) for lab in mix.labels},
                                   "top": [[LABELS[j], round(float(s[j]), 4)] for j in np.argsort(-s)[:3]],
                                   "alone": {lab: round(x, 4) for lab, x in zip(mix.labels, row)}}
                                  for mix, s, row in zip(mixtures, scores, own)]  # parallel to results["mixtures"]
        results["models"][spec.name] = info
        log.info("%s: %s (%.0f s)", spec.name, json.dumps({g: {k: v for k, v in r.items() if k != "per_label_heard"}
                                                           for g, r in info["groups"].items()}), info["seconds"])
    results["paired"] = paired_rows(flags, mixtures)  # every model after the first against the first
    return results


def render_markdown(results: dict) -> str:
    m, data, thr = results["machine"], results["data"], results["threshold"]
    models = results["models"]
    rows = []
    for name, info in models.items():
        for g, r in info["groups"].items():
            rows.append([name, g, r["mixtures"], _num(r["mAP"]), _pct(r["all_heard"]),
                         _pct(r["quieter_heard"]) if r["unequal"] else "–",
                         _pct(r["louder_heard"]) if r["unequal"] else "–", f"{r['extra']:.2f}"])
    parts = [
        "## Real mixtures" if data["split"] == SPLIT else f"## Mixtures from the {data['split']} split",
        f"`{results['command']}` — {results['date']}, dataset `{results['args']['dataset']}`, split "
        f"`{data['split']}`: {data['clips_used']} single-label clips of {len(data['labels'])} labels from "
        f"{len(data['sources'])} sources, seed {results['args']['seed']}"
        + (" (every label counted as its own source)." if results["args"].get("pair_by") == "label" else "."),
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable, {m['torch_threads']} torch threads), "
        f"torch {m['torch']}, Python {m['python']}.",
        ("Mixtures of real recordings no model trained on" if data["split"] == SPLIT else
         f"Mixtures of clips of the `{data['split']}` split") + ", made in memory: two or three single-label clips with "
        "different labels from different sources, each brought to the same active RMS (over its sounding "
        "frames), then offset (duos: the same two clips at 0, ±6 and ±12 dB; trios: equal, and one part 12 dB "
        "below the other two), summed, peak-normalised only if the sum would clip. Scored by the library's "
        f"analysis (`python -m instrusense analyze`). mAP: macro over the labels present in the row. Heard: at or "
        f"above the threshold ({thr:g}). All heard: every instrument present is heard. Quieter heard: the "
        "quietest part is heard; louder heard: the loudest part(s) are heard (unequal levels only). Extra: "
        "absent labels heard, per mixture.",
        _table(["model", "mixtures", "n", "mAP", "all heard %", "quieter heard %", "louder heard %", "extra"], rows)
        if rows
        else "_No model was available to evaluate._",
    ]
    alone_rows = [[name, g, r["mixtures"], _pct(r["parts_heard_alone"]), _pct(r["all_heard_alone"]),
                   _pct(r["kept"]), _pct(r["all_heard"])]
                  for name, info in models.items() for g, r in info["groups"].items() if "kept" in r]
    if alone_rows:
        parts.append("### Alone and together\nEvery part also scored alone: the same cut at the same level as in "
                     "its sum. Parts heard alone: the share of parts whose own label is heard when alone. All heard "
                     "alone: mixtures whose every part is. Kept: of those, the share whose every part is still "
                     "heard in the sum. A duo figure below the bar with a high *kept* is a recognition limit (the "
                     "parts are missed alone too); a low *kept* is masking.\n\n"
                     + _table(["model", "mixtures", "n", "parts heard alone %", "all heard alone %", "kept %",
                               "all heard %"], alone_rows))
    if results.get("skipped"):
        parts.append("Not evaluated: " + "; ".join(f"{k} ({v})" for k, v in results["skipped"].items()) + ".")
    ex = results["examples"]
    if ex.get("labels") and models:
        ex_rows = [[name, mode] + [_pct(info["examples"][mode]["confidence"][lab]) for lab in ex["labels"]]
                   + ["yes" if info["examples"][mode]["named_all"] else "**no**"]
                   for name, info in models.items() for mode in EXAMPLE_MODES if "examples" in info]
        parts.append(f"### Example: {' + '.join(f'`{f}`' for f in ex['files'])} summed 1:1\n"
                     "Equal gain, no level matching; cropped: " + ex["modes"]["cropped"] + "; padded: "
                     + ex["modes"]["padded"] + ". Confidences in %.\n\n"
                     + _table(["model", "mix"] + ex["labels"] + ["all named"], ex_rows))
    checks = []
    for name, info in models.items():
        duo = info["groups"].get(GROUPS[0])
        if duo and data["split"] == SPLIT:  # the bar is for real held-out duos
            checks.append([name, f"equal duos: both heard in ≥ {100 * EQUAL_DUOS_BAR:g} % of duos",
                           _pct(duo["all_heard"]), "yes" if duo["all_heard"] >= EQUAL_DUOS_BAR else "**no**"])
        if "examples" in info:
            conf = info["examples"]["cropped"]
            checks.append([name, "the example mix (cropped) names " + " and ".join(ex["labels"]),
                           " / ".join(_pct(v) for v in conf["confidence"].values()),
                           "yes" if conf["named_all"] else "**no**"])
    if checks:
        parts.append("### Issue 38's checks\n" + _table(["model", "check", "value", "passed"], checks))
    labels = [lab for lab in LABELS if any(lab in info["groups"].get(GROUPS[0], {}).get("per_label_heard", {})
                                           for info in models.values())]
    if labels:
        parts.append(f"### Per label, {GROUPS[0]}: share of its duos in which it is heard (%)\n" + _table(
            ["label"] + list(models), [[lab] + [_pct(info["groups"].get(GROUPS[0], {}).get("per_label_heard", {})
                                                    .get(lab, float("nan"))) for info in models.values()]
                                       for lab in labels]))
    paired = results.get("paired") or {}
    if paired:
        first = next(iter(models))
        parts.append(f"### Against {first}: all heard, difference in points (paired-bootstrap standard error)\n"
                     + _table(["model", "mixtures", "n", "difference", "SE"],
                              [[name, g, r["mixtures"], f"{100 * r['difference']:+.1f}", f"{100 * r['se']:.1f}"]
                               for name, rows_ in paired.items() for g, r in rows_.items()]))
    times = [f"{name} {info['seconds']:g} s" for name, info in models.items()]
    if times:
        parts.append("Time to score (all mixtures and the example): " + ", ".join(times) + ".")
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    configure_logging("INFO")
    argv = sys.argv[1:] if argv is None else argv
    (a,) = HfArgumentParser(RealMixtureArguments).parse_args_into_dataclasses(args=gather_models(argv))
    model_specs(a.model)  # a malformed --model fails here, before any data is read
    results = evaluate_mixtures(a, "python -m finetune.evaluation.real_mixtures " + shlex.join(argv))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(_json_safe(results), indent=1, ensure_ascii=False) + "\n")
    markdown = render_markdown(results)
    (out / "results.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
