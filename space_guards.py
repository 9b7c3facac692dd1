"""The public Space's guards, in one place beside the app: who may queue and run (admission), what a
request may name (uploads only), how a refusal is worded for the page and for API clients, how a cancelled or
abandoned request stops, and how the scratch folders stay bounded (clean-up).

Everything here serves `app.py` alone; the library (`instrusense/`) knows nothing of it. Where Gradio has a
documented option it is used (`queue(max_size=…)`, `concurrency_limit`, `max_file_size`, `delete_cache`,
`gr.Error`); each remaining patch of a Gradio object names, in its docstring, the test that fails without it.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import json
import logging
import shutil
import tempfile
import threading
import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import gradio as gr
from gradio.context import LocalContext
from gradio.server_messages import ProcessCompletedMessage
from gradio.utils import error_payload, get_upload_folder
from gradio_client.utils import is_http_url_like
from starlette.requests import ClientDisconnect

from instrusense.logs import fields
from instrusense.stopping import StopSignal, check_stop
from instrusense.settings import Settings

log = logging.getLogger("instrusense.app")

EXPORT_DIR = Path(tempfile.gettempdir()) / "instrusense-exports"
"""Where the page's downloads are written; bounded like the uploads."""
NOT_AN_UPLOAD = "Send the recording itself as a file upload; URLs and server paths are not accepted."
BUSY = "InstruSense is busy, try again in a moment: {reason}."


# --- refusals: one wording for the page, the log and API clients -------------------------------------------

def refusal(message: str, outcome: str) -> gr.Error:
    """The error the user sees, tagged with the outcome the request log records.

    It stays on screen until closed; no traceback is printed (an unexpected error logs its own).
    """
    error = gr.Error(message, duration=None, print_exception=False)
    error.outcome = outcome  # type: ignore[attr-defined]
    return error


def inside(path: str, root: Path) -> bool:
    """Whether `path` names a file inside `root` (Gradio's upload folder), whatever the payload claimed."""
    if is_http_url_like(path):
        return False
    try:
        return Path(path).resolve().is_relative_to(root)
    except (OSError, ValueError):
        return False


# --- admission: analyses at once, and each client's share of the queue -------------------------------------

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


def queue_refusal(waiting: Iterable[str], client: str, max_size: int, per_client: int,
                  what: str = "recordings") -> str | None:
    """Why a new request from `client` may not join a queue holding `waiting` (clients of queued and
    running requests), or None if it may. `what` names the requests in the reason."""
    counts = Counter(waiting)
    if counts[client] >= per_client:
        return f"you already have {counts[client]} {what} queued or running (at most {per_client} per client)"
    if sum(counts.values()) >= max_size:
        return f"{sum(counts.values())} {what} are queued or running (at most {max_size})"
    return None


# --- memory: what a request freed goes back to the system -------------------------------------------------

@functools.lru_cache(maxsize=1)
def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to do
        return None


def few_heaps(arenas: int = 2) -> None:
    """At start-up, before the server's threads: glibc gives every thread that allocates its own heap (up to 8 per
    core), and a heap a thread filled once stays mapped; a couple of shared heaps keep idle RSS from ratcheting up
    request after request (benchmarks/space_limits.py)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(-8, arenas)  # M_ARENA_MAX


def return_freed_memory() -> None:
    """After each request: hand the memory its decoding and analysis freed back to the system (glibc keeps
    freed blocks mapped otherwise, and idle RSS grows with every large request)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


# --- clean-up: scratch folders bounded in age and in total size ---------------------------------------------

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


# --- the Gradio side: uploads only, cancellation, queue bounds, refusals as messages, clean-up ---------------

def uploads_only(audio: gr.Audio) -> gr.Audio:
    """Make `audio` take only files uploaded to this app.

    Gradio itself refuses a server path that was not uploaded; a URL in an API call it would fetch,
    so URLs are refused here, before anything is downloaded. (An instance override: a subclass
    defined here would make Gradio write an ``app.pyi`` beside this file.) No launch option covers it:
    test_is_stream_payloads_naming_paths_or_urls_are_refused fails without it.
    """
    move = audio.async_move_resource_to_block_cache

    async def move_upload(url_or_file_path: str | Path | None) -> str | None:
        if is_http_url_like(str(url_or_file_path)):
            raise refusal(NOT_AN_UPLOAD, "rejected")
        return await move(url_or_file_path)

    audio.async_move_resource_to_block_cache = move_upload  # type: ignore[method-assign]
    return audio


