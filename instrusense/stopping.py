"""Stop signals: how long work (decoding, model batches) learns that its caller gave up or ran out of time."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Stopped(Exception):
    """The caller's stop signal was set: the work was abandoned between two blocks or batches."""


StopSignal = Callable[[], bool] | threading.Event


def check_stop(should_stop: StopSignal | None) -> None:
    """Raise `Stopped` if the signal is set (an Event) or returns true (a callable)."""
    if should_stop is None:
        return
    if should_stop.is_set() if isinstance(should_stop, threading.Event) else should_stop():
        raise Stopped
