"""A public Space that holds up: bounded work per request whatever the client does (raw HTTP).

The app runs in this process on a loopback port with a tiny random checkpoint. The model's feature
extractor is slowed to a fixed pause per batch and counted, so that "the analysis stopped" and "at
most one analysis at once" are counts, not timings.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from conftest import free_port, silence_flac, tone
from instrusense.model import tagger_for
from instrusense.settings import load_settings

PAUSE_S = 0.1  # per batch of one window: a 120 s recording is 79 batches, about 8 s


class _CountingExtractor:
    """The real feature extractor, paused per call, counting calls and calls in flight."""

    def __init__(self, inner):
        self.inner, self.calls, self.running, self.peak = inner, 0, 0, 0
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self._lock:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(PAUSE_S)
            return self.inner(*args, **kwargs)
        finally:
            with self._lock:
                self.running -= 1

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def settings(tiny_whisper):
    return load_settings({}, model=tiny_whisper, threshold=0.3, batch_size=1,
                         max_duration_seconds=600.0, concurrency_limit=1, queue_max_size=6, queue_per_client=2,
                         cleanup_interval_seconds=1.0)


@pytest.fixture(scope="module")
def url(settings, uploads):
    import app

    demo = app.build_app(settings)
    port = free_port()
    options = {**app.launch_options(demo, settings), "max_file_size": 20 << 20}
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **options)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        demo.close()


@pytest.fixture
def extractor(settings, monkeypatch):
    tagger = tagger_for(settings)
    counting = _CountingExtractor(tagger.feature_extractor)
    monkeypatch.setattr(tagger, "feature_extractor", counting)
    return counting


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    import soundfile as sf

    path = tmp_path_factory.mktemp("long") / "long.flac"
    sf.write(str(path), tone(120.0, 16000), 16000)
    return path


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    import soundfile as sf

    path = tmp_path_factory.mktemp("short") / "short.wav"
    sf.write(str(path), tone(1.0, 16000), 16000)
    return path


def _upload(url: str, path: Path) -> dict:
    with path.open("rb") as f:
        response = httpx.post(f"{url}/gradio_api/upload", files={"files": f}, timeout=30)
    response.raise_for_status()
    return {"path": response.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def _fn_index(url: str) -> int:
    config = httpx.get(f"{url}/config", timeout=10).json()
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == "analyze")


def _call(url: str, value, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return httpx.post(f"{url}/gradio_api/call/analyze", json={"data": [value]}, headers=headers, timeout=30)


def _outcome(url: str, event_id: str) -> tuple[str, str]:
    stream = httpx.get(f"{url}/gradio_api/call/analyze/{event_id}", timeout=120).text
    return re.findall(r"^event: (\w+)\ndata: (.*)$", stream, re.M)[-1]


def _refusal(url: str, event_id: str, seconds: float = 5.0) -> str | None:
    """The reason an event ended with at once (its stream's error), or None if it is still queued or running."""
    try:
        with httpx.stream("GET", f"{url}/gradio_api/call/analyze/{event_id}", timeout=seconds) as stream:
            lines = stream.iter_lines()
            for line in lines:
                if line.startswith("event: ") and line != "event: heartbeat":
                    data = json.loads(next(lines).removeprefix("data: "))
                    return (data.get("error") if isinstance(data, dict) else data) if line == "event: error" else None
    except httpx.ReadTimeout:
        return None
    return None


def _session_messages(url: str, session: str, seconds: float):
    """The messages of a session's event stream (queue/data), as they come."""
    with httpx.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session},
                      timeout=seconds) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                yield json.loads(line.removeprefix("data: "))


def _session_refusal(url: str, session: str, seconds: float = 5.0) -> str | None:
    """Like `_refusal`, for an event joined through queue/join: read from its session's stream."""
    try:
        for message in _session_messages(url, session, seconds):
            if message.get("msg") == "process_completed" and not message.get("success"):
                return message["output"]["error"]
            if message.get("msg") == "process_starts":
                return None
    except httpx.ReadTimeout:
        return None
    return None


def _completion(url: str, session: str, seconds: float = 30.0) -> dict:
    """The `process_completed` message of a session's event, read from its stream."""
    for message in _session_messages(url, session, seconds):
        if message.get("msg") == "process_completed":
            return message
    raise AssertionError("the stream ended without process_completed")