def cancellable(handle, reasons: OrderedDict):
    """The handler as Gradio runs it: in a worker thread told to stop when the request is cancelled
    (Gradio cancels this coroutine) or abandoned (its client closed the event stream, which Gradio
    marks on the queued event). Gradio frees the request's slot at once; `Slots` counts the thread
    until it has stopped."""

    async def analyze(audio_path: str | None, request: gr.Request):
        stop = threading.Event()
        blocks = LocalContext.blocks.get(None)
        queue = getattr(blocks, "_queue", None)
        # `is not None`: the queue object is false while nothing else waits (test_a_killed_client_stops_its_
        # analysis_with_nothing_else_queued)
        event = queue.event_ids_to_events.get(LocalContext.event_id.get(None)) if queue is not None else None

        async def watch() -> None:
            while event is None or event.alive:
                await asyncio.sleep(0.2)
            stop.set()

        watcher = asyncio.create_task(watch())
        try:
            return await anyio.to_thread.run_sync(handle, audio_path, stop, abandon_on_cancel=True)
        except gr.Error as exc:  # shown beside the input until the next analysis
            reasons[request.session_hash] = exc.message
            while len(reasons) > 1024:
                reasons.popitem(last=False)
            raise
        except asyncio.CancelledError:
            stop.set()
            # the client is told why in words (gradio_client's `Job.result()` raises `AppError` with them, instead
            # of a KeyError on an empty reply: test_a_cancelled_job_ends_with_the_apps_words)
            raise refusal("The request was cancelled.", "cancelled") from None
        finally:
            watcher.cancel()

    return analyze


def _refusals_as_messages(demo: gr.Blocks) -> None:
    """A payload Gradio refuses before the handler (a server path, a bare string) gets the app's
    message and one log line, not a silent ``{"error": null}`` and a traceback (no option covers it:
    test_refusals_reach_api_clients_with_the_apps_message_and_no_traceback fails without it)."""
    preprocess = demo.preprocess_data

    async def checked(*args, **kwargs):
        try:
            return await preprocess(*args, **kwargs)
        except Exception as exc:
            reason = exc.message if isinstance(exc, gr.Error) else NOT_AN_UPLOAD
            log.info("request %s", fields(outcome="rejected", file="", bytes=0, audio_seconds=0.0, seconds=0.0,
                                          reason=reason))
            log.debug("payload refused before analysis: %s", exc)
            raise refusal(reason, "rejected") from None

    demo.preprocess_data = checked  # type: ignore[method-assign]


LIVE = "live"
"""The concurrency id of the live view's stream handler (app_live.py)."""


def _bound_queue(demo: gr.Blocks, settings: Settings) -> None:
    """Refuse, as busy, a request beyond the queue's size or its client's share of it (Gradio's `max_size` has no
    per-client share: test_a_flood_beyond_the_clients_share_is_refused_while_others_are_served). Live-view streams are
    bounded on their own (one per client, `live_listeners` in all): a stream holds its place for minutes, so
    counted with the analyses they would lock everyone out of them
    (test_live_stream_joins_cannot_lock_out_the_analysis).

    A refused request is accepted and ended at once with the reason, as every other refusal of the app ends: the
    HTTP 503 that Gradio's `max_size` answers reaches `gradio_client` only as its own "Queue is full! Please try
    again." (test_a_busy_refusal_reaches_gradio_client_with_the_reason)."""
    queue = demo._queue
    push = queue.push

    def sender(request) -> str:
        return client_key(request.client.host if request and request.client else None,
                          request.headers.get("x-forwarded-for") if request else None)

    async def bounded_push(body, request, username):
        fn = demo.fns.get(body.fn_index) if body.fn_index is not None else None
        live = getattr(fn, "concurrency_id", None) == LIVE
        events = [e for q in queue.event_queue_per_concurrency_id.values() for e in q.queue]
        events += [e for job in queue.active_jobs if job for e in job]
        waiting = [sender(e.request) for e in events if (e.fn.concurrency_id == LIVE) == live]
        if live:
            reason = queue_refusal(waiting, sender(request), settings.live_listeners, 1, "live sessions")
        else:
            reason = queue_refusal(waiting, sender(request), settings.queue_max_size, settings.queue_per_client)
        if reason is None:
            return await push(body, request, username)
        log.info("request %s", fields(outcome="busy", file="", bytes=0, audio_seconds=0.0, seconds=0.0, reason=reason))
        return await _ended_at_once(queue, push(body, request, username), BUSY.format(reason=reason))

    queue.push = bounded_push  # type: ignore[method-assign]


