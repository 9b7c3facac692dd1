"""One command, one table: every model on the same held-out and real clips, scored the same way.

    python -m finetune.evaluation.evaluate [--dataset data/instruments-v9] --model mfcc=runs/baselines/mfcc \
        --model ast=runs/baselines/ast/model --model whisper=models/instrusense \
        --model whisper_int8=models/instrusense:int8 --out finetune/results \
        [--card models/instrusense/README.md] [--limit N] [--carry_over]

`--model NAME=PATH` (repeatable; the table lists the models in that order) names a model and where it is; its
kind comes from the path: a folder with `model.npz` is an MFCC baseline (`finetune.evaluation.baselines`), a
folder with `config.json` a `transformers` checkpoint, anything else that looks like a Hub id (`owner/name`)
is loaded from the Hub. `PATH:int8` scores a `transformers` model with dynamic int8 linears on the CPU, as
the app runs by default. `NAME=` (no path) names a model that is not scored here (see `--carry_over`).
The names `mfcc`, `ast`, `whisper` and `whisper_int8` get their long titles in the table; the model named
`whisper` (`--tuned` names another) is the one the bars, the per-label tables and the card's metrics are
about, and every other model with another checkpoint is a baseline it must beat.

Rows: model × part — validation solo clips, validation mixtures (the held-out SoundFont, never seen
in training), real recordings (all) and the shared/real-eval subset alone. Columns: clips, top-1,
top-3, family accuracy, mAP, macro F1 (threshold 0.5); per-label F1 for every row in results.json.
Every model is scored by `finetune.scoring.score_clips`: the library's own analysis, so a
clip's scores are what `python -m instrusense analyze` reports for a file of that length. A model whose path is
missing (or not given) is skipped with a note. Writes results.json and results.md to --out; with --card, the
markdown also goes between `<!-- eval:start -->` and `<!-- eval:end -->` of a model card.
`--from_results` re-renders the markdown (and the card) from an existing results.json.
`--carry_over` keeps the rows of a model that is not on this machine (a baseline that takes an hour to
retrain) from the results.json already in --out, when they were scored on the same clips; the table
says which rows were carried and from when.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import HfArgumentParser

from finetune.data.clips import Clips, load_clips
from finetune.data.schema import DEFAULT_DATASET
from finetune.metrics import multi_hot, part_metrics, solo_mask
from finetune.model_card import update_card
from finetune.scoring import score_clips
from instrusense.logs import configure_logging
from instrusense.model import ModelUnavailableError
from instrusense.settings import Settings
from instrusense.taxonomy import LABELS

log = logging.getLogger("finetune.evaluation.evaluate")

FINE_TUNED = "whisper"  # the default --tuned
DEFAULT_MODELS = ("mfcc=runs/baselines/mfcc", "ast=runs/baselines/ast/model", f"{FINE_TUNED}=models/instrusense")
MFCC_MARKER, HF_MARKER, INT8_SUFFIX = "model.npz", "config.json", ":int8"
MODEL_TITLES = {
    "mfcc": "MFCC statistics + logistic regression",
    "ast": "small AST from scratch",
    "whisper": "fine-tuned Whisper-base",
    "whisper_int8": "fine-tuned Whisper-base, int8 (the app's default on CPUs)",
}
# (row name, split, which clips of the split)
PARTS = (
    ("validation solo", "validation", "solo"),
    ("validation mixtures", "validation", "mixtures"),
    ("real (all)", "real", "all"),
    ("real-eval only", "real", "real-eval"),
    ("real held-out sources", "real_heldout", "all"),  # sample libraries held out of training (issue 27)
)
# The quality bars: (row, metric, minimum).
BARS = (
    ("validation solo", "top1", 0.85),
    ("validation solo", "family", 0.95),
    ("validation mixtures", "mAP", 0.80),
    ("real-eval only", "top1", 0.75),
    ("real held-out sources", "top1", 0.75),
)
MIN_REAL_EVAL_LABEL_TOP1 = 0.50  # no real-eval label below this (issue 27)


@dataclass
class EvalArguments:
    dataset: str = field(default=DEFAULT_DATASET, metadata={"help": "DatasetDict with validation and real"})
    model: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS), metadata={
        "help": "NAME=PATH, repeatable, in table order: an MFCC baseline folder (model.npz), a transformers "
                "checkpoint folder (config.json) or Hub id; PATH:int8 scores a transformers model in dynamic int8 "
                "on the CPU; NAME= (no path) is not scored (its rows can be carried over)"})
    tuned: str = field(default=FINE_TUNED, metadata={
        "help": "the model (by NAME) that the bars, the per-label tables and the card's metrics are about"})
    out: str = field(default="finetune/results", metadata={"help": "folder for results.json and results.md"})
    card: str | None = field(default=None, metadata={"help": "model card README.md to refresh between the markers"})
    limit: int | None = field(default=None, metadata={"help": "score at most N clips per split (quick runs)"})
    seed: int = field(default=0, metadata={"help": "seed of the --limit subset"})
    batch_size: int = field(default=32)
    threads: int = field(default=0, metadata={"help": "torch threads (0: torch default)"})
    device: str = field(default="auto", metadata={"help": "auto (a CUDA GPU when there is one), cpu, cuda or cuda:N"})
    from_results: bool = field(default=False, metadata={"help": "only re-render out/results.json (and the card)"})
    carry_over: bool = field(default=False, metadata={
        "help": "a model not given or missing keeps its rows from out/results.json if scored on the same clips"})


@dataclass(frozen=True)
class ModelSpec:
    """One `--model NAME=PATH[:int8]`."""

    name: str
    path: str  # "" when not given
    int8: bool = False

    @classmethod
    def parse(cls, spec: str) -> ModelSpec:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--model takes NAME=PATH (PATH may end in {INT8_SUFFIX}), got {spec!r}")
        int8 = path.endswith(INT8_SUFFIX)
        return cls(name.strip(), path[:-len(INT8_SUFFIX)] if int8 else path, int8)


def model_specs(values: list[str]) -> list[ModelSpec]:
    specs = [ModelSpec.parse(v) for v in values]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"--model names must differ, got {names}")
    return specs


def gather_models(argv: list[str]) -> list[str]:
    """`--model A --model B C` (or `--model=A`) as one `--model A B C` at the end, so the flag repeats."""
    rest, values, seen, i = [], [], False, 0
    while i < len(argv):
        if argv[i] == "--model":
            seen, i = True, i + 1
            while i < len(argv) and not argv[i].startswith("--"):
                values.append(argv[i])
                i += 1
        elif argv[i].startswith("--model="):
            seen = True
            values.append(argv[i][len("--model="):])
            i += 1
        else:
            rest.append(argv[i])
            i += 1
    return rest + (["--model", *values] if seen else [])


def model_kind(path: str) -> str | None:
    """"mfcc" (a folder with model.npz), "transformers" (a folder with config.json), "hub" (nothing here, but a
    Hub id's shape: `name` or `owner/name`), or None (a local path with neither marker)."""
    local = Path(path)
    if (local / MFCC_MARKER).is_file():
        return "mfcc"
    if (local / HF_MARKER).is_file():
        return "transformers"
    if not local.exists() and not path.startswith((".", "/", "~")) and path.count("/") <= 1:
        return "hub"
    return None


def title(name: str) -> str:
    return MODEL_TITLES.get(name, name)


# ------------------------------------------------------------------------------------------- scoring


def part_mask(clips: Clips, which: str) -> np.ndarray:
    solo = solo_mask(multi_hot(clips.labels))
    if which == "solo":
        return solo
    if which == "mixtures":
        return ~solo
    if which == "all":
        return np.ones(len(clips), bool)
    return np.asarray([s == which for s in clips.sources], bool)  # one recording set


def score_parts(scores: dict[str, np.ndarray], splits: dict[str, Clips]) -> dict[str, dict]:
    """Row name -> metrics, for the rows whose split was scored and that hold clips."""
    rows = {}
    for name, split, which in PARTS:
        if split not in scores:
            continue
        mask = part_mask(splits[split], which)
        if mask.any():
            rows[name] = part_metrics(scores[split][mask], multi_hot(splits[split].labels)[mask])
    return rows


def hf_scorer(path: str, batch_size: int, quantize: bool = False, device: str = "auto"):
    """Clip scorer for a `transformers` checkpoint over the taxonomy's labels (trained by finetune.train), loaded
    as the app and CLI load it; `quantize`: dynamic int8 linears, which run on CPUs only."""
    if quantize:
        device = "cpu"
    from instrusense.model import load_tagger

    tagger = load_tagger(path, 0, quantize, device)
    names = [tagger.model.config.id2label[i] for i in range(tagger.model.config.num_labels)]
    if tuple(names) != LABELS:
        raise ValueError(f"{path}: outputs are not the taxonomy labels in order (got {names[:4]}...)")
    settings = replace(Settings(), batch_size=batch_size)
    info = {"path": path, "type": tagger.model.config.model_type,
            "window_seconds": tagger.native_window_seconds or settings.window_seconds,
            "parameters": int(sum(p.numel() for p in tagger.model.parameters())), "device": str(tagger.device)}
    return (lambda clips: score_clips(tagger, clips.waves, settings)), info


def mfcc_scorer(path: str, batch_size: int, quantize: bool = False, device: str = "cpu"):
    if quantize:
        raise ValueError(f"{path}: {INT8_SUFFIX} applies to transformers checkpoints, not to an MFCC baseline")
    from finetune.evaluation.baselines import MfccBaseline

    model = MfccBaseline.load(path)
    info = {"path": path, "type": "mfcc-logreg", "window_seconds": model.window_seconds,
            "parameters": int(model.coef.size + model.intercept.size)}
    return (lambda clips: score_clips(model, clips.waves)), info


def make_scorer(spec: ModelSpec, batch_size: int, device: str = "auto", kind: str | None = None):
    """`(scorer, info, note)` for one `--model NAME=PATH[:int8]`: the scorer of the model's kind (read from
    the path, or `kind` when already read), or `(None, None, why)` when there is no model to score (no path,
    a path with neither marker, a Hub id that cannot be loaded)."""
    kind = kind or (model_kind(spec.path) if spec.path else None)
    note = f"no {HF_MARKER} or {MFCC_MARKER} at {spec.path}" if spec.path else "not given"
    if kind == "hub":
        try:
            return (*hf_scorer(spec.path, batch_size, quantize=spec.int8, device=device), "")
        except ModelUnavailableError:
            return None, None, f"could not load {spec.path} (no such folder here, nor on the Hub)"
    if kind is None:
        return None, None, note
    make = mfcc_scorer if kind == "mfcc" else hf_scorer
    return (*make(spec.path, batch_size, quantize=spec.int8, device=device), "")


def clips_fingerprint(splits: dict[str, Clips]) -> str:
    """SHA-1 of every scored clip (audio and labels), so carried-over rows provably share the clips."""
    h = hashlib.sha1()
    for name in sorted(splits):
        clips = splits[name]
        h.update(name.encode())
        for wave, labels, source in zip(clips.waves, clips.labels, clips.sources):
            h.update(np.ascontiguousarray(wave, np.float32).tobytes())
            h.update(json.dumps([labels, source]).encode())
    return h.hexdigest()


def split_fingerprints(splits: dict[str, Clips]) -> dict[str, str]:
    """:func:`clips_fingerprint` of each split alone: rows carry over split by split, through any number of
    builds that change other splits."""
    return {name: clips_fingerprint({name: clips}) for name, clips in splits.items()}


def carried_rows(previous: dict, key: str, splits: dict[str, Clips], row_clips: dict[str, int],
                 args: dict) -> dict | None:
    """`key`'s entry from an earlier results.json, if that run scored the same clips: its rows, on the
    splits it scored (a dataset with a newer or changed split still carries the rows of the splits it shares).

    Files with one fingerprint of all their splits are matched on the splits that model scored; files
    written before fingerprints existed, on dataset, subset and clip count per row.
    """
    info = previous.get("models", {}).get(key)
    if info is None:
        return None
    scored = {split for name, split, _ in PARTS if name in info["rows"]}
    if "clips_sha1_by_split" in previous:
        now = split_fingerprints({s: splits[s] for s in scored & splits.keys()})
        same = scored <= splits.keys() and all(previous["clips_sha1_by_split"].get(s) == now[s] for s in scored)
    elif "clips_sha1" in previous:
        same = scored <= splits.keys() and previous["clips_sha1"] == clips_fingerprint({s: splits[s] for s in scored})
    else:
        was = previous.get("args", {})
        same = (all(was.get(k) == args.get(k) for k in ("dataset", "limit", "seed"))
                and {r: m["clips"] for r, m in info["rows"].items()} == {r: n for r, n in row_clips.items()
                                                                       if r in info["rows"]})
    if not same:
        return None
    return {**info, "carried_over_from": info.get("carried_over_from") or previous.get("date")}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}


