"""Does pooling inside a window hide the quieter part of a mixture? A diagnostic on the shipped weights, no training.

    python -m finetune.evaluation.frame_pooling --dataset data/instruments-v6 --model shipped=models/instrusense:int8

Issue 38, item 3. `WhisperForAudioClassification` projects every encoder frame, takes the mean over the window's
frames and applies one linear layer; both layers are linear, so a window's logit of a label is the mean of that
label's frame logits. Here the frame logits are pooled three ways (the mean: the model as shipped; the maximum;
the mean of the top ``TOP_FRACTION`` of frames per label) and the real mixtures of
`finetune.evaluation.real_mixtures` (the same mixtures) and real-eval are scored through
`finetune.scoring.score_clips`, the CLI's windows and window pooling. The figures are threshold-free (both labels
of a duo in the top two, all three of a trio in the top three), since the poolings are calibrated differently;
all heard at the threshold and absent labels at it are shown beside them.
Writes results.json and results.md to --out and prints the markdown.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from transformers import HfArgumentParser

from finetune.data.clips import load_clips
from finetune.data.schema import DEFAULT_DATASET
from finetune.evaluation.evaluate import _json_safe, model_specs, part_mask
from finetune.evaluation.real_mixtures import SPLIT, Mixture, all_heard, as_clips, make_mixtures, paired_difference
from finetune.metrics import multi_hot, solo_mask
from finetune.scoring import score_clips
from instrusense.logs import configure_logging
from instrusense.model import load_tagger
from instrusense.settings import Settings
from instrusense.taxonomy import LABEL_INDEX

log = logging.getLogger("finetune.evaluation.frame_pooling")
POOLINGS = ("mean", "max", "top10")
TOP_FRACTION = 0.1


def pool_frames(frame_logits: torch.Tensor, pooling: str) -> torch.Tensor:
    """(batch, frames, labels) frame logits -> (batch, labels) window logits."""
    if pooling == "mean":
        return frame_logits.mean(dim=1)
    if pooling == "max":
        return frame_logits.amax(dim=1)
    if pooling == "top10":
        k = max(1, int(round(TOP_FRACTION * frame_logits.shape[1])))
        return frame_logits.topk(k, dim=1).values.mean(dim=1)
    raise ValueError(f"pooling is one of {POOLINGS}, got {pooling!r}")


class FramePooled(torch.nn.Module):
    """A `WhisperForAudioClassification` whose window logits pool the frame logits by ``pooling``."""

    def __init__(self, model: torch.nn.Module, pooling: str):
        super().__init__()
        self.model, self.pooling, self.config = model, pooling, model.config

    def forward(self, input_features: torch.Tensor, **_) -> SimpleNamespace:
        m = self.model
        encoded = m.encoder(input_features, output_hidden_states=m.config.use_weighted_layer_sum)
        if m.config.use_weighted_layer_sum:
            weights = torch.nn.functional.softmax(m.layer_weights, dim=-1)
            hidden = (torch.stack(encoded.hidden_states, dim=1) * weights.view(-1, 1, 1)).sum(dim=1)
        else:
            hidden = encoded.last_hidden_state
        return SimpleNamespace(logits=pool_frames(m.classifier(m.projector(hidden)), self.pooling))


def in_top(scores: np.ndarray, labels: list[list[str]]) -> np.ndarray:
    """Per row, whether every label present ranks among the top len(labels) scores."""
    out = []
    for s, labs in zip(scores, labels):
        top = set(np.argsort(-s, kind="stable")[:len(labs)].tolist())
        out.append(all(LABEL_INDEX[lab] in top for lab in labs))
    return np.asarray(out, bool)


def absent_heard(scores: np.ndarray, labels: list[list[str]], threshold: float) -> float:
    present = multi_hot(labels).astype(bool)
    return float(((scores >= threshold) & ~present).sum(axis=1).mean()) if len(scores) else float("nan")


@dataclass
class FramePoolingArguments:
    dataset: str = field(default=DEFAULT_DATASET)
    model: str = field(default="shipped=models/instrusense:int8", metadata={"help": "NAME=PATH[:int8] of a Whisper classifier"})
    duos: int = field(default=135)
    trios: int = field(default=90)
    seed: int = field(default=0)
    out: str = field(default="runs/frame-pooling")


def evaluate(a: FramePoolingArguments, command: str = "") -> dict:
    spec = model_specs([a.model])[0]
    settings = Settings()
    tagger = load_tagger(spec.path, 0, spec.int8, "cpu")
    mixtures: list[Mixture] = make_mixtures(load_clips(a.dataset, SPLIT), a.duos, a.trios, a.seed)
    groups = {g: [i for i, m in enumerate(mixtures) if m.group == g] for g in dict.fromkeys(m.group for m in mixtures)}
    real = load_clips(a.dataset, "real")
    keep = np.flatnonzero(solo_mask(multi_hot(real.labels)) & part_mask(real, "real-eval"))
    truth = multi_hot([real.labels[i] for i in keep]).argmax(axis=1)
    results = {"command": command, "args": vars(a), "threshold": settings.threshold, "groups": {g: len(ix) for g, ix
                                                                                               in groups.items()},
               "poolings": {}}
    mix_clips = as_clips(mixtures)
    labels = [m.labels for m in mixtures]
    shipped = score_clips(tagger, mix_clips.waves, settings)
    flags: dict[str, dict[str, np.ndarray]] = {}
    for pooling in POOLINGS:
        pooled = replace(tagger, model=FramePooled(tagger.model, pooling))
        scores = score_clips(pooled, mix_clips.waves, settings)
        real_scores = score_clips(pooled, [real.waves[i] for i in keep], settings)
        top, heard = in_top(scores, labels), all_heard(scores, labels, settings.threshold)
        flags[pooling] = {"top": top}
        row = {"max_abs_diff_to_model": float(np.abs(scores - shipped).max()),
               "real_eval_top1": int((real_scores.argmax(axis=1) == truth).sum()), "real_eval_clips": int(len(keep)),
               "groups": {g: {"in_top": float(top[ix].mean()), "all_heard": float(heard[ix].mean()),
                              "absent_heard": absent_heard(scores[ix], [labels[i] for i in ix], settings.threshold)}
                          for g, ix in groups.items()}}
        if pooling != "mean":
            for g, ix in groups.items():
                diff, se = paired_difference(flags["mean"]["top"][ix], top[ix])
                row["groups"][g]["in_top_vs_mean"] = {"difference": diff, "se": se, "one_mixture": 1 / len(ix)}
        results["poolings"][pooling] = row
        log.info("%s: %s", pooling, json.dumps(row))
    return results


def render_markdown(r: dict) -> str:
    lines = [f"# Frame pooling inside a window (issue 38, item 3)", "", f"`{r['command']}`", "",
             "| pooling | group | present in the top k | vs mean (SE) | all heard at "
             f"{r['threshold']} | absent heard per mixture |", "|---|---|---|---|---|---|"]
    for p, row in r["poolings"].items():
        for g, f in row["groups"].items():
            vs = f.get("in_top_vs_mean")
            vs = f"{100 * vs['difference']:+.1f} ({100 * vs['se']:.1f})" if vs else "–"
            lines.append(f"| {p} | {g} | {100 * f['in_top']:.1f} % | {vs} | {100 * f['all_heard']:.1f} % | "
                         f"{f['absent_heard']:.2f} |")
    lines += ["", "| pooling | real-eval top-1 | largest difference to the model's own scores |", "|---|---|---|"]
    lines += [f"| {p} | {row['real_eval_top1']} / {row['real_eval_clips']} | {row['max_abs_diff_to_model']:.4f} |"
              for p, row in r["poolings"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    argv = sys.argv[1:] if argv is None else argv
    (a,) = HfArgumentParser(FramePoolingArguments).parse_args_into_dataclasses(args=argv)
    results = evaluate(a, "python -m finetune.evaluation.frame_pooling " + shlex.join(argv))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(_json_safe(results), indent=1))
    md = render_markdown(results)
    (out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
