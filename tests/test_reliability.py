"""Many users at once, hostile API calls, bounded resources: the app on a loopback port.

Load and soak are sized for a 2-core CI machine (tiny random checkpoint, 1-2 s clips). They assert
correctness and bounded memory, never timings; the figures they print (`pytest -s`) go to the README.
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.utils import Status

from conftest import free_port, tone
from instrusense.analysis import analyze_file
from instrusense.model import ModelUnavailableError, load_tagger, tagger_for
from instrusense.settings import load_settings
from instrusense.taxonomy import LABELS

REPO = Path(__file__).resolve().parents[1]
MAX_UPLOAD = 1 << 20  # 1 MB in this test server, so that an oversize upload is cheap to send
CLIENTS, REQUESTS_PER_CLIENT = 16, 10
SOAK_REQUESTS, SOAK_WARMUP = 300, 20
SOAK_RSS_BOUND_MB = 64.0


def _rss_mb() -> float:
    """Resident memory of this process (the server runs in it, on threads), free heap handed back first."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # what glibc keeps cached per thread is no leak
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(match.group(1)) / 1024


@pytest.fixture(scope="module")
def settings(tiny_whisper):
    return load_settings({}, model=tiny_whisper, threshold=0.3, max_duration_seconds=6.0)


@pytest.fixture(scope="module")
def url(settings):
    import app

    demo = app.build_app(settings)
    port = free_port()
    options = {**app.launch_options(demo, settings), "max_file_size": MAX_UPLOAD}
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **options)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory, settings):
    """Four different clips and the record each must produce (computed directly, without the app)."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("clips")
    tagger = tagger_for(settings)  # the model as the app loads it (int8 on CPUs by default)
    out = {}
    for i, (seconds, freq) in enumerate([(1.0, 220.0), (1.5, 440.0), (2.0, 880.0), (1.25, 330.0)]):
        path = folder / f"clip{i}.wav"
        sf.write(str(path), tone(seconds, 16000, freq=freq), 16000)
        analysis = analyze_file(path, tagger, settings)
        out[str(path)] = {s.label: s.confidence for s in analysis.labels}
    return out


def _check(record: dict, expected: dict[str, float], name: str) -> None:
    assert record["error"] is None and record["file"] == name
    assert {i["label"]: i["confidence"] for i in record["labels"]} == pytest.approx(expected, abs=1e-3)


@pytest.mark.slow
def test_concurrent_clients_all_get_their_own_correct_answer(url, clips):
    paths = list(clips)

    def one_client(k: int) -> list[float]:  # each from its own address, as the per-client share counts them
        client = Client(url + "/", verbose=False, headers={"X-Forwarded-For": f"198.51.100.{k}"})
        latencies = []
        for r in range(REQUESTS_PER_CLIENT):
            path = paths[(k + r) % len(paths)]
            started = time.perf_counter()
            *_, record, _notes = client.predict(handle_file(path), api_name="/analyze")
            latencies.append(time.perf_counter() - started)
            _check(record, clips[path], Path(path).name)
        return latencies

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(one_client, k) for k in range(CLIENTS)]
        done, pending = wait(futures, timeout=240)
        assert not pending, "the load test did not finish in time"
    elapsed = time.perf_counter() - started
    latencies = sorted(x for f in futures for x in f.result())  # re-raises any client's failure
    assert len(latencies) == CLIENTS * REQUESTS_PER_CLIENT
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * len(latencies)) - 1]
    print(f"\nLOAD {CLIENTS} clients x {REQUESTS_PER_CLIENT} requests: {len(latencies)} ok in {elapsed:.1f} s, "
          f"{len(latencies) / elapsed:.1f} requests/s, latency p50 {p50:.2f} s, p95 {p95:.2f} s")


@pytest.mark.slow
def test_requests_beyond_capacity_wait_in_the_queue_with_their_position(url, clips):
    path = next(iter(clips))
    clients = [Client(url + "/", verbose=False, headers={"X-Forwarded-For": f"198.51.100.{k}"}) for k in range(6)]
    jobs = [client.submit(handle_file(path), api_name="/analyze") for client in clients]
    ranks: set[int] = set()
    deadline = time.monotonic() + 60
    while not all(j.done() for j in jobs) and time.monotonic() < deadline:
        for j in jobs:
            status = j.status()
            if status.code == Status.IN_QUEUE and status.rank is not None:
                ranks.add(status.rank)
        time.sleep(0.005)
    for j in jobs:
        _check(j.result(timeout=60)[-2], clips[path], Path(path).name)
    assert ranks and max(ranks) >= 1  # at least one request was told its place in the queue


@pytest.mark.slow
def test_soak_memory_stays_bounded(url, clips):
    client = Client(url + "/", verbose=False)
    path = next(iter(clips))
    baseline = None
    for i in range(SOAK_REQUESTS):
        *_, record, _notes = client.predict(handle_file(path), api_name="/analyze")
        assert record["error"] is None
        if i + 1 == SOAK_WARMUP:
            baseline = _rss_mb()
    final = _rss_mb()
    print(f"\nSOAK {SOAK_REQUESTS} requests: RSS after {SOAK_WARMUP} {baseline:.0f} MB, after {SOAK_REQUESTS} "
          f"{final:.0f} MB ({final - baseline:+.1f} MB; bound +{SOAK_RSS_BOUND_MB:g} MB)")
    assert final - baseline < SOAK_RSS_BOUND_MB


def _raw_call(url: str, value) -> tuple[str, str]:
    """POST /gradio_api/call/analyze as a script would, then read the event stream: (event, data)."""
    with httpx.Client(base_url=url, timeout=30) as http:
        started = http.post("/gradio_api/call/analyze", json={"data": [value]})
        assert started.status_code == 200
        stream = http.get(f"/gradio_api/call/analyze/{started.json()['event_id']}").text
    events = re.findall(r"^event: (\w+)\ndata: (.*)$", stream, re.M)
    return events[-1]


@pytest.mark.parametrize("path", ["/etc/passwd", "app.py", str(REPO / "README.md"),
                                  "/tmp/gradio/../../etc/passwd", "../../../../etc/passwd"])
def test_api_refuses_server_paths(url, caplog, path):
    caplog.set_level(logging.INFO, logger="instrusense.app")
    event, data = _raw_call(url, {"path": path, "meta": {"_type": "gradio.FileData"}})
    assert event == "error" and "root:" not in data
    assert "URLs and server paths are not accepted" in json.loads(data)["error"]  # the app's message, not null
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("request")]
    assert len(lines) == 1 and 'outcome="rejected" file="" bytes=0' in lines[0]  # refused before the handler


@pytest.mark.parametrize("value", [
    {"path": "https://203.0.113.7/song.wav", "meta": {"_type": "gradio.FileData"}},  # documentation address:
    {"path": "http://127.0.0.1:9/etc/passwd", "meta": {"_type": "gradio.FileData"}},  # nothing leaves the host
    {"path": "http://192.0.2.1/x.mp3", "url": "http://192.0.2.1/x.mp3", "meta": {"_type": "gradio.FileData"}},
])
def test_api_refuses_urls_before_fetching_them(url, value):
    event, data = _raw_call(url, value)
    assert event == "error"
    assert "URLs and server paths are not accepted" in json.loads(data)["error"]


def test_api_refuses_a_bare_string(url):
    event, data = _raw_call(url, "/etc/passwd")
    assert event == "error" and "root:" not in data


def test_oversize_upload_is_refused_before_analysis(url, tmp_path):
    big = tmp_path / "big.wav"
    big.write_bytes(b"RIFF" + bytes(MAX_UPLOAD + 100))
    response = httpx.post(f"{url}/gradio_api/upload", files={"files": big.open("rb")}, timeout=30)
    assert response.status_code == 413
    assert f"maximum allowed size of {MAX_UPLOAD} bytes" in response.text
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # gradio_client checks first
        Client(url + "/", verbose=False).predict(handle_file(str(big)), api_name="/analyze")


def test_one_structured_log_line_per_request(url, clips, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="instrusense.app")
    client = Client(url + "/", verbose=False)
    client.predict(handle_file(next(iter(clips))), api_name="/analyze")
    bad = tmp_path / "bad\nname.mp3"
    bad.write_bytes(b"not audio at all " * 50)
    with pytest.raises(Exception, match="Could not decode"):
        client.predict(handle_file(str(bad)), api_name="/analyze")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("request ")]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    ok, rejected = lines
    assert re.fullmatch(r'request outcome="ok" file="clip0.wav" bytes=\d+ audio_seconds=1.000 seconds=[\d.]+ '
                        r'notices=\d+', ok)
    assert 'outcome="rejected"' in rejected and "audio_seconds=0.000" in rejected
    assert "Could not decode" in rejected and re.search(r"seconds=[\d.]+", rejected)


def test_request_timeout_stops_the_analysis_with_a_message(settings, clips, caplog):
    import app

    caplog.set_level(logging.INFO, logger="instrusense.app")
    clip = next(iter(clips))
    analyze, _ = app.make_analyze(load_settings({}, model=settings.model, request_timeout_seconds=1e-9),
                                  uploads=Path(clip).parent)
    with pytest.raises(gr.Error, match="longer than the 1e-09 s allowed"):
        analyze(clip)
    assert any('outcome="timeout"' in r.getMessage() for r in caplog.records)
    analyze, _ = app.make_analyze(settings, uploads=Path(clip).parent)  # the same shared model, with time enough
    assert analyze(clip)[-2]["error"] is None
    with pytest.raises(gr.Error, match="not accepted"):  # a file outside the upload folder is never read
        analyze(str(REPO / "examples" / "acoustic_guitar.flac"))


def test_model_loading_refuses_pickle_weights(tiny_whisper, tmp_path):
    from transformers import WhisperForAudioClassification

    model = WhisperForAudioClassification.from_pretrained(tiny_whisper)
    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (folder / name).write_bytes((Path(tiny_whisper) / name).read_bytes())
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ModelUnavailableError):
        load_tagger(str(folder))


def test_no_eval_no_pickle_no_broad_paths_in_the_app():
    sources = [REPO / "app.py", *sorted((REPO / "instrusense").glob("*.py"))]
    for path in sources:
        code = path.read_text()
        for banned in (r"(?<![\w.])eval\(", r"(?<![\w.])exec\(", r"import pickle|pickle\.loads?\(",
                       r"torch\.load\(", r"allowed_paths", r"gr\.Textbox"):
            assert not re.search(banned, code), f"{path.name}: {banned}"
    assert "use_safetensors=True" in (REPO / "instrusense" / "model.py").read_text()


def test_labels_are_the_taxonomy(clips):
    assert all(sorted(expected) == sorted(LABELS) for expected in clips.values())
    assert np.isfinite([c for e in clips.values() for c in e.values()]).all()