def evaluate(a: EvalArguments, command: str = "") -> dict:
    plan = [(spec, model_kind(spec.path) if spec.path else None) for spec in model_specs(a.model)]
    for spec, kind in plan:
        if spec.int8 and kind == "mfcc":
            raise ValueError(f"{spec.path}: {INT8_SUFFIX} applies to transformers checkpoints, not to an MFCC baseline")
    if a.threads:
        torch.set_num_threads(a.threads)
    started = time.time()
    present = datasets.load_from_disk(a.dataset).keys()  # older builds lack the newer splits
    splits = {s: load_clips(a.dataset, s, a.limit, a.seed) for s in dict.fromkeys(p[1] for p in PARTS) if s in present}
    log.info("data: %s (%.0f s)", {k: len(v) for k, v in splits.items()}, time.time() - started)
    results = {"command": command, "date": datetime.datetime.now().isoformat(timespec="seconds"),
               "args": asdict(a), "machine": machine(), "clips_sha1": clips_fingerprint(splits),
               "clips_sha1_by_split": split_fingerprints(splits),
               "models": {}, "skipped": {}}
    previous_file = Path(a.out) / "results.json"
    previous = json.loads(previous_file.read_text()) if a.carry_over and previous_file.is_file() else {}
    row_clips = {name: n for name, split, which in PARTS
                 if split in splits and (n := int(part_mask(splits[split], which).sum()))}
    for spec, kind in plan:
        key = spec.name
        t0 = time.time()
        scorer, info, note = make_scorer(spec, a.batch_size, a.device, kind)
        if scorer is None:
            carried = carried_rows(previous, key, splits, row_clips, results["args"])
            if carried is not None:
                log.info("%s: %s; rows carried over from %s", title(key), note, carried["carried_over_from"])
                results["models"][key] = carried
                continue
            log.warning("skipping %s: %s", title(key), note)
            results["skipped"][key] = note
            continue
        scores = {name: scorer(clips) for name, clips in splits.items()}
        info["seconds"] = round(time.time() - t0, 1)
        info["rows"] = score_parts(scores, splits)
        results["models"][key] = info
        log.info("%s: %s (%.0f s)", key, json.dumps({r: {k: v for k, v in m.items() if k != "per_label_f1"}
                                                     for r, m in info["rows"].items()}), info["seconds"])
    results["bars"] = check_bars(results["models"], a.tuned)
    return results