def _wait(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


@pytest.mark.slow
def test_submit_cancel_cycles_never_run_two_analyses_at_once(url, extractor, long_clip):
    value, fn_index = _upload(url, long_clip), _fn_index(url)
    full = 79  # batches of a 120 s recording at a 1.5 s hop
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(4):
            session = uuid.uuid4().hex
            started = extractor.calls
            joined = http.post("/gradio_api/queue/join", json={"data": [value], "fn_index": fn_index,
                                                               "session_hash": session, "event_data": None})
            event_id = joined.json()["event_id"]
            _wait(lambda: extractor.calls > started)  # the analysis is running
            http.post("/gradio_api/cancel", json={"session_hash": session, "fn_index": fn_index, "event_id": event_id})
    _wait(lambda: extractor.running == 0)
    time.sleep(5 * PAUSE_S)
    assert extractor.peak == 1
    assert extractor.calls < full  # four cancelled analyses together ran less than one whole analysis


@pytest.mark.slow
def test_abandoned_event_streams_stop_their_analysis(url, extractor, long_clip):
    value = _upload(url, long_clip)
    for k in range(3):
        started = extractor.calls
        event_id = _call(url, value, forwarded_for=f"198.51.100.{k}").json()["event_id"]
        with httpx.stream("GET", f"{url}/gradio_api/call/analyze/{event_id}", timeout=30):
            _wait(lambda: extractor.calls > started)  # running, and someone listening
        # the stream is closed here: nobody waits for the result any more
    _wait(lambda: extractor.running == 0)
    time.sleep(5 * PAUSE_S)
    assert extractor.peak == 1
    assert extractor.calls < 79


@pytest.mark.slow
def test_a_flood_beyond_the_clients_share_is_refused_while_others_are_served(url, extractor, long_clip,
                                                                            short_clip, caplog):
    caplog.set_level(logging.INFO, logger="instrusense.app")
    value = _upload(url, long_clip)
    events = [_call(url, value, forwarded_for="192.0.2.50").json()["event_id"] for _ in range(30)]
    reasons = {event_id: _refusal(url, event_id, 2.0) for event_id in events}  # refusals end at once
    accepted = [e for e, reason in reasons.items() if reason is None]
    refused = [reason for reason in reasons.values() if reason is not None]
    assert len(accepted) == 2 and len(refused) == 28  # each long analysis runs seconds: none finished yet
    assert all("busy, try again in a moment" in r and "at most 2 per client" in r for r in refused), refused[:2]
    assert sum('outcome="busy"' in r.getMessage() for r in caplog.records) == 28

    client = Client(url + "/", verbose=False, headers={"X-Forwarded-For": "203.0.113.9"})
    fn_index = _fn_index(url)
    for event_id in accepted:  # the flood's own client gives up; its running analysis stops at its next batch
        httpx.post(f"{url}/gradio_api/cancel", json={"session_hash": event_id, "fn_index": fn_index,
                                                     "event_id": event_id})
    *_, record, _notes = client.predict(handle_file(str(short_clip)), api_name="/analyze")
    assert record["error"] is None and record["duration"] == pytest.approx(1.0)


@pytest.mark.slow
def test_a_busy_refusal_reaches_gradio_client_with_the_reason(url, extractor, long_clip, short_clip):
    """gradio_client turns any HTTP 503 at join into "Queue is full! Please try again."; the app's reason must reach it,
    as its other refusals do."""
    from gradio_client.exceptions import AppError

    value = _upload(url, long_clip)
    events = [_call(url, value, forwarded_for="192.0.2.77").json()["event_id"] for _ in range(2)]  # the client's share
    try:
        client = Client(url + "/", verbose=False, headers={"X-Forwarded-For": "192.0.2.77"})
        with pytest.raises(AppError, match="busy, try again in a moment: .*at most 2 per client"):
            client.predict(handle_file(str(short_clip)), api_name="/analyze")
    finally:
        fn_index = _fn_index(url)
        for event_id in events:
            httpx.post(f"{url}/gradio_api/cancel", json={"session_hash": event_id, "fn_index": fn_index,
                                                         "event_id": event_id})
        _wait(lambda: extractor.running == 0)


@pytest.mark.slow
def test_a_full_queue_refuses_new_clients_with_the_reason(url, extractor, long_clip):
    value = _upload(url, long_clip)
    events = [_call(url, value, forwarded_for=f"198.51.100.{k}").json()["event_id"] for k in range(8)]
    reasons = [_refusal(url, event_id, 2.0) for event_id in events]
    assert reasons[:6] == [None] * 6 and all(r is not None for r in reasons[6:])
    assert "6 recordings are queued or running (at most 6)" in reasons[-1]
    fn_index = _fn_index(url)
    for event_id in events[:6]:
        httpx.post(f"{url}/gradio_api/cancel", json={"session_hash": event_id, "fn_index": fn_index,
                                                     "event_id": event_id})
    _wait(lambda: extractor.running == 0)


@pytest.mark.parametrize("path", ["http://127.0.0.1:9/song.wav", "https://203.0.113.7/x.mp3", "/etc/passwd",
                                  "app.py", "../../../../etc/passwd"])
def test_is_stream_payloads_naming_paths_or_urls_are_refused(url, path, caplog):
    caplog.set_level(logging.INFO, logger="instrusense.app")
    value = {"path": path, "is_stream": True, "meta": {"_type": "gradio.FileData"}}
    event, data = _outcome(url, _call(url, value).json()["event_id"])
    assert event == "error"
    assert "URLs and server paths are not accepted" in json.loads(data)["error"]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith('request outcome="rejected"')]
    assert len(lines) == 1 and "not accepted" in lines[0]


