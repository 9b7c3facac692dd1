"""Tests for finetune.base_model.import_whisper: CT2 parsing, strict mapping, and an end-to-end proof that the
converted checkpoint is really Whisper (it transcribes synthetic speech correctly)."""

from __future__ import annotations

import io
import re
import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from finetune.base_model import ct2_reader as ct2
from finetune.base_model import import_whisper as iw

SENTENCE = "The quick brown fox jumps over the lazy dog."


# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct2_model() -> ct2.Ct2Model:
    return ct2.load_ct2_model()


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One float32 conversion shared by the slow tests (takes a few seconds)."""
    return iw.convert(tmp_path_factory.mktemp("whisper") / "whisper-base")


@pytest.fixture(scope="session")
def speech_16k(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """SENTENCE spoken by espeak-ng, mono float32 at Whisper's 16 kHz."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng); cannot synthesise test speech")
    import soundfile as sf
    import torch
    import torchaudio.functional as AF

    wav_path = tmp_path_factory.mktemp("speech") / "fox.wav"
    subprocess.run([espeak, "-w", str(wav_path), SENTENCE], check=True, capture_output=True, timeout=30)
    audio, rate = sf.read(wav_path, dtype="float32", always_2d=True)
    mono = torch.from_numpy(audio.mean(axis=1))
    return AF.resample(mono, rate, 16000).numpy()


# ------------------------------------------------------------------------------------------
# parser
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_parser_reads_header_and_encoder_variables(ct2_model: ct2.Ct2Model) -> None:
    assert ct2_model.spec == "WhisperSpec"
    assert ct2_model.revision >= 1
    variables = ct2_model.variables
    expected: dict[str, tuple[int, ...]] = {
        "encoder/conv1/weight": (512, 80, 3),
        "encoder/conv1/bias": (512,),
        "encoder/conv2/weight": (512, 512, 3),
        "encoder/conv2/bias": (512,),
        "encoder/position_encodings/encodings": (1500, 512),
        "encoder/layer_norm/gamma": (512,),
        "encoder/layer_norm/beta": (512,),
    }
    for i in range(6):
        p = f"encoder/layer_{i}"
        expected |= {
            f"{p}/self_attention/linear_0/weight": (1536, 512),
            f"{p}/self_attention/linear_0/bias": (1536,),
            f"{p}/self_attention/linear_1/weight": (512, 512),
            f"{p}/self_attention/linear_1/bias": (512,),
            f"{p}/self_attention/layer_norm/gamma": (512,),
            f"{p}/self_attention/layer_norm/beta": (512,),
            f"{p}/ffn/linear_0/weight": (2048, 512),
            f"{p}/ffn/linear_0/bias": (2048,),
            f"{p}/ffn/linear_1/weight": (512, 2048),
            f"{p}/ffn/linear_1/bias": (512,),
            f"{p}/ffn/layer_norm/gamma": (512,),
            f"{p}/ffn/layer_norm/beta": (512,),
        }
    for name, shape in expected.items():
        assert name in variables, name
        assert variables[name].shape == shape, name
        assert variables[name].dtype == np.float16, name
    encoder_names = {n for n in variables if n.startswith("encoder/")}
    assert encoder_names - set(expected) == {"encoder/num_heads"}
    assert variables["decoder/embeddings/weight"].shape == (51865, 512)
    assert ct2_model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    # Real weights, not zeros or garbage from a misaligned read.
    conv = variables["encoder/conv1/weight"].astype(np.float32)
    assert np.isfinite(conv).all() and 0.0 < float(np.abs(conv).mean()) < 10.0


def _ct2_string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _tiny_model_bytes() -> bytes:
    weight = np.arange(6, dtype="<f2").reshape(2, 3)
    body = struct.pack("<I", 6) + _ct2_string("WhisperSpec") + struct.pack("<II", 3, 2)
    body += _ct2_string("w") + struct.pack("<BII", 2, 2, 3) + struct.pack("<BI", 4, weight.nbytes) + weight.tobytes()
    body += _ct2_string("n") + struct.pack("<B", 0) + struct.pack("<BI", 2, 2) + struct.pack("<h", 8)
    body += struct.pack("<I", 1) + _ct2_string("alias") + _ct2_string("w")
    return body


def test_chained_reader_parses_across_any_split_point() -> None:
    data = _tiny_model_bytes()
    for cut in range(len(data) + 1):
        model = ct2.parse_ct2_model(ct2.ChainedReader([io.BytesIO(data[:cut]), io.BytesIO(data[cut:])]))
        np.testing.assert_array_equal(model.variables["w"], np.arange(6, dtype=np.float16).reshape(2, 3))
        assert int(model.variables["n"]) == 8
        assert model.aliases == {"alias": "w"}