# ------------------------------------------------------------------------------------------ reporting


def check_bars(models: dict, tuned_name: str = FINE_TUNED) -> list[dict]:
    """The issue's bars for the fine-tuned model, and whether it beats each baseline (every other model with
    another checkpoint) on every row (top-1 on solo rows, mAP on the mixture row)."""
    out = []
    tuned = models.get(tuned_name)
    if tuned is None:
        return out
    for row, metric, minimum in BARS:
        value = tuned["rows"].get(row, {}).get(metric, float("nan"))
        out.append({"check": f"{row}: {metric} ≥ {minimum:g}", "value": value,
                    "passed": bool(value >= minimum) if not math.isnan(value) else None})
    per_label = tuned["rows"].get("real-eval only", {}).get("per_label_top1", {})
    if per_label:
        worst = min(per_label, key=per_label.get)
        out.append({"check": f"real-eval only: every label's top1 ≥ {MIN_REAL_EVAL_LABEL_TOP1:g} (lowest: {worst})",
                    "value": per_label[worst], "passed": bool(per_label[worst] >= MIN_REAL_EVAL_LABEL_TOP1)})
    for base in models:
        if base == tuned_name or models[base].get("path") == tuned.get("path"):
            continue
        for row, _, which in PARTS:
            metric = "mAP" if which == "mixtures" else "top1"
            if row not in tuned["rows"] or row not in models[base]["rows"]:
                continue
            mine, theirs = tuned["rows"][row][metric], models[base]["rows"][row][metric]
            out.append({"check": f"{row}: {metric} beats {title(base)}", "value": mine, "baseline": theirs,
                        "passed": bool(mine > theirs)})
    return out