def test_refusals_reach_api_clients_with_the_apps_message_and_no_traceback(url, tmp_path, capsys):
    bad = tmp_path / "binary.mp3"
    bad.write_bytes(Path("/bin/ls").read_bytes())
    client = Client(url + "/", verbose=False)
    with pytest.raises(Exception, match="Could not decode binary.mp3"):
        client.predict(handle_file(str(bad)), api_name="/analyze")
    event, data = _outcome(url, _call(url, {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}})
                           .json()["event_id"])
    assert json.loads(data)["error"] and "not accepted" in json.loads(data)["error"]
    assert "Traceback" not in capsys.readouterr().err


def test_a_partial_upload_leaves_no_file_behind(url, uploads, caplog):
    port = int(url.rsplit(":", 1)[1])
    boundary = "b" * 16
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"cut.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall((f"POST /gradio_api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {10 << 20}\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode() + head)
        sock.sendall(b"\0" * (256 << 10))  # a quarter of a megabyte of ten, then the client vanishes
        _wait(lambda: any(p.name.startswith("tmp") and p.stat().st_size > 0 for p in uploads.iterdir()), 10)
    _wait(lambda: not any(p.name.startswith("tmp") for p in uploads.iterdir()), 15)  # the scheduled clean-up
    assert any(r.getMessage() == "an upload was cut off by its client" for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback for an expected event


RSS_BOUND_MB = 400  # per request above idle, stated in the README


def _status_mb(key: str) -> float:
    return int(re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1)) / 1024


@pytest.fixture(scope="module")
def huge_rate_flac(tmp_path_factory):
    """0.1 MB of FLAC that decodes to 11 minutes at 384 kHz: 1 GB as float32 if decoded at once."""
    return silence_flac(tmp_path_factory.mktemp("huge") / "silence-384k.flac", 384000, "mono", 660)


@pytest.mark.slow
def test_a_tiny_file_claiming_gigabytes_stays_within_the_per_request_bound(tiny_whisper, huge_rate_flac, short_clip):
    script = f"""
import json, re, sys
from pathlib import Path
from instrusense.analysis import analyze_file
from instrusense.model import tagger_for
from instrusense.settings import load_settings

def mb(key):
    return int(re.search(rf"^{{key}}:\\s+(\\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1)) / 1024

settings = load_settings({{}}, model={tiny_whisper!r})
tagger = tagger_for(settings)
analyze_file({str(short_clip)!r}, tagger, settings)  # warm: the model and the resampler have run once
Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
idle = mb("VmRSS")
analysis = analyze_file({str(huge_rate_flac)!r}, tagger, settings)
print(json.dumps({{"idle": idle, "peak": mb("VmHWM"), "analysed": analysis.analysed_seconds}}))
"""
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\nHUGE-RATE FLAC: idle {result['idle']:.0f} MB, peak {result['peak']:.0f} MB "
          f"(+{result['peak'] - result['idle']:.0f} MB; bound +{RSS_BOUND_MB} MB)")
    assert result["analysed"] == pytest.approx(600.0)
    assert result["peak"] - result["idle"] < RSS_BOUND_MB


