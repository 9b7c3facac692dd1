"""Keeping C libraries' own messages (libmpg123, FFmpeg) off a command line's stdout and stderr.

Decoder libraries write warnings about damaged frames straight to file descriptors 1 and 2, past
Python's logging: one hostile MP3 can make libmpg123 write ten thousand lines. Two ways to keep them
in the log at debug level instead:

- `route_native_output_to_log`, for a face that owns its process and decodes one file at a time (the
  CLI, whose stdout is the JSON contract): the descriptors are swapped around each decoder call.
- `capture_native_stderr`, for a server, whose threads decode while others log: descriptor 2 becomes
  a pipe for good, read by a thread, while Python's own `sys.stderr` keeps the terminal.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)
_lock = threading.Lock()
_enabled = False


def route_native_output_to_log(enabled: bool = True) -> None:
    """From now on, what decoders print while a file is decoded goes to the log (debug), not the terminal."""
    global _enabled
    _enabled = enabled


@contextmanager
def native_output_to_log() -> Iterator[None]:
    """Around a decoder call: its C-level output is collected and logged at debug level (when enabled)."""
    if not _enabled:
        yield
        return
    with _lock, tempfile.TemporaryFile() as sink:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            for line in sink.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    log.debug("decoder: %s", line)


_captured = False


def capture_native_stderr() -> None:
    """Once per process, before logging is configured: what C libraries write to descriptor 2 goes to the log
    at debug level; Python's `sys.stderr` (and so every log handler made after this) still writes to the
    terminal. Safe with threads: nothing is swapped per call."""
    global _captured
    if _captured:
        return
    _captured = True
    sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = open(terminal, "w", buffering=1, encoding="utf-8", errors="backslashreplace")  # noqa: SIM115

    def pump() -> None:
        with open(read_end, "rb") as pipe:
            for raw in pipe:
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    log.debug("decoder: %s", line)

    threading.Thread(target=pump, name="native-stderr", daemon=True).start()
