"""How much work a server lets in: analyses running at once, and each client's share of the queue.

Free of any web framework: the app asks these objects and functions before it queues or starts an
analysis. They count what really runs, so that a request whose client has gone (cancelled, or its
event stream dropped) still counts until its worker thread has stopped.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from instrusense.model import StopSignal, Stopped, check_stop


class Busy(Exception):
    """No analysis slot came free in time; the message says why."""


class Slots:
    """At most `limit` analyses at once, counted where the work runs (not where it was queued)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0
        """Most analyses that ever ran at once (for tests and the log)."""

    @contextmanager
    def hold(self, wait_seconds: float, should_stop: StopSignal | None = None) -> Iterator[None]:
        """Run the body in a slot; raise `Busy` if none frees within `wait_seconds`, `Stopped` if told to stop."""
        deadline = time.monotonic() + wait_seconds
        while not self._free.acquire(timeout=0.05):
            check_stop(should_stop)
            if time.monotonic() > deadline:
                raise Busy(f"all {self.limit} analysis slots stayed busy for {wait_seconds:g} s")
        try:
            with self._lock:
                self.running += 1
                self.peak = max(self.peak, self.running)
            yield
        finally:
            with self._lock:
                self.running -= 1
            self._free.release()


def client_key(host: str | None, forwarded_for: str | None) -> str:
    """Who sent a request: the address the last proxy saw (behind Spaces' proxy), else the peer's."""
    hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
    return hops[-1] if hops else (host or "unknown")


def queue_refusal(waiting: Iterable[str], client: str, max_size: int, per_client: int) -> str | None:
    """Why a new request from `client` may not join a queue holding `waiting` (clients of queued and
    running requests), or None if it may."""
    counts = Counter(waiting)
    if counts[client] >= per_client:
        return f"you already have {counts[client]} recordings queued or running (at most {per_client} per client)"
    if sum(counts.values()) >= max_size:
        return f"{sum(counts.values())} recordings are queued or running (at most {max_size})"
    return None


__all__ = ["Busy", "Slots", "Stopped", "client_key", "queue_refusal"]
