"""``instrusense stream [--model M] [--rate HZ --channels N] [FILE | -]``: live analysis.

stdout is JSON lines: one per hop (``time``, the top labels, the live segments that just closed), then
the record ``analyze --json`` gives for the whole input. Input is an audio file, a WAV (or FLAC) stream
on stdin, or raw signed 16-bit little-endian PCM with ``--rate``. A reader thread feeds a bounded
queue, so a producer that stalls is noticed (INSTRUSENSE_STREAM_STALL_SECONDS) instead of hanging.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import sys
import threading
from collections.abc import Iterator
from typing import BinaryIO, TextIO

import numpy as np
import soundfile as sf

from instrusense.audio import AudioError, decode
from instrusense.cli.analyze import MODEL_HELP
from instrusense.export import analysis_record, error_record
from instrusense.model import ModelUnavailableError, tagger_for
from instrusense.settings import Settings
from instrusense.streaming import Hop, StreamAnalyser, StreamError

log = logging.getLogger("instrusense.stream")

READ_SECONDS = 0.1  # block size read from the input: small, so a paced producer's audio is scored promptly
_QUEUE_BLOCKS = 64  # at most this many blocks wait between the reader and the analyser (bounded memory)
_END = object()


def add_parser(sub: argparse._SubParsersAction) -> None:
    stream = sub.add_parser("stream", help="analyse audio live as it arrives (stdin or a file), JSON lines")
    stream.add_argument("file", nargs="?", default="-", metavar="FILE",
                        help="audio file, or - for stdin (default): WAV/FLAC, or raw PCM with --rate")
    stream.add_argument("--model", default=None, help=MODEL_HELP)
    stream.add_argument("--rate", type=int, default=None, metavar="HZ",
                        help="the input is raw signed 16-bit little-endian PCM at this sample rate")
    stream.add_argument("--channels", type=int, default=None, metavar="N",
                        help="interleaved channels of the raw PCM (with --rate; default 1)")


def hop_line(hop: Hop, top_k: int) -> dict:
    """The JSON object printed for one hop."""
    return {"time": round(hop.time, 3),
            "labels": [{"label": label, "confidence": round(c, 4)} for label, c in hop.top(top_k)],
            "closed": [{"label": s.label, "start": round(s.start, 3), "end": round(s.end, 3),
                        "confidence": round(s.confidence, 4)} for s in hop.closed]}


def _raw_pcm(stream: BinaryIO, channels: int, close: bool) -> Iterator[np.ndarray]:
    """(frames, channels) int16 blocks of raw s16le PCM, as soon as they arrive; an odd tail is dropped."""
    frame_bytes = 2 * channels
    pending = b""
    fd = stream.fileno()
    try:
        while data := os.read(fd, 1 << 16):
            pending += data
            usable = len(pending) - len(pending) % frame_bytes
            if usable:
                yield np.frombuffer(pending[:usable], dtype="<i2").reshape(-1, channels)
                pending = pending[usable:]
    finally:
        if close:
            stream.close()
    if pending:
        log.warning("the raw PCM ended inside a frame: %d trailing bytes were ignored", len(pending))


def _sound_file(source: str | int) -> tuple[int, Iterator[np.ndarray]]:
    """Sample rate and float32 blocks of anything libsndfile reads, from a path or a pipe's descriptor."""
    f = sf.SoundFile(source)
    rate = int(f.samplerate)

    def blocks() -> Iterator[np.ndarray]:
        with f:
            while True:
                block = f.read(max(1, round(READ_SECONDS * rate)), dtype="float32", always_2d=True)
                if len(block) == 0:
                    return
                yield block

    return rate, blocks()


def open_input(path: str, rate: int | None, channels: int, max_seconds: float,
               decode_rate: int) -> tuple[int, Iterator[np.ndarray]]:
    """The input's sample rate and its blocks of samples. Raises `StreamError` for input that is not audio.

    A file libsndfile cannot read (m4a, webm, ...) is decoded whole at `decode_rate` (the model's rate,
    so the analyser resamples nothing) and then streamed."""
    if rate is not None:
        if path == "-":
            return rate, _raw_pcm(sys.stdin.buffer, channels, close=False)
        return rate, _raw_pcm(open(path, "rb"), channels, close=True)  # noqa: SIM115 (the generator closes it)
    if path == "-":
        try:
            return _sound_file(sys.stdin.buffer.fileno())
        except Exception as exc:  # libsndfile raises several types; all mean "not a stream it reads"
            log.info("libsndfile cannot read stdin: %s", exc)
            raise StreamError("stdin is not an audio stream InstruSense can read: send WAV or FLAC, or raw "
                              "16-bit PCM with --rate HZ --channels N (e.g. ffmpeg ... -f s16le -).") from None
    try:
        return _sound_file(path)
    except Exception:  # not for libsndfile: decode it whole (m4a, webm, ...), then stream the samples
        samples = decode(path, decode_rate, max_seconds).samples  # raises AudioError with the reason
        block = max(1, round(READ_SECONDS * decode_rate))
        return decode_rate, (samples[i:i + block] for i in range(0, len(samples), block))


def _pump(blocks: Iterator[np.ndarray], out: queue.Queue) -> None:
    try:
        for block in blocks:
            out.put(block)
        out.put(_END)
    except Exception as exc:  # reported by the analysing thread, which owns stdout
        out.put(exc)


def run(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    name = args.file
    if args.channels is not None and args.rate is None:
        print("error: --channels describes raw PCM and needs --rate", file=sys.stderr)
        return 2
    channels = args.channels or 1
    if channels < 1:
        print("error: --channels must be at least 1", file=sys.stderr)
        return 2

    def emit(record: dict) -> None:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()

    try:
        tagger = tagger_for(settings)
        rate, blocks = open_input(name, args.rate, channels, settings.max_duration_seconds, tagger.sampling_rate)
        analyser = StreamAnalyser(tagger, settings, rate)
    except (ModelUnavailableError, StreamError, AudioError, OSError) as exc:
        log.error("%s", exc)
        emit(error_record(name, str(exc)))
        return 1

    pending: queue.Queue = queue.Queue(maxsize=_QUEUE_BLOCKS)
    threading.Thread(target=_pump, args=(blocks, pending), daemon=True, name="stream-reader").start()
    failure = None
    while True:
        try:
            item = pending.get(timeout=settings.stream_stall_seconds)
        except queue.Empty:
            failure = (f"No audio arrived for {settings.stream_stall_seconds:g} s "
                       "(INSTRUSENSE_STREAM_STALL_SECONDS): the producer stalled; the stream was closed.")
            break
        if item is _END:
            break
        if isinstance(item, Exception):
            failure = f"Reading the input failed after {analyser.seconds:.1f} s: {item}"
            break
        try:
            hops = analyser.feed(item)
        except StreamError as exc:
            failure = str(exc)
            break
        for hop in hops:
            emit(hop_line(hop, settings.top_k))
    if failure:
        log.error("%s", failure)
    try:
        analysis = analyser.finish()
    except AudioError as exc:
        emit(error_record(name, failure or str(exc), duration=analyser.seconds))
        return 1
    for notice in analysis.notices:
        log.warning("%s: %s", name, notice)
    emit(analysis_record(name, analysis))
    return 1 if failure else 0
