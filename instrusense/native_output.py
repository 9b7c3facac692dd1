"""Keeping C libraries' own messages (libmpg123, FFmpeg) off a command line's stdout and stderr.

Decoder libraries write warnings about damaged frames straight to file descriptors 1 and 2, past
Python's logging. A face that owns its process (the CLI, whose stdout is the JSON contract) turns
this on; those messages then reach the log at debug level. It swaps process-wide descriptors, so
it stays off in a server whose other threads write to stderr meanwhile.
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
