"""The local engine: a pool of processes, each holding one loaded model.

Workers come from a fork server that imported the analysis once (a plain fork of a parent that already runs
threads, a notebook's or a test runner's, can deadlock in the child). A worker that dies (a decoder crashing on a hostile file, the OOM killer) costs a fresh pool, never the job:
the files it may have held are rerun one at a time, and a file that kills a worker on its own gets an error
record.
"""

from __future__ import annotations

import collections
import ctypes
import multiprocessing
import signal
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
_PRELOAD = ["instrusense.corpus.worker"]  # imports the analysis, the model code and torch

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


def _context():
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def run_pool(items: list[Item], settings: Settings, source: Source, workers: int, threads: int,
             chunk_size: int = 4, task=analyse_chunk) -> Iterator[list[dict]]:
    """Records of `items`, a chunk at a time in the order they finish; `task` analyses a chunk in a worker."""
    chunks = collections.deque(items[i:i + chunk_size] for i in range(0, len(items), chunk_size))
    suspects: collections.deque[Item] = collections.deque()
    while chunks or suspects:
        executor = ProcessPoolExecutor(workers, _context(), initializer=_start_worker,
                                       initargs=(settings, source, threads))
        in_flight: dict[Future, list[Item]] = {}
        try:
            while suspects:  # one at a time, so that a death names its file
                records = executor.submit(task, [suspects[0]]).result()
                suspects.popleft()
                yield records
            while chunks or in_flight:
                while chunks and len(in_flight) < 2 * workers:
                    chunk = chunks.popleft()
                    in_flight[executor.submit(task, chunk)] = chunk
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
