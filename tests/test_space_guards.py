"""Bounded scratch folders and admission rules, without a server."""

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from space_guards import Busy, Slots, StreamChunksInTurn, client_key, prune, queue_refusal
from instrusense.stopping import Stopped


def _entry(folder, name: str, size: int, age: float, now: float, is_dir: bool = False):
    path = folder / name
    if is_dir:
        path.mkdir()
        (path / "upload.wav").write_bytes(b"x" * size)
    else:
        path.write_bytes(b"x" * size)
    os.utime(path, (now - age, now - age))
    return path


def test_prune_removes_old_then_oldest_beyond_the_total_and_idle_partial_uploads(tmp_path):
    now = 1_000_000.0
    old = _entry(tmp_path, "old", 10, 4000, now, is_dir=True)
    older_kept = _entry(tmp_path, "b", 600, 300, now, is_dir=True)
    newer = _entry(tmp_path, "c", 600, 100, now, is_dir=True)
    partial = _entry(tmp_path, "tmpabc", 50, 120, now)
    writing = _entry(tmp_path, "tmpdef", 50, 5, now)
    example = _entry(tmp_path, "example", 10, 9000, now, is_dir=True)
    removed = prune(tmp_path, max_age_seconds=3600, max_total_bytes=1000, partial_prefix="tmp",
                    partial_idle_seconds=60, keep={example.resolve()}, now=now)
    assert set(removed) == {old, partial, older_kept}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["c", "tmpdef", "example"])
    assert newer.exists() and writing.exists()


def test_queue_refusal_counts_each_clients_share_and_the_whole_queue():
    assert queue_refusal([], "a", max_size=3, per_client=2) is None
    assert "at most 2 per client" in queue_refusal(["a", "a"], "a", max_size=3, per_client=2)
    assert queue_refusal(["a", "a"], "b", max_size=3, per_client=2) is None
    assert "3 recordings are queued or running (at most 3)" in queue_refusal(["a", "b", "c"], "d", 3, 2)


def test_client_key_is_the_last_proxy_hop_or_the_peer():
    assert client_key("10.0.0.1", None) == "10.0.0.1"
    assert client_key("10.0.0.1", "203.0.113.5, 198.51.100.7") == "198.51.100.7"
    assert client_key(None, "") == "unknown"


def test_slots_wait_refuse_when_busy_and_stop_when_told():
    slots = Slots(1)
    with slots.hold(1.0):
        with pytest.raises(Busy, match="all 1 analysis slots stayed busy"):
            with slots.hold(0.1):
                pass
        stop = threading.Event()
        stop.set()
        with pytest.raises(Stopped):
            with slots.hold(10.0, stop):
                pass
    with slots.hold(0.1):  # freed again
        assert slots.running == 1
    assert slots.peak == 1 and slots.running == 0


class _Event:  # what StreamChunksInTurn reads of a Gradio queue event
    def __init__(self):
        self.signal = asyncio.Event()


class _Blocks:
    def __init__(self, events):
        self._queue = type("Queue", (), {"event_ids_to_events": events})()


def _post(path: str, method: str = "POST", chunk: int = 0) -> dict:
    return {"type": "http", "method": method, "path": path, "headers": [], "chunk": chunk}


def test_stream_chunks_wait_until_the_one_before_was_taken_and_keep_their_order():
    """Gradio keeps one pending chunk per stream: a second chunk posted before the queue took the first replaced it."""

    async def scenario():
        event = _Event()
        blocks = _Blocks({"e1": event})
        reached = []

        async def gradio_route(scope, receive, send):  # POST /stream/{id}: event.data = body; signal.set()
            reached.append((scope["path"].rsplit("/", 1)[-1], scope["chunk"]))
            event.signal.set()

        middleware = StreamChunksInTurn(gradio_route, blocks, wait_seconds=5.0, poll_seconds=0.001)
        call = lambda path, chunk: asyncio.create_task(middleware(_post(path, chunk=chunk), None, None))  # noqa: E731
        await call("/gradio_api/stream/e1", 1)
        assert reached == [("e1", 1)]
        second = call("/gradio_api/stream/e1", 2)
        await asyncio.sleep(0.01)
        third = call("/gradio_api/stream/e1/close", 3)
        await asyncio.sleep(0.02)
        assert len(reached) == 1  # the first chunk is not taken yet: the others wait
        event.signal.clear()  # the queue takes it
        await asyncio.wait_for(second, 1)
        await asyncio.sleep(0.02)
        assert reached[1:] == [("e1", 2)]  # one at a time: the close waits for the second
        event.signal.clear()
        await asyncio.wait_for(third, 1)
        assert reached[2:] == [("close", 3)] and len(middleware.turns) == 0  # no stream left a turn behind
        # other requests, unknown streams and a chunk nobody takes (past the wait) go through as before
        waiting = _Event()
        waiting.signal.set()
        other = _Blocks({"e2": waiting})
        timed = StreamChunksInTurn(gradio_route, other, wait_seconds=0.05, poll_seconds=0.001)
        started = time.monotonic()
        await timed(_post("/gradio_api/stream/e2"), None, None)
        assert 0.04 <= time.monotonic() - started < 1 and reached[-1] == ("e2", 0)
        for scope in (_post("/gradio_api/stream/unknown"), _post("/gradio_api/upload"),
                      _post("/gradio_api/stream/e1", method="GET")):
            await asyncio.wait_for(middleware(scope, None, None), 0.5)
        assert reached[-3:] == [("unknown", 0), ("upload", 0), ("e1", 0)]

    # in a thread of its own: Playwright's sync API (the browser tests, same session) leaves a loop running here
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, scenario()).result()