@pytest.mark.slow
def test_cancel_cycles_with_a_huge_rate_file_keep_the_server_within_its_bound(url, huge_rate_flac, caplog):
    caplog.set_level(logging.INFO, logger="instrusense.app")
    value, fn_index = _upload(url, huge_rate_flac), _fn_index(url)
    Path("/proc/self/clear_refs").write_text("5")  # the server runs in this process
    idle = _status_mb("VmRSS")
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(3):
            session = uuid.uuid4().hex
            event_id = http.post("/gradio_api/queue/join", json={"data": [value], "fn_index": fn_index,
                                                                 "session_hash": session, "event_data": None}
                                 ).json()["event_id"]
            time.sleep(0.5)
            http.post("/gradio_api/cancel", json={"session_hash": session, "fn_index": fn_index, "event_id": event_id})
    done = lambda: sum(huge_rate_flac.name in r.getMessage() for r in caplog.records) >= 3  # noqa: E731
    _wait(done, 120)
    peak = _status_mb("VmHWM")
    print(f"\nCANCEL CYCLES (384 kHz FLAC x 3): RSS idle {idle:.0f} MB, peak {peak:.0f} MB (+{peak - idle:.0f} MB)")
    assert peak - idle < RSS_BOUND_MB


def test_the_browser_keeps_the_reason_beside_the_input(url, tmp_path):
    """What the page does after a refusal: it runs the failure listener, which shows why, until a success."""
    config = httpx.get(f"{url}/config", timeout=10).json()
    refusal = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "refusal")
    on_failure = next(d["id"] for d in config["dependencies"]
                      if d.get("trigger_only_on_failure") and refusal in d["outputs"])
    bad = tmp_path / "notes.wav"
    bad.write_bytes(b"these are my notes, not audio\n" * 40)
    session = uuid.uuid4().hex
    with httpx.Client(base_url=url, timeout=30) as http:
        http.post("/gradio_api/queue/join", json={"data": [_upload(url, bad)], "fn_index": _fn_index(url),
                                                  "session_hash": session, "event_data": None})
        stream = http.get("/gradio_api/queue/data", params={"session_hash": session}).text
        assert '"msg":"process_completed"' in stream.replace(" ", "") and "Could not decode" in stream
        shown = http.post("/gradio_api/run/predict", json={"fn_index": on_failure, "data": [],
                                                          "session_hash": session}).json()
    assert shown["data"] == ["**Not analysed:** Could not decode notes.wav as audio: the file is not a recording "
                             "in a readable format, or it is corrupt. Readable formats: WAV, FLAC, OGG/Vorbis, Opus, "
                             "MP3, AIFF, and M4A/AAC/WebM where FFmpeg is installed."]


@pytest.mark.slow
def test_a_killed_client_stops_its_analysis_with_nothing_else_queued(url, extractor, long_clip):
    """Gradio's queue object is false while nothing else waits: the abandonment must be seen all the same."""
    started = extractor.calls
    script = (f"from gradio_client import Client, handle_file\n"
              f"Client({url + '/'!r}, verbose=False).predict(handle_file({str(long_clip)!r}), api_name='/analyze')\n")
    client = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: extractor.calls > started + 2, 60)  # the analysis is running, and nothing else is queued
    finally:
        client.kill()
        client.wait()
    time.sleep(2.0)
    after_two_seconds = extractor.calls
    time.sleep(1.0)
    assert extractor.running == 0 and extractor.calls == after_two_seconds  # stopped within 2 s of the kill
    assert extractor.calls - started < 79  # far from the whole 120 s recording


@pytest.fixture(scope="module")
def slow_to_decode(tmp_path_factory):
    """0.1 MB of 8-channel 384 kHz FLAC silence: seconds of decoding and resampling before any model batch."""
    return silence_flac(tmp_path_factory.mktemp("slow") / "surround-384k.flac", 384000, "7.1", 300)


