"""The command line, a face on top of the library that nothing in it imports:
``instrusense analyze | stream | corpus`` (also ``python -m instrusense``).

stdout carries only results; logs and progress go to stderr.
"""

from __future__ import annotations

import argparse
import sys

from instrusense.cli import analyze, corpus, stream
from instrusense.logs import configure_logging
from instrusense.native_output import route_native_output_to_log
from instrusense.settings import SettingsError, load_settings

COMMANDS = {"analyze": analyze, "stream": stream, "corpus": corpus}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="instrusense", description="Which instruments play, and when.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(model=args.model)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    route_native_output_to_log()  # decoders' C-level messages: to the log at debug level, not the terminal
    return COMMANDS[args.command].run(args, settings, sys.stdout)
