"""``instrusense corpus ROOT --out RESULTS.parquet [--ray [ADDRESS]]``: the command-line face of the corpus job."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TextIO

from instrusense.cli.analyze import MODEL_HELP
from instrusense.settings import Settings

log = logging.getLogger("instrusense.corpus")

INTERRUPTED = 130


def add_parser(sub) -> None:
    """Register the `corpus` subcommand on the CLI's subparsers."""
    p = sub.add_parser(
        "corpus", help="analyse a whole archive into one Parquet table (resumable; local pool or Ray)",
        description="One Parquet row per file (file, duration, a confidence column per label, segments and "
                    "timeline nested, error). Run it again to go on where it stopped: files already in the "
                    "output are skipped.")
    p.add_argument("root", metavar="ROOT",
                   help="a folder (walked recursively for audio files), a text file of paths (one a line, "
                        "relative to its folder) or a saved `datasets` dataset (save_to_disk)")
    p.add_argument("--out", required=True, type=Path, metavar="RESULTS.parquet", help="the Parquet table")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Ray Data: alone, a local Ray on this machine's cores; with an address "
                        "(ray://HEAD:10001, or auto for RAY_ADDRESS), that cluster")
    p.add_argument("--workers", type=int, default=0,
                   help="processes (or Ray actors), one model each (default: one per core / cluster CPU; each "
                        "gets cores/workers torch threads unless INSTRUSENSE_THREADS is set)")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--audio-column", default="audio", help="a dataset's audio column (default: %(default)s)")
    p.add_argument("--split", default=None, help="a dataset's split (default: every split)")
    p.add_argument("--part-rows", type=int, default=None,
                   help="rows written per part, the most a kill can cost (default: 256, or 30 s of work)")


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    """Exit codes: 0 all analysed, 1 some files failed, 2 the job could not run, 130 interrupted. The summary
    goes to stderr (`out` is unused: the results are the Parquet table)."""
    from instrusense.corpus.job import PART_ROWS, run_corpus
    from instrusense.corpus.sources import CorpusError, open_source
    from instrusense.model import ModelUnavailableError

    try:
        source = open_source(args.root, args.audio_column, args.split)
        summary = run_corpus(source, args.out, settings, workers=args.workers, ray=args.ray,
                             part_rows=args.part_rows or PART_ROWS)
    except (CorpusError, ModelUnavailableError) as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted: the files analysed so far are saved in %s.parts; run the same command again "
                  "to go on", args.out)
        return INTERRUPTED
    for line in summary.lines():
        print(line, file=sys.stderr)
    return 1 if summary.failures else 0
