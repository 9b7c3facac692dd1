"""Build the instrument dataset: rendered train/validation splits plus a real-recordings split.

    python -m finetune.data --out data/instruments --hours 3 --seed 0

writes a ``datasets.DatasetDict`` (``save_to_disk``) with splits ``train`` (rendered, training
sources), ``validation`` (rendered, held-out sample libraries only) and ``real`` (real recordings,
evaluation only), and a dataset card (README.md) with counts, measured throughput and size.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import datasets

from finetune.build import DEFAULT_HOLDOUT, build
from finetune.sources import SOURCES

log = logging.getLogger("finetune.data")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m finetune.data", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="output folder (DatasetDict + README.md card)")
    ap.add_argument("--hours", type=float, default=1.0, help="rendered audio (train + validation), hours")
    ap.add_argument("--seed", type=int, default=0, help="render seed (same seed, same dataset)")
    ap.add_argument("--clip-seconds", type=float, default=4.0, help="length of every rendered clip")
    ap.add_argument("--holdout", nargs="+", default=list(DEFAULT_HOLDOUT), choices=sorted(SOURCES),
                    metavar="NAME", help=f"sample libraries held out of training; they alone make the validation "
                    f"split ({', '.join(sorted(SOURCES))})")
    ap.add_argument("--sources", nargs="+", default=None, choices=sorted(SOURCES), metavar="NAME",
                    help="libraries to render from; none given: every installed one")
    ap.add_argument("--extra-sources", nargs="+", default=[], choices=sorted(SOURCES), metavar="NAME",
                    help="libraries rendered on top of the default ones (e.g. modelled: computed instruments, "
                         "off by default)")
    ap.add_argument("--one-shots", type=int, default=0, metavar="N",
                    help="extra training clips of drum one-shots (1-3 kit pieces struck alone), on top of the "
                         "hours; every other clip stays as it is without them")
    ap.add_argument("--val-fraction", type=float, default=0.15, help="share of the hours for validation")
    ap.add_argument("--no-real", action="store_true", help="skip the real-recordings split")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    if args.quiet:
        datasets.disable_progress_bars()
    t = time.perf_counter()
    dd = build(args.out, args.hours, args.seed, args.clip_seconds, tuple(args.holdout), args.sources,
               args.val_fraction, real=not args.no_real, progress=not args.quiet,
               extra_sources=tuple(args.extra_sources), one_shots=args.one_shots)
    log.info("wrote %s in %.0f s: %s", args.out, time.perf_counter() - t,
             {k: len(v) for k, v in dd.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
