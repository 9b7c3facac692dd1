"""The upload folder under pressure (raw HTTP against `python app.py`'s app in this process): a burst of uploads
never takes it past its bound, a slow upload is not deleted under its client, and the examples' cached copies
survive clean-up.

The server here has a 1 MB upload budget, uploads expire after 3 s and clean-up runs every second.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from conftest import free_port
from instrusense.settings import load_settings

BUDGET_MB = 1.0
MAX_AGE_S = 3.0


@pytest.fixture(scope="module")
def url(tiny_whisper, uploads):
    import app

    settings = load_settings({}, model=tiny_whisper, upload_max_total_mb=BUDGET_MB,
                             upload_max_age_seconds=MAX_AGE_S, cleanup_interval_seconds=1.0)
    demo = app.build_app(settings)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **app.launch_options(demo, settings))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        demo.close()


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _examples_cached(uploads: Path) -> set[str]:
    return {f.name for f in uploads.glob("*/*.flac")}


def test_uploads_beyond_the_folder_bound_are_refused_at_once(url, uploads):
    time.sleep(MAX_AGE_S + 1.5)  # earlier tests' uploads have expired
    base = _folder_bytes(uploads)  # the examples' cached copies
    payload = os.urandom(300_000)
    codes, peak = [], 0
    with httpx.Client(base_url=url, timeout=30) as http:
        for k in range(8):
            response = http.post("/gradio_api/upload", files={"files": (f"part{k}.wav", payload, "audio/wav")})
            codes.append(response.status_code)
            peak = max(peak, _folder_bytes(uploads))
            if response.status_code == 503:
                assert "upload space is full" in response.json()["detail"]
    assert 503 in codes and codes.index(503) > 0  # the first ones fit, the rest wait for room
    assert peak <= base + BUDGET_MB * 1e6 + 300_000  # never more than one upload past the bound


def test_a_stalled_upload_is_not_deleted_under_its_client(url, uploads):
    time.sleep(MAX_AGE_S + 1.5)
    port = int(url.rsplit(":", 1)[1])
    boundary = "s" * 16
    body = os.urandom(200_000)
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"slow.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + len(body) + len(tail)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall((f"POST /gradio_api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\nConnection: close\r\n\r\n").encode()
                     + head + body[:100_000])
        time.sleep(4.0)  # longer than clean-up's idle time for partial files (1 s), with clean-up running each second
        sock.sendall(body[100_000:] + tail)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
    stored = Path(reply.split(b"\r\n\r\n", 1)[1].decode().strip().strip("[]").strip('"'))
    assert stored.is_file() and stored.read_bytes() == body


def test_the_examples_cached_copies_survive_clean_up(url, uploads):
    assert _examples_cached(uploads) == {"acoustic_guitar.flac", "medley.flac", "saxophone.flac"}
    old = time.time() - 3600
    for entry in uploads.iterdir():  # an hour old: far past the 3 s age bound
        os.utime(entry, (old, old))
    with httpx.Client(base_url=url, timeout=30) as http:
        stored = http.post("/gradio_api/upload", files={"files": ("fresh.wav", b"RIFF" + bytes(100), "audio/wav")})
    fresh = Path(stored.json()[0])
    os.utime(fresh.parent, (old, old))
    deadline = time.monotonic() + 10
    while fresh.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not fresh.exists()  # an ordinary upload that old goes
    assert _examples_cached(uploads) == {"acoustic_guitar.flac", "medley.flac", "saxophone.flac"}  # the examples stay