@pytest.mark.slow
def test_a_cancel_frees_the_slot_while_the_file_is_still_decoding(url, slow_to_decode, caplog):
    caplog.set_level(logging.INFO, logger="instrusense.app")
    value, fn_index = _upload(url, slow_to_decode), _fn_index(url)
    session = uuid.uuid4().hex
    with httpx.Client(base_url=url, timeout=30) as http:
        event_id = http.post("/gradio_api/queue/join", json={"data": [value], "fn_index": fn_index,
                                                             "session_hash": session, "event_data": None}
                             ).json()["event_id"]
        time.sleep(1.0)  # decoding: no model batch has run yet
        http.post("/gradio_api/cancel", json={"session_hash": session, "fn_index": fn_index, "event_id": event_id})
    cancelled = time.monotonic()
    ended = lambda: any(slow_to_decode.name in r.getMessage() for r in caplog.records)  # noqa: E731
    _wait(ended, 60)
    assert time.monotonic() - cancelled < 5.0
    line = next(r.getMessage() for r in caplog.records if slow_to_decode.name in r.getMessage())
    assert 'outcome="cancelled"' in line


def _wav_header_only(path: Path, channels: int, rate: int = 44100) -> Path:
    """A PCM WAV whose header claims `channels` channels, with a little data."""
    import struct

    block = channels * 2
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, 16)
    data = b"\0" * (block * 10)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def test_a_header_claiming_a_thousand_channels_is_refused_as_such(url, tmp_path):
    value = _upload(url, _wav_header_only(tmp_path / "many.wav", 1000))
    event, data = _outcome(url, _call(url, value).json()["event_id"])
    assert event == "error"
    assert "1000 audio channels" in json.loads(data)["error"] and "too short" not in json.loads(data)["error"]


