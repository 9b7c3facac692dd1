"""Live benchmark: ``python -m benchmarks.live --model models/instrusense --out benchmarks/live_results.json``.

Two measurements. *Paced pipe*: ``python -m instrusense stream --rate 44100 --channels 2`` fed raw PCM at
real-time speed in 20 ms blocks (as ``arecord`` or ``ffmpeg -re`` would); each hop line's latency is its
arrival time minus the moment the audio it covers had been written. Its final line is compared with
``analyze --json`` of the same audio. *Live listeners*: N sessions at once through the app's live handler,
fed examples/medley.flac in real-time chunks as Gradio hands a browser's chunks over; an update's latency is
when the handler returned minus when the newest audio it shows was played (transport and the browser's
drawing, a few ms on a local network, are not counted). Writes the JSON results and a markdown table beside
them (``.md``); ``--screenshot`` saves the live view of headless Chromium (fake microphone playing the medley)
for the README. Run by hand; the machine and its load are recorded with the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks import recordings, report
from benchmarks.machine import load_average, machine_record
from instrusense.audio import resample
from instrusense.settings import DEFAULT_MODEL, REPO_ROOT, load_settings

PIPE_RATE, PIPE_CHANNELS, BLOCK_S = 44_100, 2, 0.02
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream"]


def percentiles(values: list[float]) -> dict:
    """Median, 95th percentile and maximum, in seconds (None for no values)."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    v = np.asarray(values)
    return {"n": len(v), "p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "max": float(v.max())}


def paced_pipe(model: str, seconds: float, workdir: Path) -> dict:
    """Hop-line latencies of `stream` on raw PCM written at real-time speed, and final == analyze."""
    pcm = np.round(recordings.synth_music(seconds, PIPE_RATE) * 32767).astype("<i2")
    wav = workdir / "paced.wav"
    sf.write(str(wav), pcm, PIPE_RATE, subtype="PCM_16")
    cmd = [sys.executable, "-m", "instrusense", "stream", "--model", model, "--rate", str(PIPE_RATE),
           "--channels", str(PIPE_CHANNELS)]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ready, arrivals = threading.Event(), []

    def watch_stderr() -> None:
        for line in proc.stderr:
            if b"loaded" in line:
                ready.set()
        ready.set()

    def read_stdout() -> None:
        for line in proc.stdout:
            arrivals.append((time.monotonic(), json.loads(line)))

    threading.Thread(target=watch_stderr, daemon=True).start()
    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    ready.wait(300)  # the model is loaded: from here on the producer is paced like a live source
    block = round(BLOCK_S * PIPE_RATE)
    started = time.monotonic()
    for i in range(0, len(pcm), block):
        end_s = min(i + block, len(pcm)) / PIPE_RATE
        delay = started + end_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # this block's audio "happens" until end_s; it is written once it has
        proc.stdin.write(pcm[i:i + block].tobytes())
        proc.stdin.flush()
    proc.stdin.close()
    proc.wait(600)
    reader.join(60)
    hops = [(arrived, line) for arrived, line in arrivals if "time" in line]
    latencies = [arrived - (started + line["time"]) for arrived, line in hops]
    analyzed = subprocess.run([sys.executable, "-m", "instrusense", "analyze", "--json", "--model", model, str(wav)],
                              cwd=REPO_ROOT, capture_output=True, timeout=600)
    expected = {**json.loads(analyzed.stdout)[0], "file": "-"}
    return {"audio_seconds": seconds, "rate": PIPE_RATE, "channels": PIPE_CHANNELS, "block_seconds": BLOCK_S,
            "hop_lines": len(hops), "latency": percentiles(latencies),
            "final_equals_analyze": bool(arrivals) and arrivals[-1][1] == expected}


def _medley_48k(workdir: Path) -> tuple[Path, np.ndarray]:
    """examples/medley.flac as a 48 kHz 16-bit WAV (what a browser microphone delivers) and its samples."""
    samples, rate = sf.read(str(REPO_ROOT / "examples" / "medley.flac"), dtype="float32")
    pcm = np.round(resample(samples, rate, 48000) * 32767).astype(np.int16)
    path = workdir / "medley48k.wav"
    sf.write(str(path), pcm, 48000, subtype="PCM_16")
    return path, pcm


def live_listeners(model: str, listeners: int, seconds: float, workdir: Path) -> dict:
    """N sessions at once through the app's live handler, each fed 48 kHz int16 chunks every
    INSTRUSENSE_LIVE_HOP_SECONDS in real time (as Gradio hands a browser's chunks over); the latency of an update
    is when the handler returned minus when the newest audio it shows had been played. Transport and the
    browser's drawing are not included; the chunking is (the oldest sound of a chunk waits one hop more)."""
    import app_live
    from instrusense.model import tagger_for

    settings = load_settings({}, model=model)
    on_chunk, _ = app_live.make_live(settings, tagger_for(settings), analyze=lambda path: ())
    _, pcm = _medley_48k(workdir)
    chunk = round(settings.live_hop_seconds * 48000)
    loops = int(np.ceil(seconds * 48000 / len(pcm)))
    audio = np.tile(pcm, loops)[:round(seconds * 48000)]
    rows: list[list[tuple[float, float]]] = [[] for _ in range(listeners)]
    started = time.monotonic() + 1.0

    def listener(i: int) -> None:
        session, offset = None, i * 0.1  # the sessions' chunks do not arrive in lockstep
        for k, at in enumerate(range(0, len(audio), chunk)):
            played = started + offset + min(at + chunk, len(audio)) / 48000
            time.sleep(max(0.0, played - time.monotonic()))
            begun = time.monotonic()
            _, _, session = on_chunk((48000, audio[at:at + chunk]), session)
            rows[i].append((time.monotonic() - played, time.monotonic() - begun))

    threads = [threading.Thread(target=listener, args=(i,)) for i in range(listeners)]
    loads = [load_average()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loads.append(load_average())
    latencies = [lat for r in rows for lat, _ in r]
    return {"listeners": listeners, "seconds": seconds, "hop_seconds": settings.live_hop_seconds,
            "stream_threads": settings.stream_threads, "latency": percentiles(latencies),
            "handler_seconds": percentiles([h for r in rows for _, h in r]),
            "per_session_latency_p95": [percentiles([lat for lat, _ in r])["p95"] for r in rows],
            "load_average": loads}


def screenshot_live_view(model: str, path: Path, workdir: Path, seconds: float = 14.0) -> None:
    """The app's live view after `seconds` of Chromium's fake microphone playing the medley."""
    from playwright.sync_api import sync_playwright

    import app
    from benchmarks.procs import free_port

    mic, _ = _medley_48k(workdir)
    demo = app.build_app(load_settings({}, model=model))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM,
                                        args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={mic}"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("button", name="Record").first.click()
            started = time.monotonic()
            page.locator("#live-now [data-testid=label-output-value]").wait_for(timeout=120_000)  # first update
            page.wait_for_timeout(max(0.0, seconds - (time.monotonic() - started)) * 1000)
            path.parent.mkdir(parents=True, exist_ok=True)
            page.locator("#live").screenshot(path=str(path))
            browser.close()
    finally:
        demo.close()


def render_markdown(results: dict) -> str:
    pipe, live = results.get("pipe"), results.get("listeners")
    rows = []
    if pipe:
        lat = pipe["latency"]
        rows.append([f"`stream`, paced pipe ({pipe['audio_seconds']:g} s, {pipe['hop_lines']} hop lines)",
                     report.fmt(lat["p50"]), report.fmt(lat["p95"]), report.fmt(lat["max"]),
                     "final == analyze: " + ("yes" if pipe["final_equals_analyze"] else "NO")])
    if live:
        lat, cmp = live["latency"], live["handler_seconds"]
        rows.append([f"app, {live['listeners']} live listeners ({live['seconds']:g} s, {lat['n']} updates)",
                     report.fmt(lat["p50"]), report.fmt(lat["p95"]), report.fmt(lat["max"]),
                     f"handler p50 {report.fmt(cmp['p50'], 3)} s, p95 {report.fmt(cmp['p95'], 3)} s"])
    m = results["machine"]
    head = (f"Machine: {m['cpu_model']}, {m['cpu_count']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
            f"code {m['code_version']}; load average at start {m['load_average_start']}, "
            f"at end {results.get('load_average_end')}.")
    return head + "\n\n" + report.markdown_table(["measured", "latency p50 (s)", "p95 (s)", "max (s)", "note"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.live", description=__doc__.split("\n\n")[1])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/live_results.json"))
    parser.add_argument("--pipe-seconds", type=float, default=60.0)
    parser.add_argument("--listeners", type=int, default=4)
    parser.add_argument("--listen-seconds", type=float, default=60.0)
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="save the live view of a Chromium page whose fake microphone plays the medley (png)")
    parser.add_argument("--skip", choices=["pipe", "listeners"], action="append", default=[])
    args = parser.parse_args(argv)
    results = {"machine": machine_record(), "model": args.model}
    with tempfile.TemporaryDirectory() as tmp:
        if "pipe" not in args.skip:
            results["pipe"] = paced_pipe(args.model, args.pipe_seconds, Path(tmp))
        if "listeners" not in args.skip:
            results["listeners"] = live_listeners(args.model, args.listeners, args.listen_seconds, Path(tmp))
        if args.screenshot:
            screenshot_live_view(args.model, args.screenshot, Path(tmp))
    results["load_average_end"] = load_average()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    table = render_markdown(results)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
