"""Property-based fuzzing of decoding and analysis: whatever the bytes, an analysis or a clean AudioError.

Random bytes under any extension, WAV headers whose fields lie, truncated files, and real files with
random sample rates, channel counts, lengths and NaN/Inf/huge samples all go through the same path
as an upload (`analyze_file`). Any other exception escaping is a failure. Example counts are bounded
so that the whole module takes well under a minute on a 2-core machine.
"""

from __future__ import annotations

import io
import math
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from instrusense.analysis import Analysis, analyze_file
from instrusense.audio import _MAX_FILTER_TAPS, AudioError, _tractable_rate, load_audio
from instrusense.model import load_tagger
from instrusense.settings import load_settings
from instrusense.taxonomy import LABELS

FUZZ = hsettings(max_examples=40, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
EXTENSIONS = st.sampled_from(["wav", "flac", "ogg", "mp3", "m4a", "webm", "aiff", "opus", "txt", ""])


@pytest.fixture(scope="module")
def run(tiny_whisper):
    """run(bytes, name) -> Analysis or AudioError; anything else propagates and fails the test."""
    settings = load_settings({}, model=tiny_whisper, max_duration_seconds=4.0)
    tagger = load_tagger(tiny_whisper)

    def _run(payload: bytes, name: str) -> Analysis | AudioError:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            path.write_bytes(payload)
            try:
                analysis = analyze_file(path, tagger, settings)
            except AudioError as exc:
                assert str(exc).strip() and "Traceback" not in str(exc)
                return exc
        assert sorted(s.label for s in analysis.labels) == sorted(LABELS)
        confidences = np.array([s.confidence for s in analysis.labels])
        assert np.isfinite(confidences).all() and (confidences >= 0).all() and (confidences <= 1).all()
        assert 0 < analysis.analysed_seconds <= 4.0 + 1e-6 and np.isfinite(analysis.duration)
        assert all(0 <= s.start < s.end <= analysis.analysed_seconds + 1e-6 for s in analysis.segments)
        return analysis

    return _run


def _wav_header(channels: int, rate: int, bits: int, fmt_tag: int, data_bytes: int, riff_bytes: int) -> bytes:
    block_align = max(channels * bits // 8, 0) & 0xFFFF
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * block_align) & 0xFFFFFFFF, block_align, bits)
    return (b"RIFF" + struct.pack("<I", riff_bytes) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", data_bytes))


@pytest.mark.slow
@FUZZ
@given(payload=st.binary(max_size=4096), ext=EXTENSIONS)
def test_random_bytes_under_any_extension(run, payload, ext):
    run(payload, f"upload.{ext}" if ext else "upload")


@pytest.mark.slow
@FUZZ
@given(channels=st.integers(0, 70000), rate=st.integers(0, 2**32 - 1),
       bits=st.sampled_from([0, 1, 8, 16, 24, 32, 64, 7]),
       fmt_tag=st.sampled_from([1, 3, 6, 7, 0xFFFE, 0, 2, 85]),
       data_bytes=st.integers(0, 2**32 - 1), riff_bytes=st.integers(0, 2**32 - 1), body=st.binary(max_size=2048),
       ext=EXTENSIONS)
def test_wav_headers_that_lie(run, channels, rate, bits, fmt_tag, data_bytes, riff_bytes, body, ext):
    header = _wav_header(channels & 0xFFFF, rate, bits, fmt_tag, data_bytes, riff_bytes)
    run(header + body, f"lies.{ext}")


FORMATS = st.sampled_from([("WAV", "PCM_16"), ("WAV", "FLOAT"), ("WAV", "PCM_U8"), ("FLAC", "PCM_24"),
                           ("OGG", "VORBIS"), ("AIFF", "PCM_16"), ("WAV", "DOUBLE")])


def _signal(seed: int, frames: int, channels: int, damage: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((frames, channels)) * 0.3).astype(np.float32)
    if damage == "nan":
        x[rng.random(x.shape) < 0.2] = np.nan
    elif damage == "inf":
        x[::7] = np.inf
        x[1::11] = -np.inf
    elif damage == "all_nan":
        x[:] = np.nan
    elif damage == "huge":
        x *= np.float32(1e30)
    elif damage == "silence":
        x[:] = 0
    elif damage == "dc":
        x[:] = 1.0
    return x


@pytest.mark.slow
@FUZZ
@given(seed=st.integers(0, 2**32 - 1), fmt=FORMATS, ext=EXTENSIONS,
       rate=st.one_of(st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]), st.integers(1, 400_000)),
       channels=st.integers(1, 12), seconds=st.floats(0.0, 2.5),
       damage=st.sampled_from(["none", "nan", "inf", "all_nan", "huge", "silence", "dc"]),
       cut=st.one_of(st.none(), st.floats(0.0, 1.0)))
def test_real_files_with_random_shapes_and_damage(run, seed, fmt, ext, rate, channels, seconds, damage, cut):
    container, subtype = fmt
    frames = int(seconds * min(rate, 48_000))  # bounded work: at most 2.5 s at 48 kHz worth of frames
    if container == "OGG":  # libvorbis's encoder itself crashes on unusual rates: keep the writer safe
        channels, rate = min(channels, 8), 44100 if rate % 3 else 22050
    buf = io.BytesIO()
    try:
        sf.write(buf, _signal(seed, frames, channels, damage), rate, format=container, subtype=subtype)
    except (sf.LibsndfileError, ValueError, RuntimeError, AssertionError):
        return  # libsndfile cannot write this combination; nothing to decode
    payload = buf.getvalue()
    if cut is not None:
        payload = payload[:int(len(payload) * cut)]  # truncated upload
    result = run(payload, f"rec.{ext}")
    if isinstance(result, Analysis) and cut is None and damage in ("nan", "inf", "all_nan") \
            and subtype in ("FLOAT", "DOUBLE"):
        assert any("NaN/Inf" in n for n in result.notices) or "silent" in " ".join(result.notices)


def test_odd_sample_rates_resample_with_a_small_filter(tmp_path):
    # Found by the fuzzer: torchaudio's filter bank for 383 999 -> 16 000 Hz would take ~25 GB.
    for rate in range(4000, 384_001, 7):
        near = _tractable_rate(rate, 16000)
        g = math.gcd(near, 16000)
        assert (near // g) * (16000 // g) <= _MAX_FILTER_TAPS and abs(near - rate) <= 0.001 * rate
    for rate in (383_999, 25_338, 4001):
        path = tmp_path / f"odd{rate}.wav"
        sf.write(str(path), np.random.default_rng(0).uniform(-0.5, 0.5, rate).astype(np.float32), rate)
        rec = load_audio(path, 16000, max_seconds=10, min_seconds=0.5)
        assert len(rec.samples) == 16000 and not rec.truncated
