"""One corpus run: list the items, skip those already in the output, analyse the rest on an engine, write
rows as they come, and sum it up."""

from __future__ import annotations

import collections
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from instrusense.settings import Settings

from instrusense.corpus.rows import failure_reason, record_row
from instrusense.corpus.sources import Source, list_items
from instrusense.corpus.store import ResultStore

PART_ROWS = 256
"""Rows per part file: at most this many finished files are redone after a kill (fewer: see FLUSH_SECONDS)."""
FLUSH_SECONDS = 30.0
"""A part is also written after this long, so a slow job loses little when killed."""


@dataclass
class Summary:
    listed: int = 0
    skipped: int = 0
    """Already in the output from an earlier run."""
    analysed: int = 0
    failures: collections.Counter = field(default_factory=collections.Counter)
    """Failed files of this run by kind of error."""
    audio_seconds: float = 0.0
    """Audio analysed in this run (files that failed count nothing)."""
    wall_seconds: float = 0.0
    """This run from start to the merged output, start-up included."""
    rows: int = 0
    """Rows in the output at the end (all runs)."""

    @property
    def files_per_minute(self) -> float:
        return 60.0 * self.analysed / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def lines(self) -> list[str]:
        failed = sum(self.failures.values())
        lines = [f"{self.listed} files listed, {self.skipped} already done, {self.analysed} analysed in "
                 f"{self.wall_seconds:.1f} s ({self.files_per_minute:.0f} files/min), "
                 f"{self.audio_seconds / 3600:.2f} h of audio; {failed} failed"]
        lines += [f"  {count:6d}  {reason}" for reason, count in self.failures.most_common()]
        lines.append(f"{self.rows} rows in the output")
        return lines


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def plan(workers: int, threads: int, cores: int) -> tuple[int, int]:
    """Worker processes and torch threads each, so that workers × threads ≤ cores by default (one thread
    per worker: for short files a process per core beats threads inside one model call)."""
    threads = threads if threads > 0 else (max(1, cores // workers) if workers > 0 else 1)
    workers = workers if workers > 0 else max(1, cores // threads)
    return workers, threads


def run_corpus(source: Source, out: str | Path, settings: Settings, *, workers: int = 0, ray: str | None = None,
               part_rows: int = PART_ROWS, flush_seconds: float = FLUSH_SECONDS, progress: bool = True) -> Summary:
    """Analyse every item of `source` not yet in `out` (see the package docstring); `ray` is None for the local
    pool, "local" for a local Ray or a cluster address. Interrupted (Ctrl-C), it keeps what is written."""
    started = time.perf_counter()
    store = ResultStore(out)
    store.out.parent.mkdir(parents=True, exist_ok=True)
    items = list_items(source)
    done = store.done_files()
    todo = [item for item in items if item.file not in done]
    summary = Summary(listed=len(items), skipped=len(items) - len(todo))
    if todo:
        records = _engine(todo, settings, source, workers, ray)
        _write(records, store, summary, len(todo), part_rows, flush_seconds, progress)
    summary.rows = store.finish()
    summary.wall_seconds = time.perf_counter() - started
    return summary


def _engine(todo, settings: Settings, source: Source, workers: int, ray: str | None):
    cores = cpu_cores()
    if ray is None:
        from instrusense.corpus.pool import run_pool

        workers, threads = plan(workers, settings.threads, cores)
        return run_pool(todo, settings, source, workers, threads)
    from instrusense.corpus.on_ray import run_on_ray

    threads = max(settings.threads, 1)
    return run_on_ray(todo, settings, source, ray, workers, threads, workers * threads if workers else cores)


def _write(records, store: ResultStore, summary: Summary, total: int, part_rows: int, flush_seconds: float,
           progress: bool) -> None:
    rows: list[dict] = []
    flushed = time.monotonic()
    bar = tqdm(total=total, desc="analysing", unit="file", file=sys.stderr, disable=not progress, smoothing=0.1)
    try:
        for batch in records:
            for record in batch:
                rows.append(record_row(record))
                summary.analysed += 1
                if record.get("error"):
                    summary.failures[failure_reason(record["file"], record["error"])] += 1
                else:
                    summary.audio_seconds += float(record.get("duration") or 0.0)
            bar.update(len(batch))
            if len(rows) >= part_rows or time.monotonic() - flushed >= flush_seconds:
                store.append(rows)
                rows, flushed = [], time.monotonic()
    finally:
        store.append(rows)  # also when interrupted: what is done stays done
        bar.close()