def test_parser_rejects_truncated_and_trailing_data() -> None:
    data = _tiny_model_bytes()
    with pytest.raises(EOFError):
        ct2.parse_ct2_model(ct2.ChainedReader([io.BytesIO(data[:-3])]))
    with pytest.raises(ValueError, match="trailing"):
        ct2.parse_ct2_model(ct2.ChainedReader([io.BytesIO(data + b"x")]))
    with pytest.raises(ValueError, match="version"):
        ct2.parse_ct2_model(ct2.ChainedReader([io.BytesIO(struct.pack("<I", 5) + data[4:])]))


# ------------------------------------------------------------------------------------------
# mapping
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_mapping_covers_every_tensor(ct2_model: ct2.Ct2Model) -> None:
    state = iw.ct2_to_hf_state_dict(ct2.load_ct2_variables_from(ct2_model))
    # 245 = WhisperForConditionalGeneration's 246 state-dict entries minus the tied proj_out.
    assert len(state) == 245
    assert state["model.encoder.layers.0.self_attn.k_proj.weight"].shape == (512, 512)
    assert "model.encoder.layers.0.self_attn.k_proj.bias" not in state


@pytest.mark.slow
def test_mapping_fails_loudly(ct2_model: ct2.Ct2Model) -> None:
    variables = ct2.load_ct2_variables_from(ct2_model)
    with pytest.raises(ValueError, match="unmapped"):
        iw.ct2_to_hf_state_dict(variables | {"encoder/surprise": np.zeros(3, np.float16)})
    missing = dict(variables)
    del missing["decoder/layer_3/ffn/linear_1/bias"]
    with pytest.raises(KeyError, match="linear_1/bias"):
        iw.ct2_to_hf_state_dict(missing)
    bias = variables["encoder/layer_0/self_attention/linear_0/bias"].copy()
    bias[600] = 1.0  # inside the key slice [512, 1024)
    with pytest.raises(ValueError, match="key-projection bias"):
        iw.ct2_to_hf_state_dict(variables | {"encoder/layer_0/self_attention/linear_0/bias": bias})


# ------------------------------------------------------------------------------------------
# end to end
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_convert_is_idempotent(converted: Path) -> None:
    weights = converted / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert iw.is_complete_conversion(converted)
    assert iw.convert(converted) == converted
    assert weights.stat().st_mtime_ns == before
    assert not iw.is_complete_conversion(converted, dtype="float16")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


@pytest.mark.slow
def test_converted_model_transcribes_speech(converted: Path, speech_16k: np.ndarray) -> None:
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(converted)
    model = WhisperForConditionalGeneration.from_pretrained(converted).eval()
    features = processor(speech_16k, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        ids = model.generate(features, language="en", task="transcribe", num_beams=1, do_sample=False)
    transcript = processor.batch_decode(ids, skip_special_tokens=True)[0]
    expected, got = Counter(_words(SENTENCE)), Counter(_words(transcript))
    recall = sum((expected & got).values()) / sum(expected.values())
    assert recall >= 0.8, f"transcript {transcript!r} recalls only {recall:.0%} of {SENTENCE!r}"


@pytest.mark.slow
def test_audio_classification_loads_encoder(converted: Path) -> None:
    """The instrument classifier will start from WhisperForAudioClassification: it must pick up
    every encoder weight (only its new head may be missing) and give finite hidden states."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoFeatureExtractor, WhisperForAudioClassification

    model, info = WhisperForAudioClassification.from_pretrained(
        converted, num_labels=4, output_loading_info=True
    )
    assert {k.split(".")[0] for k in info["missing_keys"]} <= {"projector", "classifier"}
    assert all(k.startswith("model.decoder.") for k in info["unexpected_keys"])
    assert not info["mismatched_keys"]
    saved = load_file(converted / "model.safetensors")
    for key, tensor in model.encoder.state_dict().items():
        torch.testing.assert_close(tensor, saved[f"model.encoder.{key}"], rtol=0, atol=0, msg=key)

    extractor = AutoFeatureExtractor.from_pretrained(converted)
    t = np.arange(16000 * 2) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    features = extractor(tone, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        hidden = model.eval().encoder(features).last_hidden_state
        logits = model(features).logits
    assert hidden.shape == (1, 1500, 512)
    assert torch.isfinite(hidden).all() and 0.1 < float(hidden.std()) < 100.0
    assert logits.shape == (1, 4) and torch.isfinite(logits).all()