async def _ended_at_once(queue, pushed, message: str):
    """Let the event join (`pushed`: the queue's own push), take it out of the queue before anything runs it, and end
    it with `message` as a failed event, exactly as a `gr.Error` raised by the handler ends one."""
    joined, event_id, state = await pushed
    event = queue.event_ids_to_events.get(event_id) if joined else None
    if event is None:
        return joined, event_id, state
    await queue.remove_from_queue(event_id)  # the lock is free at once: no other task runs in between
    queue.send_message(event, ProcessCompletedMessage(output=error_payload(gr.Error(message), True), success=False))
    return joined, event_id, state


def _upload_cut_off(record: logging.LogRecord) -> bool:
    """A client that vanishes mid-upload is expected on a public server: one line, not a traceback.
    (Its partial file is removed by clean-up once no upload is in flight.)"""
    if record.exc_info and isinstance(record.exc_info[1], ClientDisconnect):
        record.msg, record.args, record.exc_info, record.exc_text = "an upload was cut off by its client", (), None, None
        record.levelno, record.levelname = logging.INFO, "INFO"
    return True


class UploadBudget:
    """The upload folder's bound, held at every upload instead of once a minute: an upload is admitted only if
    the folder's finished uploads, the declared sizes of the uploads in flight and its own declared size fit in
    UPLOAD_MAX_TOTAL_MB (test_uploads_beyond_the_folder_bound_are_refused_at_once). While any upload is in
    flight, partial files are not clean-up's to remove: a slow client's upload is not deleted under it
    (test_a_stalled_upload_is_not_deleted_under_its_client)."""

    def __init__(self, settings: Settings, keep_like: Iterable[Path] = ()):
        self.max_bytes = int(settings.upload_max_total_mb * 1e6)
        self.keep_like = [Path(p) for p in keep_like]
        self.in_flight = 0
        self.reserved = 0
        self._lock = threading.Lock()

    def finished_bytes(self, uploads: Path) -> int:
        if not uploads.is_dir():
            return 0
        return sum(_size(e) for e in uploads.iterdir() if not e.name.startswith(PARTIAL_PREFIX))

    def admit(self, uploads: Path, declared: int) -> str | None:
        """Reserve room for an upload of `declared` bytes, or say why there is none."""
        with self._lock:
            used = self.finished_bytes(uploads) + self.reserved
            if used + declared > self.max_bytes:
                return (f"the server's upload space is full ({used / 1e6:.0f} of {self.max_bytes / 1e6:.0f} MB in "
                        "use by recordings waiting for analysis)")
            self.in_flight += 1
            self.reserved += declared
            return None

    def release(self, declared: int) -> None:
        with self._lock:
            self.in_flight -= 1
            self.reserved -= declared

    def keep(self, uploads: Path) -> set[Path]:
        """Entries of the upload folder that clean-up leaves: the examples' cached copies (Gradio copies each
        example into the folder at start-up and serves it from there) and, while uploads are in flight, every
        partial file."""
        kept = set()
        if not uploads.is_dir():
            return kept
        for entry in uploads.iterdir():
            if entry.name.startswith(PARTIAL_PREFIX) and self.in_flight:
                kept.add(entry.resolve())
            elif entry.is_dir() and any(_same_file(entry / ex.name, ex) for ex in self.keep_like):
                kept.add(entry.resolve())
        return kept


PARTIAL_PREFIX = "tmp"
"""How the files of uploads still being written are named in Gradio's upload folder."""


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.is_file() and a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()
    except OSError:
        return False


class UploadBudgetMiddleware:
    """ASGI middleware on the app (FastAPI's `middleware` option, given through `launch(app_kwargs=…)`): Gradio's
    upload route asks `UploadBudget` first; a refusal is HTTP 503 with the reason, before any byte is stored."""

    def __init__(self, app, budget: UploadBudget):
        self.app, self.budget = app, budget

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/upload"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        try:
            declared = max(int(headers.get(b"content-length", b"0")), 0)
        except ValueError:
            declared = 0
        reason = self.budget.admit(Path(get_upload_folder()), declared)
        if reason is not None:
            log.info("request %s", fields(outcome="busy", file="", bytes=declared, audio_seconds=0.0, seconds=0.0,
                                          reason=reason))
            body = json.dumps({"detail": BUSY.format(reason=reason)}).encode()
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.budget.release(declared)