def test_an_undecodable_file_is_logged_without_server_paths(url, uploads, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    bad = tmp_path / "notes.mp3"
    bad.write_bytes(b"these are my notes, not audio\n" * 40)
    event, data = _outcome(url, _call(url, _upload(url, bad)).json()["event_id"])
    assert event == "error" and "Could not decode notes.mp3" in json.loads(data)["error"]
    lines = [r.getMessage() for r in caplog.records if "notes.mp3" in r.getMessage()]
    assert any("cannot decode notes.mp3" in line for line in lines)
    assert not [line for line in lines if str(uploads) in line or "/tmp" in line]


@pytest.fixture(scope="module")
def served(tiny_whisper, tmp_path_factory):
    """`python app.py` in its own process, as a Space starts it: its port from GRADIO_SERVER_PORT, its stderr
    kept in a file."""
    import os

    folder = tmp_path_factory.mktemp("served")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSTRUSENSE_")}
    env.update(GRADIO_SERVER_PORT=str(port), INSTRUSENSE_MODEL=tiny_whisper, GRADIO_ANALYTICS_ENABLED="False",
               GRADIO_TEMP_DIR=str(folder))
    stderr = (folder / "stderr.txt").open("w")
    app = subprocess.Popen([sys.executable, "app.py"], cwd=Path(__file__).resolve().parents[1], env=env,
                           stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"http://127.0.0.1:{port}"

    def serving() -> bool:
        assert app.poll() is None, (folder / "stderr.txt").read_text()[-3000:]
        try:
            return httpx.get(f"{url}/config", timeout=2).status_code == 200
        except httpx.HTTPError:
            time.sleep(0.5)
            return False

    try:
        _wait(serving, 120)
        yield url, folder / "stderr.txt"
    finally:
        app.terminate()
        app.wait(timeout=30)
        stderr.close()


@pytest.mark.slow
def test_python_app_py_listens_on_gradio_server_port(served):
    url, _ = served
    assert httpx.get(f"{url}/config", timeout=10).status_code == 200


@pytest.mark.slow
def test_a_decoder_flood_stays_out_of_the_servers_stderr(served, tmp_path):
    """5000 MPEG Layer-I frame headers with too little data each: libmpg123 writes two lines per frame."""
    import numpy as np

    url, stderr = served
    rng = np.random.default_rng(0)
    flood = tmp_path / "flood.mp3"
    frames = b"".join(bytes([0xFF, 0xFF, 0x10, 0x00]) + rng.bytes(28) for _ in range(5000))
    flood.write_bytes(frames + rng.bytes(1_500_000 - len(frames)))
    before = len(stderr.read_text().splitlines())
    event, _data = _outcome(url, _call(url, _upload(url, flood)).json()["event_id"])
    assert event in ("complete", "error")  # whatever the decoders make of it, the request ends
    _wait(lambda: "flood.mp3" in stderr.read_text(), 10)  # the request's own log line
    added = stderr.read_text().splitlines()[before:]
    assert len(added) < 20, added[:5]
    assert not [line for line in added if "libmpg123" in line]


@pytest.mark.slow
def test_live_stream_joins_cannot_lock_out_the_analysis(url, short_clip):
    """16 joins of the live handler from 4 addresses: live sessions have their own bound, so a 17th user from a
    new address still gets an analysis."""
    config = httpx.get(f"{url}/config", timeout=10).json()
    live = next(d["id"] for d in config["dependencies"] if any(t[1] == "stream" for t in d["targets"]))
    value = _upload(url, short_clip)
    sessions, codes = [], []
    with httpx.Client(base_url=url, timeout=30) as http:
        for k in range(16):
            session = uuid.uuid4().hex
            joined = http.post("/gradio_api/queue/join", headers={"X-Forwarded-For": f"198.51.100.{k % 4}"},
                               json={"data": [value, None], "fn_index": live, "session_hash": session,
                                     "event_data": None})
            codes.append(joined.status_code)
            if joined.status_code == 200:
                sessions.append((session, joined.json()["event_id"]))
        try:
            assert codes == [200] * 16
            refused = [_session_refusal(url, session, 3.0) for session, _ in sessions]
            assert sum(r is None for r in refused) <= 4  # one live session per address
            assert all("live sessions" in r for r in refused if r is not None)
            started = time.monotonic()
            client = Client(url + "/", verbose=False, headers={"X-Forwarded-For": "203.0.113.17"})
            *_, record, _notes = client.predict(handle_file(str(short_clip)), api_name="/analyze")
            assert record["error"] is None and time.monotonic() - started < 10.0
        finally:
            for session, event_id in sessions:
                http.post("/gradio_api/cancel", json={"session_hash": session, "fn_index": live, "event_id": event_id})


@pytest.mark.slow
def test_a_cancelled_job_ends_with_the_apps_words(url, extractor, long_clip):
    """What the server sends on a cancel: the app's words as the event's error (before, the cancelled event
    completed as a success with no output, and gradio_client raised a KeyError on it)."""
    value, fn_index = _upload(url, long_clip), _fn_index(url)
    session, started = uuid.uuid4().hex, extractor.calls
    with httpx.Client(base_url=url, timeout=30) as http, ThreadPoolExecutor(1) as pool:
        joined = http.post("/gradio_api/queue/join", json={"data": [value], "fn_index": fn_index,
                                                           "session_hash": session, "event_data": None})
        completion = pool.submit(_completion, url, session)
        _wait(lambda: extractor.calls > started, 60)
        http.post("/gradio_api/cancel", json={"session_hash": session, "fn_index": fn_index,
                                              "event_id": joined.json()["event_id"]})
        message = completion.result(timeout=30)
    assert not message["success"]
    assert message["output"]["error"] == "The request was cancelled."
    _wait(lambda: extractor.running == 0)


@pytest.mark.slow
def test_a_cancelled_gradio_client_job_ends_in_a_cancel_error(url, extractor, long_clip):
    """gradio_client 2.7.2 races its own cancel against the server's reply (utils.get_pred_from_sse_v1plus
    returns whichever finishes first): the job ends with its CancelledError or with an AppError carrying
    the app's words, never with anything else (it was a KeyError)."""
    from concurrent.futures import CancelledError

    from gradio_client.exceptions import AppError

    started = extractor.calls
    job = Client(url + "/", verbose=False).submit(handle_file(str(long_clip)), api_name="/analyze")
    _wait(lambda: extractor.calls > started, 60)
    assert job.cancel()
    with pytest.raises((AppError, CancelledError)) as ended:
        job.result(timeout=30)
    if isinstance(ended.value, AppError):
        assert "The request was cancelled" in str(ended.value)
    _wait(lambda: extractor.running == 0)


@pytest.mark.slow
def test_the_time_limit_stops_a_file_that_is_still_decoding(settings, slow_to_decode):
    """The handler's deadline is a stop signal (app.make_analyze); decoding sees it between blocks."""
    from instrusense.analysis import analyze_file
    from instrusense.stopping import Stopped

    tagger = tagger_for(settings)
    started = time.monotonic()
    with pytest.raises(Stopped):
        analyze_file(slow_to_decode, tagger, settings, lambda: time.monotonic() > started + 1.0)
    assert time.monotonic() - started < 3.0  # decoding it whole takes several seconds
