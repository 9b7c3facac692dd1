"""The Space under a session of hostile requests: `python app.py` on the shipped model in its own process, then
mixed requests (good recordings, corrupt and fake files, a 384 kHz FLAC of 11 minutes, an MP3 that floods the
decoder, a header claiming 1000 channels, cancels and abandoned event streams), one at a time over raw HTTP.

Reports the server's idle RSS before and after, the peak RSS above idle per kind of request, how long each
kind took, and how many lines the server wrote to stderr. The figures in docs/space-limits.md come from here:

    .venv/bin/python -m benchmarks.space_limits [--requests 200] [--out benchmarks/space_limits]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from benchmarks.machine import machine_record

REPO = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024


class PeakSampler:
    """The process's highest RSS since the last `reset`, sampled every 20 ms on a thread."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except (OSError, AttributeError):
                return

    def reset(self) -> None:
        self.peak = 0.0

    def stop(self) -> None:
        self._stop.set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_files(folder: Path) -> dict[str, Path]:
    """One file per kind of request."""
    rng = np.random.default_rng(0)
    files = {name: REPO / "examples" / f"{name}.flac" for name in ("medley", "saxophone")}
    files["corrupt"] = folder / "corrupt.wav"
    files["corrupt"].write_bytes(b"RIFF" + rng.bytes(50_000))
    files["text"] = folder / "notes.mp3"
    files["text"].write_bytes(b"these are my notes, not audio\n" * 100)
    frames = b"".join(bytes([0xFF, 0xFF, 0x10, 0x00]) + rng.bytes(28) for _ in range(5000))
    files["flood"] = folder / "flood.mp3"
    files["flood"].write_bytes(frames + rng.bytes(1_500_000 - len(frames)))
    block = 1000 * 2
    fmt = struct.pack("<HHIIHH", 1, 1000, 44100, 44100 * block, block, 16)
    data = b"\0" * (block * 10)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    files["channels"] = folder / "many-channels.wav"
    files["channels"].write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    files["huge_rate"] = folder / "silence-384k.flac"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=384000:cl=mono", "-t", "660",
                    "-c:a", "flac", "-sample_fmt", "s16", str(files["huge_rate"])], check=True)
    files["tone_10min"] = folder / "tone-10min.flac"
    t = np.arange(600 * 16000) / 16000
    sf.write(str(files["tone_10min"]), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    return files


# kind of request: (file, how) — how: wait for the result, cancel after 0.5 s, or drop the event stream at once
PLAN = [("medley", "wait"), ("corrupt", "wait"), ("saxophone", "wait"), ("text", "wait"), ("flood", "wait"),
        ("channels", "wait"), ("medley", "cancel"), ("huge_rate", "cancel"), ("tone_10min", "abandon"),
        ("saxophone", "abandon")]
OCCASIONAL = [("huge_rate", "wait"), ("tone_10min", "wait")]  # slow ones: every 25th request


def upload(http: httpx.Client, path: Path) -> dict:
    with path.open("rb") as f:
        stored = http.post("/gradio_api/upload", files={"files": (path.name, f)}).json()[0]
    return {"path": stored, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def request(http: httpx.Client, fn_index: int, value: dict, how: str) -> None:
    if how == "wait":
        event_id = http.post("/gradio_api/call/analyze", json={"data": [value]}).json()["event_id"]
        http.get(f"/gradio_api/call/analyze/{event_id}", timeout=300)
        return
    session = uuid.uuid4().hex
    joined = http.post("/gradio_api/queue/join", json={"data": [value], "fn_index": fn_index, "session_hash": session,
                                                       "event_data": None}).json()
    if how == "cancel":
        time.sleep(0.5)
        http.post("/gradio_api/cancel", json={"session_hash": session, "fn_index": fn_index,
                                              "event_id": joined["event_id"]})
    else:  # abandon: open the event stream and drop it
        with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            next(stream.iter_lines(), None)


def settle(pid: int, seconds: float = 8.0) -> float:
    """Idle RSS once the server has had `seconds` to finish what was cancelled or abandoned."""
    time.sleep(seconds)
    return rss_mb(pid)


def run(requests: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="instrusense-space-"))
    files = make_files(work)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSTRUSENSE_")}
    env.update(GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(work / "gradio"),
               HF_HUB_OFFLINE="1")
    stderr_path = work / "stderr.txt"
    with stderr_path.open("w") as stderr:
        server = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                  stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if http.get("/config").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"the app did not start: {stderr_path.read_text()[-2000:]}")
                time.sleep(0.5)
            fn_index = next(d["id"] for d in http.get("/config").json()["dependencies"] if d.get("api_name") == "analyze")
            request(http, fn_index, upload(http, files["medley"]), "wait")  # warm: model loaded and run once
            idle_before = settle(server.pid)
            sampler = PeakSampler(server.pid)
            peaks: dict[str, list[float]] = defaultdict(list)
            seconds: dict[str, list[float]] = defaultdict(list)
            started = time.monotonic()
            for k in range(requests):
                name, how = OCCASIONAL[(k // 25) % len(OCCASIONAL)] if k % 25 == 24 else PLAN[k % len(PLAN)]
                value = upload(http, files[name])
                base = rss_mb(server.pid)
                sampler.reset()
                t0 = time.monotonic()
                request(http, fn_index, value, how)
                seconds[f"{name} ({how})"].append(time.monotonic() - t0)
                time.sleep(0.3 if how != "wait" else 0.05)
                peaks[f"{name} ({how})"].append(max(sampler.peak, base) - base)
            total = time.monotonic() - started
            sampler.stop()
            idle_after = settle(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    lines = stderr_path.read_text(errors="replace").splitlines()
    return {
        "machine": machine_record(),
        "requests": requests,
        "seconds": round(total, 1),
        "idle_rss_mb": {"before": round(idle_before, 1), "after": round(idle_after, 1)},
        "peak_above_start_mb": {k: {"n": len(v), "max": round(max(v), 1), "median": round(float(np.median(v)), 1)}
                                for k, v in sorted(peaks.items())},
        "request_seconds": {k: {"max": round(max(v), 2), "median": round(float(np.median(v)), 2)}
                            for k, v in sorted(seconds.items())},
        "stderr_lines": len(lines),
        "stderr_decoder_lines": sum("libmpg123" in line for line in lines),
    }


def markdown(result: dict) -> str:
    idle = result["idle_rss_mb"]
    out = [f"`python -m benchmarks.space_limits --requests {result['requests']}`: {result['requests']} requests one "
           f"at a time in {result['seconds']:g} s against `python app.py` (shipped model, int8) on "
           f"{result['machine'].get('cpu_model', 'this machine')} ({result['machine'].get('cpu_affinity')} cores).", "",
           f"- Server idle RSS: {idle['before']:g} MB after one warm-up analysis, {idle['after']:g} MB after the "
           f"{result['requests']} requests.",
           f"- Server stderr: {result['stderr_lines']} lines in all, {result['stderr_decoder_lines']} of them "
           "from libmpg123.", "",
           "| request (file, how) | n | peak RSS above its start, median / max (MB) | seconds, median / max |",
           "|---|---:|---:|---:|"]
    for key, peak in result["peak_above_start_mb"].items():
        t = result["request_seconds"][key]
        out.append(f"| {key} | {peak['n']} | {peak['median']:g} / {peak['max']:g} | {t['median']:g} / {t['max']:g} |")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "space_limits")
    args = parser.parse_args()
    result = run(args.requests)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
