"""Logging set-up, done once by whichever face starts the process (app or CLI)."""

from __future__ import annotations

import json
import logging
import sys

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Send all logs to stderr (stdout belongs to the CLI's JSON) in one consistent format."""
    root = logging.getLogger()
    if not any(getattr(h, "_instrusense", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._instrusense = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fields(**values: object) -> str:
    """``key=value`` pairs for one machine-readable log line.

    Strings are JSON-quoted, so a file name holding spaces, quotes or newlines cannot forge a line.
    """

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3f}"
        if isinstance(v, (int, type(None))):
            return json.dumps(v)
        return json.dumps(str(v), ensure_ascii=False)

    return " ".join(f"{k}={fmt(v)}" for k, v in values.items())
