"""Keeping a server's scratch folders (uploads, exports) bounded in age and in total size."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def _size(entry: Path) -> int:
    try:
        if entry.is_dir():
            return sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
        return entry.stat().st_size
    except OSError:  # removed meanwhile
        return 0


def _remove(entry: Path) -> None:
    if entry.is_dir():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def prune(folder: Path, *, max_age_seconds: float, max_total_bytes: int, partial_prefix: str | None = None,
          partial_idle_seconds: float = 60.0, keep: set[Path] = frozenset(), now: float | None = None) -> list[Path]:
    """Remove what `folder` holds beyond an age and a total size; returns what was removed.

    Entries (files or folders directly inside) older than `max_age_seconds` go first, then the oldest
    until the rest fits in `max_total_bytes`. Files named `partial_prefix…` at the top level are uploads
    still being written (Gradio's temporary files); once idle for `partial_idle_seconds` their client
    has gone and they go too. Entries in `keep` (resolved paths) stay whatever their age.
    """
    if not folder.is_dir():
        return []
    now = time.time() if now is None else now
    entries = []
    for entry in folder.iterdir():
        if entry.resolve() in keep:
            continue
        try:
            entries.append((entry.stat().st_mtime, entry))
        except OSError:
            continue
    removed, kept = [], []
    for mtime, entry in sorted(entries):
        partial = partial_prefix is not None and entry.is_file() and entry.name.startswith(partial_prefix)
        if now - mtime > max_age_seconds or (partial and now - mtime > partial_idle_seconds):
            removed.append(entry)
        else:
            kept.append(entry)
    sizes = {entry: _size(entry) for entry in kept}
    total = sum(sizes.values())
    for entry in kept:  # oldest first
        if total <= max_total_bytes:
            break
        removed.append(entry)
        total -= sizes[entry]
    for entry in removed:
        _remove(entry)
    if removed:
        log.info("removed %d old entries from %s", len(removed), folder)
    return removed


def every(seconds: float, job: Callable[[], object], name: str) -> threading.Event:
    """Run `job` every `seconds` on a daemon thread until the returned event is set; a failure is logged."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            try:
                job()
            except Exception:  # housekeeping must never take the server down
                log.exception("%s failed", name)

    threading.Thread(target=loop, name=name, daemon=True).start()
    return stop
