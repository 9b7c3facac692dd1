"""The local engine: a pool of processes, each holding one loaded model.

Workers come from a fork server that imported the analysis once: a plain fork of a parent that already ran
threads or torch (a notebook's, a test runner's) can deadlock in the child. The command line's own process ran
neither, only imports, so it forks its first workers (`fork=True`) and saves the fork server's second import of
torch at start-up. A worker that dies (a decoder crashing on a hostile file, the OOM killer) costs a fresh pool, never the job:
the files it may have held are rerun one at a time, and a file that kills a worker on its own gets an error
record.
"""

from __future__ import annotations

import collections
import ctypes
import functools
import multiprocessing
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Iterator

from instrusense.export import error_record
from instrusense.settings import Settings

from instrusense.corpus.sources import Item, Source
from instrusense.corpus.worker import Analyser, quiet_file_notices

WORKER_DIED = ("Internal error: the worker process died while analysing this file (a crash in a decoder, "
               "or out of memory); the other files were analysed.")
_PR_SET_PDEATHSIG = 1
_PRELOAD = ["instrusense.corpus.worker", "instrusense.cli"]

_analyser: Analyser | None = None


def _start_worker(settings: Settings, source: Source, threads: int) -> None:
    global _analyser
    try:  # Linux: a worker of a killed job ends with it instead of waiting forever
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it saves what is done
    quiet_file_notices()
    _analyser = Analyser(settings, source, threads)


def analyse_chunk(items: list[Item]) -> list[dict]:
    return [_analyser(item) for item in items]


def _context(fork: bool):
    methods = multiprocessing.get_all_start_methods()
    if fork and "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def run_pool(items: list[Item], settings: Settings, source: Source, workers: int, threads: int,
             chunk_size: int = 4, task=analyse_chunk, fork: bool = False) -> Iterator[list[dict]]:
    """Records of `items`, a chunk at a time in the order they finish; `task` analyses a chunk in a worker.

    `fork`: this process has run no analysis and no threads (see the module docstring). The first workers
    start now, before the caller starts a thread of its own (the progress bar's), so that they can be forked;
    a pool started again after a death comes from the fork server."""
    chunks = collections.deque(items[i:i + chunk_size] for i in range(0, len(items), chunk_size))
    new_pool = functools.partial(ProcessPoolExecutor, workers, initializer=_start_worker,
                                 initargs=(settings, source, threads))
    executor = new_pool(mp_context=_context(fork))
    in_flight = _fill(executor, chunks, {}, 2 * workers, task)
    return _records(executor, in_flight, chunks, new_pool, 2 * workers, task)


def _fill(executor: ProcessPoolExecutor, chunks: collections.deque, in_flight: dict[Future, list[Item]],
          most: int, task) -> dict[Future, list[Item]]:
    while chunks and len(in_flight) < most:
        chunk = chunks.popleft()
        in_flight[executor.submit(task, chunk)] = chunk
    return in_flight


def _records(executor: ProcessPoolExecutor, in_flight: dict[Future, list[Item]], chunks: collections.deque,
             new_pool, most: int, task) -> Iterator[list[dict]]:
    suspects: collections.deque[Item] = collections.deque()
    while True:
        try:
            while suspects:  # one at a time, so that a death names its file
                records = executor.submit(task, [suspects[0]]).result()
                suspects.popleft()
                yield records
            while _fill(executor, chunks, in_flight, most, task):
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    records = future.result()
                    del in_flight[future]
                    yield records
        except BrokenProcessPool:
            if suspects:
                yield [error_record(suspects.popleft().file, WORKER_DIED)]
            suspects.extend(item for chunk in in_flight.values() for item in chunk)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
        if not (chunks or suspects):
            return
        executor, in_flight = new_pool(mp_context=_context(False)), {}
