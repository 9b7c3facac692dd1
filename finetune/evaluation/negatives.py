"""How often a model stays quiet on sounds that are no instrument: the held-out ``negatives`` split.

    python -m finetune.evaluation.negatives --model models/instrusense [--dataset data/instruments-v9] [--out DIR]

Every clip is scored as `python -m instrusense analyze` scores a file (`finetune.scoring.score_clips`,
int8 on the CPU as the app runs by default); a clip is *clean* when no label reaches the threshold
(`instrusense.settings`), i.e. the CLI, app and API say "No instrument detected". Reports the clean
fraction overall, per source (FSDD, espeak, noise, clicks, hum, tone, sweep, silence, mixture) and per group
(speech, generated), and which labels fire how often. The bar (issue 27): at least 90 % clean.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers import HfArgumentParser

from finetune.data.clips import load_clips
from finetune.data.rows.negatives import HELDOUT_SPLIT, SPEECH
from finetune.data.schema import DEFAULT_DATASET
from finetune.scoring import score_clips
from instrusense.logs import configure_logging
from instrusense.settings import Settings
from instrusense.taxonomy import LABELS

log = logging.getLogger("finetune.evaluation.negatives")

BAR = 0.90


@dataclass
class NegativesArguments:
    model: str = field(metadata={"help": "checkpoint folder (or hub id) to score"})
    dataset: str = field(default=DEFAULT_DATASET, metadata={
        "help": "dataset folder built with --negatives (has the 'negatives' split)"})
    split: str = field(default=HELDOUT_SPLIT, metadata={"help": "split of negative clips to score"})
    out: str | None = field(default=None, metadata={"help": "folder for negatives.json and negatives.md"})
    float32: bool = field(default=False, metadata={"help": "score in float32 instead of the app's int8"})
    limit: int | None = field(default=None, metadata={"help": "score a seeded random subset of this many clips"})


def group_of(source: str) -> str:
    return "speech" if source in SPEECH else "generated"


def summarise(scores: np.ndarray, sources: list[str], threshold: float) -> dict:
    """Clean fractions overall, per group and per source, and the labels at or above the threshold."""
    fired = scores >= threshold
    clean = ~fired.any(axis=1)

    def part(mask: np.ndarray) -> dict:
        labels = Counter({LABELS[j]: int(fired[mask, j].sum()) for j in range(len(LABELS)) if fired[mask, j].any()})
        return {"clips": int(mask.sum()), "clean": float(clean[mask].mean()) if mask.any() else float("nan"),
                "labels_fired": dict(labels.most_common()),
                "mean_top_confidence": float(scores[mask].max(axis=1).mean()) if mask.any() else float("nan")}

    src = np.array(sources)
    groups = np.array([group_of(s) for s in sources])
    return {"threshold": threshold, "bar": BAR, "all": part(np.ones(len(sources), bool)),
            "groups": {g: part(groups == g) for g in sorted(set(groups))},
            "sources": {s: part(src == s) for s in sorted(set(sources))}}


def render_markdown(summary: dict, model: str, dataset: str) -> str:
    rows = [("**all**", summary["all"])] + [(f"*{g}*", v) for g, v in summary["groups"].items()] + list(
        summary["sources"].items())
    lines = [f"Held-out negatives of `{dataset}` scored by `{model}` (threshold {summary['threshold']:g}; "
             f"clean = no label at or above it; bar {BAR:.0%})", "",
             "| part | clips | clean | mean top confidence | labels that fire (clips) |", "|---|---|---|---|---|"]
    for name, v in rows:
        fired = ", ".join(f"{k} {n}" for k, n in list(v["labels_fired"].items())[:6]) or "none"
        lines.append(f"| {name} | {v['clips']} | {v['clean']:.1%} | {v['mean_top_confidence']:.2f} | {fired} |")
    return "\n".join(lines) + "\n"


def evaluate_negatives(model: str, dataset: str | Path, split: str = HELDOUT_SPLIT, quantize: bool = True,
                       limit: int | None = None) -> dict:
    from instrusense.model import load_tagger

    clips = load_clips(dataset, split, limit=limit)
    if not len(clips):
        raise ValueError(f"{dataset}: split {split!r} is empty")
    tagger = load_tagger(model, 0, quantize, "cpu" if quantize else "auto")
    settings = Settings()  # the shipped defaults, not the shell's INSTRUSENSE_* variables
    return summarise(score_clips(tagger, clips.waves, settings), clips.sources, settings.threshold)


def main(argv: list[str] | None = None) -> int:
    configure_logging("INFO")
    (a,) = HfArgumentParser(NegativesArguments).parse_args_into_dataclasses(args=argv)
    try:
        summary = evaluate_negatives(a.model, a.dataset, a.split, not a.float32, a.limit)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        log.error("cannot evaluate negatives: %s", exc)
        return 2
    markdown = render_markdown(summary, a.model, a.dataset)
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "negatives.json").write_text(json.dumps(summary, indent=1) + "\n")
        (out / "negatives.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
