"""Decoding and cleaning: every odd input is read correctly or refused with a clear AudioError."""

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from conftest import mp3_then_junk, tone
from instrusense.audio import AudioError, BlockResampler, load_audio, resample, rms_dbfs, to_mono

LOAD = dict(max_seconds=600.0, min_seconds=0.5)


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000, 96000, 192000])
def test_any_sample_rate_is_resampled_to_the_model_rate(write_audio, rate):
    rec = load_audio(write_audio(f"r{rate}.wav", seconds=1.5, rate=rate), 16000, **LOAD)
    assert rec.sample_rate == 16000
    assert abs(len(rec.samples) - 24000) <= 1
    spectrum = np.abs(np.fft.rfft(rec.samples))
    assert abs(np.argmax(spectrum) * 16000 / len(rec.samples) - 440) < 5  # pitch survives resampling


@pytest.mark.parametrize("channels", range(1, 9))
def test_one_to_eight_channels_mix_to_mono(write_audio, channels):
    rec = load_audio(write_audio(f"c{channels}.wav", channels=channels), 16000, **LOAD)
    assert rec.samples.ndim == 1 and len(rec.samples) == 32000


def test_mixdown_averages_channels():
    frames = np.array([[1.0, 0.0], [0.5, -0.5]], np.float32)
    assert to_mono(frames).tolist() == [0.5, 0.0]


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8"])
def test_integer_and_float_pcm(write_audio, subtype):
    rec = load_audio(write_audio(f"{subtype}.wav", subtype=subtype), 16000, **LOAD)
    assert 0.3 < np.abs(rec.samples).max() <= 1.0


@pytest.mark.parametrize("name,fmt", [("a.flac", "FLAC"), ("a.ogg", "OGG"), ("a.mp3", "MP3")])
def test_compressed_formats(write_audio, name, fmt):
    rec = load_audio(write_audio(name, fmt=fmt, rate=44100), 16000, **LOAD)
    assert abs(rec.duration - 2.0) < 0.1


def test_lying_extension_is_read_by_content(write_audio, tmp_path):
    path = write_audio("really-a-wav.mp3", fmt="WAV")
    assert load_audio(path, 16000, **LOAD).duration == pytest.approx(2.0)


def test_nan_and_inf_become_silence_and_are_counted(write_audio):
    data = tone(2.0, 16000)
    data[100:200] = np.nan
    data[300] = np.inf
    rec = load_audio(write_audio("nan.wav", data=data, subtype="FLOAT"), 16000, **LOAD)
    assert np.isfinite(rec.samples).all()
    assert rec.nonfinite_samples == 101


def test_over_range_float_audio_is_scaled_back_into_range(write_audio):
    loud = tone(2.0, 16000) * 8.0  # peaks near 4
    rec = load_audio(write_audio("loud.wav", data=loud, subtype="FLOAT"), 16000, **LOAD)
    quiet = load_audio(write_audio("quiet.wav", data=loud / np.abs(loud).max(), subtype="FLOAT"), 16000, **LOAD)
    np.testing.assert_allclose(rec.samples, quiet.samples, atol=1e-6)  # the same shape, scaled by the peak
    assert rec.nonfinite_samples == 0


def test_too_long_recordings_are_cut_to_the_limit(write_audio):
    rec = load_audio(write_audio("long.wav", seconds=5.0), 16000, max_seconds=2.0, min_seconds=0.5)
    assert rec.duration == pytest.approx(2.0) and rec.source_duration == pytest.approx(5.0) and rec.truncated


def test_resample_keeps_duration():
    assert len(resample(np.zeros(44100, np.float32), 44100, 16000)) == 16000


def test_rms_dbfs():
    assert rms_dbfs(np.zeros(10)) == -math.inf
    assert rms_dbfs(np.ones(10)) == pytest.approx(0.0)


