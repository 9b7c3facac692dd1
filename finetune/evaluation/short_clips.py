"""How well short recordings are named: real single-instrument clips cut to their loudest 0.1 / 0.25 / 0.5 s.

    python -m finetune.evaluation.short_clips --models runs/a models/instrusense [--dataset data/instruments-v9]

Issue 27 asks that 0.1–0.5 s recordings (a drum one-shot, a staccato note, a sample-library file) are
analysed and score like long ones. Every cut is scored as `python -m instrusense analyze` scores a file of
that length (int8 on the CPU, `finetune.scoring.score_clips`); the table gives, per split and
length, the top-1 accuracy and the share of clips whose right label reaches the threshold (what the app
shows as playing), beside the same clips whole.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field, replace

import numpy as np
from transformers import HfArgumentParser

from finetune.data.clips import Clips, load_clips
from finetune.data.schema import DEFAULT_DATASET, SAMPLE_RATE
from finetune.evaluation.evaluate import hf_scorer
from finetune.metrics import multi_hot, solo_mask
from instrusense.logs import configure_logging
from instrusense.model import ModelUnavailableError
from instrusense.settings import Settings

log = logging.getLogger("finetune.evaluation.short_clips")


def loudest(wave: np.ndarray, seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The ``seconds`` of ``wave`` with the most energy (the whole wave when it is not longer): where a
    short recording of the same instrument would have been cut."""
    n = max(1, int(round(seconds * sample_rate)))
    if len(wave) <= n:
        return wave
    energy = np.cumsum(np.concatenate([[0.0], wave.astype(np.float64) ** 2]))
    start = int(np.argmax(energy[n:] - energy[:-n]))
    return wave[start:start + n]


def short_clip_rows(scorer, clips: Clips, seconds: tuple[float, ...], threshold: float) -> dict[str, dict]:
    """length -> {clips, top1, heard} over the single-label clips: ``heard`` is the share whose right label
    reaches ``threshold``."""
    y = multi_hot(clips.labels)
    solo = solo_mask(y)
    label = y[solo].argmax(axis=1)
    rows = {}
    for sec in (*seconds, None):
        cut = clips if sec is None else replace(clips, waves=[loudest(w, sec) for w in clips.waves])
        scores = scorer(cut)[solo]
        rows["whole" if sec is None else f"{sec:g} s"] = {
            "clips": len(label), "top1": float(np.mean(scores.argmax(axis=1) == label)),
            "heard": float(np.mean(scores[np.arange(len(label)), label] >= threshold))}
    return rows


@dataclass
class ShortClipArguments:
    models: list[str] = field(metadata={"help": "model folders to compare"})
    dataset: str = field(default=DEFAULT_DATASET, metadata={"help": "built dataset with real splits"})
    splits: list[str] = field(default_factory=lambda: ["real", "real_heldout"])
    seconds: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5])


def main(argv: list[str] | None = None) -> int:
    configure_logging("INFO")
    (a,) = HfArgumentParser(ShortClipArguments).parse_args_into_dataclasses(args=argv)
    lengths = [f"{s:g} s" for s in a.seconds] + ["whole"]
    print("| model | split | clips | " + " | ".join(f"{n}: top-1 / heard" for n in lengths) + " |")
    print("|---|---|---|" + "---|" * len(lengths))
    try:
        for model in a.models:
            scorer, _ = hf_scorer(model, 32, quantize=True, device="cpu")
            for split in a.splits:
                rows = short_clip_rows(scorer, load_clips(a.dataset, split), tuple(a.seconds), Settings().threshold)
                cells = [f"{100 * rows[n]['top1']:.1f} / {100 * rows[n]['heard']:.1f}" for n in lengths]
                print(f"| {model} | {split} | {rows['whole']['clips']} | " + " | ".join(cells) + " |")
    except (OSError, KeyError, ValueError, ModelUnavailableError) as err:
        log.error("%s", err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
