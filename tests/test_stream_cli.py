"""``python -m instrusense stream``: JSON lines per hop, then the record ``analyze --json`` gives.

In process (through `cli.main`, stdin swapped for a file or a pipe) except one run in a subprocess
that checks the real entry point and that stdout carries nothing but JSON lines.
"""

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import tone
from instrusense import cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _low_threshold(monkeypatch):
    monkeypatch.setenv("INSTRUSENSE_THRESHOLD", "0.3")


def _run(capsys, *argv: str) -> tuple[int, list[dict]]:
    capsys.readouterr()
    code = cli.main(list(argv))
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # every line is JSON


def _stdin(monkeypatch, tmp_path, payload: bytes) -> None:
    source = tmp_path / "stdin.bin"
    source.write_bytes(payload)
    monkeypatch.setattr(sys, "stdin", open(source))  # noqa: SIM115 (read by fd, closed with the test's tmp dir)


def _pcm(seconds: float, rate: int, channels: int) -> np.ndarray:
    return np.round(tone(seconds, rate, channels) * 32767).astype("<i2")


def test_file_stream_prints_hops_then_the_analyze_record(tiny_whisper, write_audio, capsys):
    path = write_audio("take.flac", seconds=7.0, rate=44100, channels=2, fmt="FLAC")
    code, lines = _run(capsys, "stream", "--model", tiny_whisper, path)
    assert code == 0
    *hops, final = lines
    assert [h["time"] for h in hops] == [1.5, 3.0, 4.5, 6.0]
    for h in hops:
        assert set(h) == {"time", "labels", "closed"} and len(h["labels"]) == 5
        assert all(set(i) == {"label", "confidence"} for i in h["labels"])
        assert [i["confidence"] for i in h["labels"]] == sorted((i["confidence"] for i in h["labels"]), reverse=True)
    assert _run(capsys, "analyze", "--json", "--model", tiny_whisper, path) == (0, [[final]])


def test_raw_pcm_and_wav_streams_equal_the_file_analysis(tiny_whisper, write_audio, tmp_path, capsys, monkeypatch):
    data = _pcm(5.0, 48000, 2)
    path = write_audio("mic.wav", data=data, rate=48000, subtype="PCM_16")
    _, [[expected]] = _run(capsys, "analyze", "--json", "--model", tiny_whisper, path)
    raw = tmp_path / "mic.s16le"
    raw.write_bytes(data.tobytes())
    code, lines = _run(capsys, "stream", "--model", tiny_whisper, "--rate", "48000", "--channels", "2", str(raw))
    assert code == 0 and lines[-1] == {**expected, "file": str(raw)}
    _stdin(monkeypatch, tmp_path, Path(path).read_bytes())
    code, lines = _run(capsys, "stream", "--model", tiny_whisper, "-")
    assert code == 0 and lines[-1] == {**expected, "file": "-"}


def test_a_file_only_ffmpeg_reads_streams_to_the_analyze_record(tiny_whisper, write_audio, tmp_path, capsys):
    source = write_audio("take.wav", seconds=5.0, rate=44100, channels=2)
    m4a = tmp_path / "take.m4a"  # AAC: libsndfile cannot read it, FFmpeg can
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", source, "-c:a", "aac", str(m4a)], check=True)
    _, [[expected]] = _run(capsys, "analyze", "--json", "--model", tiny_whisper, str(m4a))
    code, lines = _run(capsys, "stream", "--model", tiny_whisper, str(m4a))
    assert code == 0 and expected["error"] is None and lines[-1] == expected


def test_bad_streams_get_a_message_and_a_record(tiny_whisper, tmp_path, capsys, monkeypatch, caplog):
    _stdin(monkeypatch, tmp_path, b"definitely not audio " * 50)
    code, [record] = _run(capsys, "stream", "--model", tiny_whisper)
    assert code == 1 and "stdin is not an audio stream" in record["error"] and record["labels"] == []
    assert cli.main(["stream", "--channels", "2"]) == 2 and "needs --rate" in capsys.readouterr().err
    code, [record] = _run(capsys, "stream", "--model", tiny_whisper, "--rate", "100")
    assert code == 1 and "Unsupported sample rate 100 Hz" in record["error"]
    _stdin(monkeypatch, tmp_path, np.zeros(16000, "<i2").tobytes() + b"\x01")  # cut inside a sample
    with caplog.at_level(logging.WARNING):
        code, lines = _run(capsys, "stream", "--model", tiny_whisper, "--rate", "16000")
    assert code == 0 and lines[-1]["duration"] == 1.0 and "1 trailing bytes were ignored" in caplog.text


def test_a_stalled_producer_closes_the_stream_with_a_message(tiny_whisper, capsys, monkeypatch, caplog):
    monkeypatch.setenv("INSTRUSENSE_STREAM_STALL_SECONDS", "1")
    read_end, write_end = os.pipe()
    monkeypatch.setattr(sys, "stdin", os.fdopen(read_end))
    payload = (tone(4.0, 16000)[:, 0] * 32767).astype("<i2").tobytes()
    writer = threading.Thread(target=os.write, args=(write_end, payload))  # ... then nothing, the pipe left open
    writer.start()
    try:
        with caplog.at_level(logging.ERROR):
            code, lines = _run(capsys, "stream", "--model", tiny_whisper, "--rate", "16000")
    finally:
        writer.join()
        os.close(write_end)
    assert code == 1 and "the producer stalled" in caplog.text
    *hops, final = lines
    assert [h["time"] for h in hops] == [1.5, 3.0] and final["duration"] == 4.0 and final["error"] is None


@pytest.mark.slow
def test_the_entry_point_prints_only_json_lines(tiny_whisper):
    data = _pcm(3.2, 16000, 1)
    proc = subprocess.run([sys.executable, "-m", "instrusense", "stream", "--model", tiny_whisper, "--rate", "16000"],
                          cwd=REPO, input=data.tobytes(), capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [line.get("time") for line in lines[:-1]] == [1.5, 3.0] and lines[-1]["duration"] == 3.2
