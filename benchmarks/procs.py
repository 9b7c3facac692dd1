"""Measurements that need a fresh process: cold starts, the CLI batch, and per-recording peak memory."""

from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from instrusense.settings import REPO_ROOT

MODEL_LOADED_MARK = "instrusense.model: loaded "  # the INFO line `load_tagger` logs once the model is ready


class BenchmarkError(RuntimeError):
    """A measured process failed; the message carries the end of its stderr."""


@dataclass
class ProcResult:
    wall_s: float
    """Process start to exit."""
    marker_s: float | None
    """Process start to the first stderr line holding the marker (None if never seen)."""
    returncode: int
    maxrss_kb: int
    stdout: str
    stderr_tail: str


def child_env(workdir: Path, **extra: str) -> dict[str, str]:
    """Environment for measured processes: INFO logs (the load marker), temp files inside `workdir`."""
    env = dict(os.environ, INSTRUSENSE_LOG_LEVEL="INFO", TMPDIR=str(workdir), GRADIO_TEMP_DIR=str(workdir / "gradio"),
               GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_measured(cmd: list[str], env: dict[str, str], stdout_path: Path, marker: str | None = None,
                 timeout_s: float = 900.0) -> ProcResult:
    """Run `cmd` to its end: wall time, time to a stderr marker, and the process' own peak RSS (wait4)."""
    tail: collections.deque[str] = collections.deque(maxlen=30)
    marked: list[float] = []
    started = time.perf_counter()
    with open(stdout_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, env=env, cwd=REPO_ROOT,
                                text=True, errors="replace")

        def read_stderr() -> None:
            for line in proc.stderr:  # type: ignore[union-attr]
                if marker and not marked and marker in line:
                    marked.append(time.perf_counter() - started)
                tail.append(line)

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        maxrss_kb = _reap(proc, timeout_s)
        wall = time.perf_counter() - started
        reader.join(timeout=10)
    # A line read just after the exit was written before it: the marker time never exceeds the wall time.
    return ProcResult(wall_s=wall, marker_s=min(marked[0], wall) if marked else None, returncode=proc.returncode,
                      maxrss_kb=maxrss_kb, stdout=Path(stdout_path).read_text(),
                      stderr_tail="".join(tail))


def _fail(what: str, result: ProcResult | None, detail: str = "") -> BenchmarkError:
    tail = result.stderr_tail if result else ""
    return BenchmarkError(f"{what} failed{': ' + detail if detail else ''}\n--- stderr (end) ---\n{tail}")


def cli_run(files: list[Path], model: str, workdir: Path) -> ProcResult:
    """One `python -m instrusense analyze --json` process over `files`; checks every file got a result."""
    cmd = [sys.executable, "-m", "instrusense", "analyze", "--json", "--model", model, *map(str, files)]
    result = run_measured(cmd, child_env(workdir), workdir / "cli-stdout.json", marker=MODEL_LOADED_MARK)
    try:
        records = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise _fail("the CLI", result, f"exit code {result.returncode}, stdout is not JSON") from None
    errors = [r["error"] for r in records if r.get("error")]
    if result.returncode != 0 or len(records) != len(files) or errors:
        raise _fail("the CLI", result, f"exit code {result.returncode}, {len(errors)} file errors {errors[:2]}")
    return result


def cli_cold_start(file: Path, model: str, workdir: Path) -> dict:
    """Process start → model loaded → first result (the JSON printed at exit) for one file."""
    r = cli_run([file], model, workdir)
    return {"first_result_s": r.wall_s, "model_loaded_s": r.marker_s, "peak_rss_mb": r.maxrss_kb / 1024}


def cli_batch(files: list[Path], model: str, workdir: Path) -> dict:
    """Throughput of one CLI call over many files, with and without the start-up (up to model loaded)."""
    r = cli_run(files, model, workdir)
    n = len(files)
    working = r.wall_s - r.marker_s if r.marker_s is not None else None
    return {"files": n, "wall_s": r.wall_s, "startup_s": r.marker_s,
            "files_per_minute": 60.0 * n / r.wall_s,
            "files_per_minute_excl_startup": 60.0 * n / working if working else None,
            "peak_rss_mb": r.maxrss_kb / 1024}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def app_cold_start(file: Path, model: str, workdir: Path, timeout_s: float = 300.0) -> dict:
    """`python app.py` start → model loaded → serving → first `/analyze` result through gradio_client.

    The app is stopped after; its peak RSS (`wait4`) includes its shutdown. "Model loaded" is when the
    log line appears in the app's log, seen by the same polling loop (±50 ms).
    """
    from gradio_client import Client, handle_file  # imported before the clock starts

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = child_env(workdir, INSTRUSENSE_MODEL=model, INSTRUSENSE_PORT=str(port), INSTRUSENSE_HOST="127.0.0.1")
    log_path = workdir / f"app-{port}.log"
    with open(log_path, "w") as log:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "app.py"], stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=REPO_ROOT)
        try:
            loaded = None
            while not _serves(url):
                if loaded is None and MODEL_LOADED_MARK in log_path.read_text(errors="replace"):
                    loaded = time.perf_counter() - started
                if proc.poll() is not None or time.perf_counter() - started > timeout_s:
                    raise BenchmarkError(f"the app did not start serving {url}\n--- log (end) ---\n"
                                         + log_path.read_text()[-3000:])
                time.sleep(0.05)
            serving = time.perf_counter() - started
            if loaded is None and MODEL_LOADED_MARK in log_path.read_text(errors="replace"):
                loaded = serving
            outputs = Client(url, verbose=False).predict(handle_file(str(file)), api_name="/analyze")
            first = time.perf_counter() - started
            record = outputs[5] if isinstance(outputs, (list, tuple)) and len(outputs) > 5 else None
            if not isinstance(record, dict) or not record.get("labels"):
                raise BenchmarkError(f"the app's /analyze answered without labels: {str(outputs)[:300]}")
        finally:
            maxrss_kb = _stop(proc)
    return {"first_result_s": first, "model_loaded_s": loaded, "serving_s": serving,
            "peak_rss_mb": maxrss_kb / 1024 if maxrss_kb else None}


