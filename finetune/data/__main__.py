"""Build the instrument dataset: rendered train/validation splits plus a real-recordings split.

    python -m finetune.data --out data/instruments --hours 3 --seed 0

writes a ``datasets.DatasetDict`` (``save_to_disk``) with splits ``train`` (rendered, training
sources), ``validation`` (rendered, held-out sample libraries only) and ``real`` (real recordings,
evaluation only), and a dataset card (README.md) with counts, measured throughput and size.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from transformers import HfArgumentParser

from finetune.data.build import DEFAULT_HOLDOUT, build
from finetune.data.real import REAL_EVAL_DIR
from finetune.data.sources import SOURCES
from instrusense.logs import configure_logging

log = logging.getLogger("finetune.data")


@dataclass
class DataBuildArguments:
    out: str = field(metadata={"help": "output folder (DatasetDict + README.md card)"})
    hours: float = field(default=1.0, metadata={"help": "rendered audio (train + validation), hours"})
    seed: int = field(default=0, metadata={"help": "render seed (same seed, same dataset)"})
    clip_seconds: float = field(default=4.0, metadata={"help": "length of every rendered clip"})
    holdout: list[str] = field(default_factory=lambda: list(DEFAULT_HOLDOUT), metadata={
        "help": "sample libraries held out of training; they alone make the validation split",
        "choices": sorted(SOURCES)})
    sources: list[str] | None = field(default=None, metadata={
        "help": "libraries to render from; none given: every installed one", "choices": sorted(SOURCES)})
    one_shots: int = field(default=0, metadata={
        "help": "extra training clips of drum one-shots (1-3 kit pieces struck alone), on top of the hours; "
                "every other clip stays as it is without them"})
    negatives: int = field(default=0, metadata={
        "help": "extra training clips without any instrument (speech, noise, clicks, hum, tones, sweeps), on top "
                "of the hours; with them, a held-out split 'negatives' of other speakers, voices and sounds"})
    negatives_heldout: int = field(default=300, metadata={"help": "clips of the held-out 'negatives' split"})
    fsdd: str | None = field(default=None, metadata={
        "help": "Free Spoken Digit Dataset for speech negatives: a checked-out folder or its bare git mirror; "
                "none: espeak-ng speech alone"})
    val_fraction: float = field(default=0.15, metadata={"help": "share of the hours for validation"})
    no_real: bool = field(default=False, metadata={"help": "skip the real-recordings split"})
    real_eval_dir: str = field(default=str(REAL_EVAL_DIR), metadata={"help": "the shared real-eval recordings"})
    libraries: str | None = field(default=None, metadata={
        "help": "folder of fetched real sample libraries (python -m finetune.data.libraries fetch): train-role "
                "ones join the train split, held-out ones make the real_heldout split; none: no real libraries"})
    quiet: bool = field(default=False, metadata={"help": "no progress bar"})


def main(argv: list[str] | None = None) -> int:
    configure_logging("INFO")
    (args,) = HfArgumentParser(DataBuildArguments).parse_args_into_dataclasses(args=argv)
    if args.quiet:
        datasets.disable_progress_bars()
    t = time.perf_counter()
    dd = build(Path(args.out), args.hours, args.seed, args.clip_seconds, tuple(args.holdout), args.sources,
               args.val_fraction, real=not args.no_real, progress=not args.quiet,
               real_eval_dir=Path(args.real_eval_dir), one_shots=args.one_shots,
               libraries=Path(args.libraries) if args.libraries else None,
               negatives=args.negatives, negatives_heldout=args.negatives_heldout, fsdd=args.fsdd)
    log.info("wrote %s in %.0f s: %s", args.out, time.perf_counter() - t,
             {k: len(v) for k, v in dd.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