def _bad(tmp_path, name: str, payload: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(payload)
    return str(path)


def test_refusals_have_clear_messages(tmp_path, write_audio):
    cases = {
        _bad(tmp_path, "empty.wav", b""): "empty",
        _bad(tmp_path, "notes.wav", b"these are my notes, not audio\n" * 50): "Could not decode",
        _bad(tmp_path, "random.mp3", np.random.default_rng(1).bytes(5000)): "Could not decode",
        write_audio("zero.wav", data=np.zeros((0, 1), np.float32)): "empty",
        write_audio("short.wav", seconds=0.05): "too short",
        str(tmp_path / "missing.wav"): "not found",
    }
    wav = open(write_audio("whole.wav"), "rb").read()
    cases[_bad(tmp_path, "truncated.wav", wav[:30])] = "Could not decode"
    for path, message in cases.items():
        with pytest.raises(AudioError, match=message):
            load_audio(path, 16000, **LOAD)


def test_truncated_body_still_reads_what_is_there(write_audio, tmp_path):
    wav = open(write_audio("whole.wav", seconds=2.0), "rb").read()
    path = _bad(tmp_path, "cut.wav", wav[: len(wav) // 2])
    try:
        rec = load_audio(path, 16000, **LOAD)
    except AudioError as exc:
        assert "decode" in str(exc)
    else:
        assert 0.5 <= rec.duration <= 2.0


FFMPEG_FORMATS = {  # extension: encoder arguments; each as a phone, browser or editor writes it
    "m4a": ["-c:a", "aac"], "aac": ["-c:a", "aac"], "webm": ["-c:a", "libopus"], "mp3": ["-c:a", "libmp3lame"],
    "ogg": ["-c:a", "libvorbis"], "flac": ["-c:a", "flac"], "wav": ["-c:a", "pcm_s16le"], "aiff": ["-c:a", "pcm_s16be"],
}


@pytest.mark.parametrize("ext", sorted(FFMPEG_FORMATS))
def test_every_listed_format_made_by_ffmpeg_decodes(tmp_path, ext):
    path = tmp_path / f"memo.{ext}"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=3:sample_rate=44100",
                    "-ac", "2", *FFMPEG_FORMATS[ext], str(path)], check=True)
    rec = load_audio(path, 16000, **LOAD)
    assert rec.duration == pytest.approx(3.0, abs=0.1) and rec.source_duration == pytest.approx(3.0, abs=0.1)
    spectrum = np.abs(np.fft.rfft(rec.samples))
    assert abs(np.argmax(spectrum) * 16000 / len(rec.samples) - 440) < 5
    cut = load_audio(path, 16000, max_seconds=1.0, min_seconds=0.5)  # WebM's header has no duration: counted
    assert cut.duration == pytest.approx(1.0, abs=0.01) and cut.truncated
    assert cut.source_duration == pytest.approx(3.0, abs=0.1)


@pytest.mark.parametrize("orig", [8000, 22050, 44100, 48000, 25_338, 384_000])
def test_block_resampling_equals_resampling_at_once(orig):
    x = np.random.default_rng(orig).uniform(-1, 1, 3 * orig + 17).astype(np.float32)
    resampler = BlockResampler(orig, 16000)
    blocks = np.concatenate([*(resampler.push(x[i:i + 7777]) for i in range(0, len(x), 7777)), resampler.flush()])
    whole = AF.resample(torch.from_numpy(x), resampler.rate, 16000).numpy()
    assert len(blocks) == len(whole)
    np.testing.assert_allclose(blocks, whole, atol=1e-5)


def test_a_file_that_is_mostly_not_mp3_is_not_audio(tmp_path):
    program = tmp_path / "ls.mp3"
    program.write_bytes(Path("/bin/ls").read_bytes())  # libmpg123 may find a few "frames" in a program
    for path in (program, mp3_then_junk(tmp_path)):
        with pytest.raises(AudioError, match=f"Could not decode {path.name}"):
            load_audio(path, 16000, max_seconds=600.0, min_seconds=0.05)  # not "too short"