def _pct(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _num(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _hits(row: dict, label: str) -> str:
    if label not in row["per_label_top1"]:
        return "–"
    n = row["per_label_clips"][label]
    return f"{round(row['per_label_top1'][label] * n)}/{n}"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def render_markdown(results: dict) -> str:
    models = results["models"]
    m = results["machine"]
    tuned_name = results["args"].get("tuned", FINE_TUNED)
    rows = []
    for key, info in models.items():
        for name, _, _ in PARTS:
            if name in info["rows"]:
                r = info["rows"][name]
                rows.append([title(key), name, r["clips"], _pct(r["top1"]), _pct(r["top3"]), _pct(r["family"]),
                             _num(r["mAP"]), _num(r["macro_f1"])])
    parts = [
        "## Evaluation",
        f"`{results['command']}` — {results['date']}, dataset `{results['args']['dataset']}`"
        + (f", at most {results['args']['limit']} clips per split" if results["args"].get("limit") else "") + ".",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable, {m['torch_threads']} torch threads), "
        f"torch {m['torch']}, Python {m['python']}.",
        "Validation = a SoundFont never used in training (held-out source); real = real recordings "
        "(shared/real-eval + Debian samples), never used in training. Clip scores: the library's analysis "
        "(`python -m instrusense analyze`: windows, a recording shorter than one window heard padded and looped, "
        "silent ones skipped, top windows pooled). Top-1/top-3/family in %: on mixtures a hit is a top prediction "
        "naming (the family of) one instrument present. mAP: macro over the labels present in the row. "
        "Macro F1 at threshold 0.5.",
        _table(["model", "split", "clips", "top-1", "top-3", "family", "mAP", "macro F1"], rows) if rows
        else "_No model was available to evaluate._",
    ]
    carried = {k: v["carried_over_from"] for k, v in models.items() if v.get("carried_over_from")}
    if carried:
        parts.append("Carried over unchanged from an earlier run of this command on the same clips (the checkpoint "
                     "was not on this machine): " + "; ".join(f"{title(k)} (scored {d})"
                                                             for k, d in carried.items()) + ".")
    if results.get("skipped"):
        parts.append("Not evaluated: " + "; ".join(f"{title(k)} ({v})" for k, v in results["skipped"].items())
                     + ".")
    if results.get("bars"):
        parts.append("### Bars (fine-tuned model)\n" + _table(
            ["check", "value", "baseline", "passed"],
            [[b["check"], _num(b["value"]), _num(b.get("baseline")),
              {True: "yes", False: "**no**", None: "–"}[b["passed"]]] for b in results["bars"]]))
    tuned = models.get(tuned_name)
    if tuned:
        names = [n for n, _, _ in PARTS if n in tuned["rows"]]
        label_rows = [[label] + [_num(tuned["rows"][n]["per_label_f1"].get(label, float("nan"))) for n in names]
                      for label in LABELS]
        parts.append(f"### Per-label F1 ({title(tuned_name)}, threshold 0.5; – = label absent)\n"
                     + _table(["label"] + names, label_rows))
        real = [n for n in names if n.startswith("real") and tuned["rows"][n].get("per_label_top1")]
        if real:
            top1_rows = [[label] + [_hits(tuned["rows"][n], label) for n in real] for label in LABELS
                         if any(label in tuned["rows"][n]["per_label_top1"] for n in real)]
            parts.append(f"### Per-label top-1 on real recordings ({title(tuned_name)}; single-label clips, "
                         "hits of clips)\n" + _table(["label"] + real, top1_rows))
    return "\n\n".join(parts) + "\n"


def _json_safe(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def main(argv: list[str] | None = None) -> int:
    configure_logging("INFO")
    argv = sys.argv[1:] if argv is None else argv
    (a,) = HfArgumentParser(EvalArguments).parse_args_into_dataclasses(args=gather_models(argv))
    model_specs(a.model)  # a malformed --model fails here, before any data is read
    out = Path(a.out)
    if a.from_results:
        results = json.loads((out / "results.json").read_text())  # NaN were written as null
    else:
        results = evaluate(a, "python -m finetune.evaluation.evaluate " + shlex.join(argv))
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(_json_safe(results), indent=2, ensure_ascii=False) + "\n")
    markdown = render_markdown(results)
    (out / "results.md").write_text(markdown)
    if a.card:
        update_card(a.card, markdown, results, results["args"].get("tuned", FINE_TUNED))
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
