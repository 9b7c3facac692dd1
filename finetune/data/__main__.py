"""Build the instrument dataset: rendered train/validation splits plus a real-recordings split.

    python -m finetune.data --out data/instruments --hours 3 --seed 0

writes a ``datasets.DatasetDict`` (``save_to_disk``) with splits ``train`` (rendered, training
sources), ``validation`` (rendered, held-out sample libraries only) and ``real`` (real recordings,
evaluation only), and a dataset card (README.md) with counts, measured throughput and size. The flags are
the fields of :class:`~finetune.data.config.BuildConfig`.
"""

from __future__ import annotations

import logging
import sys
import time

import datasets
from transformers import HfArgumentParser

from finetune.data.build import build
from finetune.data.config import BuildConfig
from instrusense.logs import configure_logging

log = logging.getLogger("finetune.data")


def main(argv: list[str] | None = None) -> int:
    configure_logging("INFO")
    (config,) = HfArgumentParser(BuildConfig).parse_args_into_dataclasses(args=argv)
    if config.quiet:
        datasets.disable_progress_bars()
    t = time.perf_counter()
    dd = build(config)
    log.info("wrote %s in %.0f s: %s", config.out, time.perf_counter() - t,
             {k: len(v) for k, v in dd.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
