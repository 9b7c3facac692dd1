"""May a candidate replace the shipped model? The README's selection rule, as a command.

    python -m finetune.evaluation.selection --candidate DIR [--dataset data/instruments-v2] [--shipped models/instrusense]

All three parts must hold:

1. validation mAP over all held-out clips (solo and mixtures together) is higher than the shipped model's;
2. on the real recordings outside real-eval (the lmms and sonic-pi sample sets) mAP, top-1 and top-3 are
   not lower: after repeated warm restarts the held-out SoundFont stopped tracking real recordings;
3. every bar of the issue on the held-out clips that the shipped model meets, the candidate meets too.

Real-eval plays no part in the choice: it is the measurement, not a target. Exit status 0 when the candidate
passes, 1 when it does not, 2 on an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from transformers import HfArgumentParser

from finetune.data.clips import Clips, load_clips
from finetune.evaluation.evaluate import BARS, hf_scorer, part_mask, score_parts
from finetune.evaluation.metrics import mean_average_precision, multi_hot, part_metrics
from instrusense.logs import configure_logging
from instrusense.model import ModelUnavailableError

log = logging.getLogger("finetune.evaluation.selection")
HELD_OUT = "real-eval"  # the real recordings no choice may look at
VALIDATION = "validation mAP (all held-out clips)"


def rule_metrics(scores: dict[str, np.ndarray], splits: dict[str, Clips]) -> dict[str, float]:
    """The numbers the rule compares, from clip scores of the validation and real splits."""
    val, real = splits["validation"], splits["real"]
    outside = ~part_mask(real, HELD_OUT)
    rest = part_metrics(scores["real"][outside], multi_hot(real.labels)[outside])
    rows = score_parts(scores, splits)
    out = {VALIDATION: mean_average_precision(scores["validation"], multi_hot(val.labels)),
           "real outside real-eval: mAP": rest["mAP"],
           "real outside real-eval: top-1": rest["top1"],
           "real outside real-eval: top-3": rest["top3"]}
    for row, metric, _ in BARS:
        if row in rows and HELD_OUT not in row:
            out[f"{row}: {metric}"] = rows[row][metric]
    return out


def judge(candidate: dict[str, float], shipped: dict[str, float]) -> list[tuple[str, bool]]:
    """(check, passed) for every part of the rule."""
    checks = [(f"{VALIDATION} higher", candidate[VALIDATION] > shipped[VALIDATION])]
    checks += [(f"{k} not lower", candidate[k] >= shipped[k]) for k in candidate if k.startswith("real outside")]
    for row, metric, minimum in BARS:
        key = f"{row}: {metric}"
        if key in shipped and shipped[key] >= minimum:
            checks.append((f"{key} ≥ {minimum:g} (met by the shipped model)", candidate[key] >= minimum))
    return checks


def report(candidate: dict[str, float], shipped: dict[str, float], checks: list[tuple[str, bool]]) -> str:
    lines = ["| metric | candidate | shipped |", "|---|---|---|"]
    lines += [f"| {k} | {candidate[k]:.4f} | {shipped[k]:.4f} |" for k in candidate]
    lines += ["", "| check | passed |", "|---|---|"]
    lines += [f"| {c} | {'yes' if ok else '**no**'} |" for c, ok in checks]
    verdict = "may replace" if all(ok for _, ok in checks) else "may not replace"
    return "\n".join(lines) + f"\n\nThe candidate {verdict} the shipped model."


@dataclass
class SelectionArguments:
    candidate: str = field(metadata={"help": "model directory saved by finetune.train or finetune.average"})
    shipped: str = field(default="models/instrusense", metadata={"help": "the model it would replace"})
    dataset: str = field(default="data/instruments-v2", metadata={"help": "has the validation and real splits"})
    batch_size: int = field(default=32)
    device: str = field(default="auto")


def main(argv: list[str] | None = None) -> int:
    configure_logging("INFO")
    (args,) = HfArgumentParser(SelectionArguments).parse_args_into_dataclasses(args=argv)
    try:
        splits = {s: load_clips(args.dataset, s) for s in ("validation", "real")}
        metrics = {}
        for name in (args.candidate, args.shipped):
            scorer, _ = hf_scorer(name, args.batch_size, device=args.device)
            metrics[name] = rule_metrics({s: scorer(c) for s, c in splits.items()}, splits)
            log.info("scored %s", name)
    except (OSError, ValueError, KeyError, ModelUnavailableError) as err:
        log.error("%s", err)
        return 2
    candidate, shipped = metrics[args.candidate], metrics[args.shipped]
    checks = judge(candidate, shipped)
    print(report(candidate, shipped, checks))
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