class StreamChunksInTurn:
    """ASGI middleware on the app (as `UploadBudgetMiddleware`): a chunk posted to a stream waits until Gradio's
    queue has taken the one before. Gradio keeps one pending chunk per stream (`POST /stream/{event_id}` replaces
    `event.data`) and takes it only between handler calls, so a 0.1 s microphone chunk that came before the one
    ahead of it was taken replaced it, even with a quick handler (4 % of a take when the browser shared the CPU).
    Reads Gradio's queue (`event_ids_to_events`, an event's `signal`: set while a chunk waits); anything else, or a
    wait past `wait_seconds`, passes as before.
    The test that fails without it: tests/test_browser_live.py (chunks sent against chunks kept, in the full
    suite), and tests/test_space_guards.py's own."""

    def __init__(self, app, blocks: gr.Blocks, wait_seconds: float = 0.5, poll_seconds: float = 0.005):
        self.app, self.blocks = app, weakref.ref(blocks)
        self.wait_seconds, self.poll_seconds = wait_seconds, poll_seconds
        self.turns: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()  # while in use

    def _event(self, path: str):
        event_id = path.rsplit("/stream/", 1)[-1].removesuffix("/close")
        blocks = self.blocks()
        events = getattr(getattr(blocks, "_queue", None), "event_ids_to_events", None) or {}
        return event_id, events.get(event_id)

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "POST" or "/stream/" not in path:
            return await self.app(scope, receive, send)
        event_id, event = self._event(path)
        if event is None or not isinstance(getattr(event, "signal", None), asyncio.Event):
            return await self.app(scope, receive, send)
        turn = self.turns.setdefault(event_id, asyncio.Lock())  # gone once no request holds it: nothing to tidy
        async with turn:  # chunks go in the order they came, one at a time
            deadline = time.monotonic() + self.wait_seconds
            while event.signal.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(self.poll_seconds)
            await self.app(scope, receive, send)


_budgets: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tidy(settings: Settings, uploads: Path, budget: UploadBudget) -> None:
    """Bound the upload and export folders: old, oversized and cut-off uploads go (examples stay)."""
    bounds = dict(max_age_seconds=settings.upload_max_age_seconds, max_total_bytes=budget.max_bytes)
    prune(uploads, partial_prefix=PARTIAL_PREFIX, partial_idle_seconds=settings.cleanup_interval_seconds,
          keep=budget.keep(uploads), **bounds)
    prune(EXPORT_DIR, **bounds)


def _keep_tidy(demo: gr.Blocks, settings: Settings, budget: UploadBudget) -> None:
    """Run `_tidy` now and every CLEANUP_INTERVAL_SECONDS until the app is closed."""
    uploads = Path(get_upload_folder())
    _tidy(settings, uploads, budget)

    def job() -> None:
        if demo._queue.stopped:
            stop.set()
        else:
            _tidy(settings, uploads, budget)

    stop = every(settings.cleanup_interval_seconds, job, "instrusense-cleanup")


def guard(demo: gr.Blocks, settings: Settings, examples: Iterable[str | Path] = ()) -> gr.Blocks:
    """Put the Space's guards on a built app: the bounded queue (Gradio's own `max_size` and concurrency
    limits, then each client's share), refusals as messages, scheduled clean-up (the `examples` files' cached
    copies stay) and quiet cut-off uploads. Launch it with `launch_options(demo, settings)`."""
    budget = UploadBudget(settings, examples)
    _budgets[demo] = budget
    demo.queue(default_concurrency_limit=settings.concurrency_limit, max_size=settings.queue_max_size)
    _bound_queue(demo, settings)
    _refusals_as_messages(demo)
    _keep_tidy(demo, settings, budget)
    logging.getLogger("uvicorn.error").addFilter(_upload_cut_off)  # the same function each time: added once
    return demo


def launch_options(demo: gr.Blocks, settings: Settings) -> dict:
    """What `demo.launch` needs for the guards: Gradio's own upload size limit, and the upload budget and the
    streams' chunks in turn as FastAPI middleware (both documented launch options)."""
    from starlette.middleware import Middleware

    return {"max_file_size": f"{settings.max_upload_mb:g}mb",
            "app_kwargs": {"middleware": [Middleware(UploadBudgetMiddleware, budget=_budgets[demo]),
                                          Middleware(StreamChunksInTurn, blocks=demo)]}}
