"""Live benchmark: ``python -m benchmarks.live --model models/instrusense --out benchmarks/live_results.json``.

Two measurements. *Paced pipe*: ``python -m instrusense stream --rate 44100 --channels 2`` fed raw PCM at
real-time speed in 20 ms blocks (as ``arecord`` or ``ffmpeg -re`` would); each hop line's latency is its
arrival time minus the moment the audio it covers had been written. Its final line is compared with
``analyze --json`` of the same audio. *Live listeners*: the app served in this process, N headless
Chromium pages whose fake microphones play examples/medley.flac, all recording at once; each live update's
latency is the moment the server's handler returned it minus the moment the newest audio it covers was
captured (estimated from the session's first chunk; the browser's rendering, a few ms, is not counted).
Writes the JSON results and a markdown table beside them (``.md``); ``--screenshot`` saves one page's live
view for the README. Run by hand; the machine and its load are recorded with the figures.
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


def live_listeners(model: str, listeners: int, seconds: float, workdir: Path, screenshot: Path | None) -> dict:
    """N Chromium pages recording at once against the app served here; latency of every live update."""
    from playwright.sync_api import sync_playwright

    import app
    import app_live

    samples, rate = sf.read(str(REPO_ROOT / "examples" / "medley.flac"), dtype="float32")
    mic = workdir / "medley48k.wav"
    sf.write(str(mic), resample(samples, rate, 48000), 48000, subtype="PCM_16")
    updates: dict[int, list[tuple[float, float, float, float]]] = {}
    make_live = app_live.make_live

    def timed_make_live(settings, tagger, analyze):
        on_chunk, on_stop = make_live(settings, tagger, analyze)

        def timed_chunk(chunk, session):
            begun = time.monotonic()
            ranking, plot, session = on_chunk(chunk, session)
            if chunk is not None and session is not None:
                history = session.analyser.history
                updates.setdefault(id(session), []).append(
                    (begun, time.monotonic(), session.analyser.seconds, history[-1].time if history else 0.0))
            return ranking, plot, session

        return timed_chunk, on_stop

    app_live.make_live = timed_make_live
    try:
        demo = app.build_app(load_settings({}, model=model))
    finally:
        app_live.make_live = make_live
    from benchmarks.procs import free_port

    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    loads = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM,
                                        args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={mic}"])
            pages = [browser.new_page(viewport={"width": 1280, "height": 1000}) for _ in range(listeners)]
            for page in pages:
                page.goto(f"http://127.0.0.1:{port}/")
            for page in pages:
                page.get_by_role("button", name="Record").first.click()
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                time.sleep(5)
                loads.append(load_average())
                if screenshot and 11.0 <= time.monotonic() - started < 16.5:
                    screenshot.parent.mkdir(parents=True, exist_ok=True)
                    pages[0].locator(".gradio-container").screenshot(path=str(screenshot))
                    screenshot = None
            for page in pages:
                page.get_by_role("button", name="Stop").first.click()
            time.sleep(10)
            browser.close()
    finally:
        demo.close()
    latencies, oldest, compute, per_session = [], [], [], []
    for rows in updates.values():
        first_begun, _, first_seconds, _ = rows[0]
        captured_from = first_begun - first_seconds  # the session's audio began this long before its first chunk
        session = [end - (captured_from + hop_s) for _, end, _, hop_s in rows if hop_s > 0]
        latencies += session
        # the sound first shown by an update starts just after the previous update's newest window
        oldest += [end - (captured_from + prev) for (_, _, _, prev), (_, end, _, hop_s) in zip(rows, rows[1:])
                   if hop_s > prev]
        compute += [end - begun for begun, end, _, _ in rows]
        per_session.append({"updates": len(rows), "audio_seconds": rows[-1][2],
                            "update_interval_p50": float(np.median(np.diff([r[1] for r in rows]))),
                            "latency": percentiles(session)})
    return {"listeners": listeners, "seconds": seconds, "sessions_seen": len(updates),
            "latency": percentiles(latencies), "latency_oldest_new_sound": percentiles(oldest),
            "handler_seconds": percentiles(compute), "per_session": per_session,
            "load_average_during": loads}


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
    parser.add_argument("--listen-seconds", type=float, default=40.0)
    parser.add_argument("--screenshot", type=Path, default=None, help="save one page's live view here (png)")
    parser.add_argument("--skip", choices=["pipe", "listeners"], action="append", default=[])
    args = parser.parse_args(argv)
    results = {"machine": machine_record(), "model": args.model}
    with tempfile.TemporaryDirectory() as tmp:
        if "pipe" not in args.skip:
            results["pipe"] = paced_pipe(args.model, args.pipe_seconds, Path(tmp))
        if "listeners" not in args.skip:
            results["listeners"] = live_listeners(args.model, args.listeners, args.listen_seconds, Path(tmp),
                                                  args.screenshot)
    results["load_average_end"] = load_average()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    table = render_markdown(results)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