def _stop(proc: subprocess.Popen, grace_s: float = 15.0) -> int | None:
    """Terminate the app (kill after `grace_s`) and reap it; its peak RSS in kB."""
    if proc.poll() is not None:
        return None  # already reaped by poll(): its rusage is gone
    proc.terminate()
    return _reap(proc, grace_s)


def _reap(proc: subprocess.Popen, kill_after_s: float) -> int:
    """Wait for `proc` (killing it after `kill_after_s`), set its return code; its peak RSS in kB.

    `os.wait4` rather than `proc.wait`: only it hands back the child's own resource usage.
    """
    killer = threading.Timer(kill_after_s, proc.kill)
    killer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return int(usage.ru_maxrss)


def memory_probe(file: Path, model: str, workdir: Path) -> dict:
    """Peak memory of a fresh process that loads the model and analyses `file` end to end (with the plot).

    Read inside the process when the result is ready: the interpreter's own shutdown afterwards (which
    `wait4` would include) is not part of analysing.
    """
    cmd = [sys.executable, "-m", "benchmarks.probe", "--model", model, "--launched", repr(time.time()), str(file)]
    r = run_measured(cmd, child_env(workdir), workdir / "probe-stdout.json")
    try:
        report = json.loads(r.stdout)
    except json.JSONDecodeError:
        raise _fail(f"the memory probe on {file.name}", r, f"exit code {r.returncode}") from None
    mb = 1 / 1024
    baseline = report["rss_after_load_kb"]
    analysis_peak = report["analysis_peak_kb"]
    return {
        "rss_after_load_mb": baseline * mb if baseline else None,
        "peak_rss_mb": report["peak_kb"] * mb,
        "analysis_peak_mb": analysis_peak * mb if analysis_peak else None,
        "analysis_increment_mb": (analysis_peak - baseline) * mb if analysis_peak and baseline else None,
        "load_peak_mb": report["maxrss_after_load_kb"] * mb,
        "model_loaded_s": report["model_loaded_s"],
        "first_result_s": report["first_result_s"],
    }
