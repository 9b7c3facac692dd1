"""``instrusense analyze [--json] [--model M] [--top-k K] FILE ...``: the batch command.

With --json, stdout is one JSON array (the stable contract); else a readable table. A file that fails gets
its error and the batch goes on; the exit code is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TextIO

from tqdm import tqdm

from instrusense.analysis import Analysis
from instrusense.formatting import percent, seconds
from instrusense.model import tagger_or_reason
from instrusense.records import file_record, model_unavailable_record
from instrusense.settings import Settings
from instrusense.taxonomy import display_name

log = logging.getLogger("instrusense.cli")

MODEL_HELP = "checkpoint directory or Hub id (default: $INSTRUSENSE_MODEL, else the shipped model)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    analyze = sub.add_parser("analyze", help="analyse audio files")
    analyze.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, ogg, mp3, ...)")
    analyze.add_argument("--json", action="store_true", help="print one JSON array (the stable contract)")
    analyze.add_argument("--model", default=None, help=MODEL_HELP)
    analyze.add_argument("--top-k", type=int, default=None, help="instruments shown per file in the table")


def format_table(record: dict, analysis: Analysis | None, top_k: int) -> str:
    """Readable summary of one file for the terminal."""
    if record["error"]:  # no duration: a file that failed was not measured
        return f"{record['file']}\n  error: {record['error']}"
    lines = [f"{record['file']}  ({record['duration']:.1f} s)"]
    for notice in analysis.notices if analysis else []:
        lines.append(f"  note: {notice}")
    shown = analysis.shown(top_k) if analysis else []  # the top k and every instrument with segments
    for item in shown:
        bar = "█" * round(item.confidence * 20)
        lines.append(f"  {display_name(item.label):<18} {percent(item.confidence):>7}  {bar}")
    if record["segments"]:
        lines.append("  segments:")
        for seg in record["segments"]:
            lines.append(f"    {seconds(seg['start']):>7}–{seconds(seg['end']):>7} s  {display_name(seg['label']):<18} "
                         f"{percent(seg['confidence'])}")
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    tagger, model_error = tagger_or_reason(settings)
    records = []
    top_k = args.top_k if args.top_k and args.top_k > 0 else settings.top_k
    for path in tqdm(args.files, desc="analysing", unit="file", disable=len(args.files) < 2, file=sys.stderr):
        if tagger is None:
            record, analysis = model_unavailable_record(path, model_error), None
        else:
            record, analysis = file_record(path, tagger, settings)
        records.append(record)
        if not args.json:
            print(format_table(record, analysis, top_k), file=out, flush=True)
    if args.json:
        json.dump(records, out, ensure_ascii=False)
        out.write("\n")
    failed = sum(r["error"] is not None for r in records)
    if failed:
        log.error("%d of %d files could not be analysed", failed, len(records))
    return 1 if failed else 0
