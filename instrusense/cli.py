"""Batch command line: ``python -m instrusense analyze [--json] [--model M] [--top-k K] FILE ...``.

stdout carries only the result (one JSON array with --json, else a readable table); logs and the
progress bar go to stderr. A file that fails gets its error and the batch goes on; the exit code
is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TextIO

from tqdm import tqdm

from instrusense.analysis import Analysis, analyze_file
from instrusense.audio import AudioError
from instrusense.corpus import command as corpus_command
from instrusense.export import analysis_record, error_record
from instrusense.formatting import percent, seconds
from instrusense.logs import configure_logging
from instrusense.model import ModelUnavailableError, Tagger, tagger_for
from instrusense.native_output import route_native_output_to_log
from instrusense.settings import Settings, SettingsError, load_settings
from instrusense.stream_cli import add_parser as add_stream_parser, run_stream
from instrusense.taxonomy import display_name

log = logging.getLogger("instrusense.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m instrusense", description="Which instruments play, and when.")
    sub = parser.add_subparsers(dest="command", required=True)
    analyze = sub.add_parser("analyze", help="analyse audio files")
    analyze.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, ogg, mp3, ...)")
    analyze.add_argument("--json", action="store_true", help="print one JSON array (the stable contract)")
    analyze.add_argument("--model", default=None,
                         help="checkpoint directory or Hub id (default: $INSTRUSENSE_MODEL or models/instrusense)")
    analyze.add_argument("--top-k", type=int, default=None, help="instruments shown per file in the table")
    add_stream_parser(sub)
    corpus_command.add_parser(sub)
    return parser


def analyze_one(path: str, tagger: Tagger | None, model_error: str | None, settings: Settings) -> tuple[dict, Analysis | None]:
    """Analyse one file into its JSON record; never raises."""
    if tagger is None:
        return error_record(path, f"Model unavailable: {model_error}"), None
    try:
        analysis = analyze_file(path, tagger, settings)
    except AudioError as exc:
        return error_record(path, str(exc)), None
    except Exception as exc:  # a bug must not lose the rest of the batch
        log.exception("unexpected failure on %s", path)
        return error_record(path, f"Internal error while analysing the file: {type(exc).__name__}: {exc}"), None
    for notice in analysis.notices:
        log.warning("%s: %s", path, notice)
    return analysis_record(path, analysis), analysis


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


def run_analyze(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    tagger, model_error = None, None
    try:
        tagger = tagger_for(settings)
    except ModelUnavailableError as exc:
        model_error = str(exc)
        log.error("%s", exc)
    records = []
    top_k = args.top_k if args.top_k and args.top_k > 0 else settings.top_k
    for path in tqdm(args.files, desc="analysing", unit="file", disable=len(args.files) < 2, file=sys.stderr):
        record, analysis = analyze_one(path, tagger, model_error, settings)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(model=args.model)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    route_native_output_to_log()  # decoders' C-level messages: to the log at debug level, not the terminal
    if args.command == "stream":
        return run_stream(args, settings, sys.stdout)
    if args.command == "corpus":
        return corpus_command.run(args, settings)
    return run_analyze(args, settings, sys.stdout)
