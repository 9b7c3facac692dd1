"""Loading an audio-classification checkpoint once and running batched window inference.

Any `transformers` audio-classification checkpoint works (local directory or Hub id). Its labels
are mapped onto the taxonomy; taxonomy labels the checkpoint lacks score 0.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from instrusense.scores import activate
from instrusense.settings import DEFAULT_MODEL, Settings
from instrusense.stopping import StopSignal, check_stop
from instrusense.taxonomy import LABEL_INDEX, LABELS, to_taxonomy

log = logging.getLogger(__name__)

HOW_TO_GET_A_MODEL = (
    "Get the default model by cloning the repository with its models/instrusense folder, train one "
    "with `python -m finetune.train` (see finetune/README.md), or point INSTRUSENSE_MODEL / --model at "
    "a local checkpoint directory or a Hugging Face Hub id of an audio-classification model."
)


class ModelUnavailableError(RuntimeError):
    """The requested checkpoint cannot be loaded; the message says what to do."""


@dataclass
class Tagger:
    """A loaded checkpoint with what the analysis needs to know about it."""

    model: torch.nn.Module
    feature_extractor: object
    model_id: str
    multi_label: bool
    sampling_rate: int
    native_window_seconds: float | None
    """Input length the model was built for (Whisper-style extractors pad to a fixed length)."""
    label_map: np.ndarray
    """(n_model_labels,) taxonomy index of each model output, -1 where it is no taxonomy label."""
    device: torch.device = torch.device("cpu")

    def predict(self, windows: np.ndarray, batch_size: int, should_stop: StopSignal | None = None) -> np.ndarray:
        """(n_windows, len(LABELS)) confidences for equal-length windows of mono audio.

        `should_stop` (a callable or a `threading.Event`) is checked before every batch, so that a
        cancelled or timed-out request frees the CPU within one batch; it raises `Stopped`.
        """
        out = np.zeros((len(windows), len(LABELS)), dtype=np.float32)
        for i in range(0, len(windows), batch_size):
            check_stop(should_stop)
            batch = windows[i:i + batch_size]
            inputs = self.feature_extractor(list(batch), sampling_rate=self.sampling_rate, return_tensors="pt")
            inputs = to_device(inputs, self.device)
            with torch.inference_mode():
                logits = self.model(**inputs).logits.float().cpu().numpy()
            out[i:i + len(batch)] = self._to_taxonomy(activate(logits, self.multi_label))
        return out

    def _to_taxonomy(self, probs: np.ndarray) -> np.ndarray:
        mapped = np.zeros((probs.shape[0], len(LABELS)), dtype=np.float32)
        for model_idx, tax_idx in enumerate(self.label_map):
            if tax_idx >= 0:
                mapped[:, tax_idx] = np.maximum(mapped[:, tax_idx], probs[:, model_idx])
        return mapped


def to_device(inputs: dict, device: torch.device) -> dict:
    """A feature extractor's output (tensors and anything else) with its tensors on `device`."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def label_map_for(id2label: dict[int, str]) -> np.ndarray:
    """Taxonomy index of each model label (-1 where the label is not an instrument of ours)."""
    n = len(id2label)
    mapping = np.full(n, -1, dtype=np.int64)
    for idx, name in id2label.items():
        key = to_taxonomy(str(name))
        if key is not None:
            mapping[int(idx)] = LABEL_INDEX[key]
    return mapping


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantisation of the linear layers: about twice as fast on CPUs, weights stay as shipped."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao's eager API; still the CPU fast path in 2.9
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def resolve_device(requested: str = "auto", cuda_available: bool | None = None) -> torch.device:
    """The torch device for a `Settings.device` value; asking for a GPU that is not there is an error,
    not a silent fall-back, so a deployment that expects one finds out at start-up."""
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if requested == "auto":
        return torch.device("cuda" if available else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        count = torch.cuda.device_count() if cuda_available is None else int(available)
        if not available or (device.index or 0) >= count:
            raise ModelUnavailableError(
                f"The device {requested!r} was asked for (INSTRUSENSE_DEVICE / --device), but torch sees "
                f"{count if available else 'no'} CUDA device{'s' if count != 1 else ''}. Use 'auto' or 'cpu'.")
    return device


def resolve_model_id(model: str | None) -> str:
    """The checkpoint to use: explicit choice, else the shipped default."""
    return model or DEFAULT_MODEL


def tagger_for(settings: Settings) -> Tagger:
    """The (cached) tagger the settings ask for."""
    return load_tagger(resolve_model_id(settings.model), settings.threads, settings.quantize, settings.device)


def tagger_or_reason(settings: Settings) -> tuple[Tagger | None, ModelUnavailableError | None]:
    """The tagger, or why it cannot be loaded (logged once): for faces that go on without a model and
    say why on every request or file instead of failing at start-up."""
    try:
        return tagger_for(settings), None
    except ModelUnavailableError as exc:
        log.error("%s", exc)
        return None, exc


def tagger_from(model: torch.nn.Module, extractor, model_id: str = "in memory",
                device: torch.device | None = None) -> Tagger:
    """Wrap a model and its feature extractor that are already in memory (a model being trained, say)
    into the `Tagger` the analysis runs, so that evaluation scores clips exactly as the app and CLI do."""
    label_map = label_map_for(model.config.id2label)
    if not (label_map >= 0).any():
        raise ModelUnavailableError(
            f"The model {model_id!r} has no labels that name instruments of the InstruSense taxonomy "
            f"(it has e.g. {list(model.config.id2label.values())[:5]}).")
    n_samples = getattr(extractor, "n_samples", None)
    rate = int(extractor.sampling_rate)
    return Tagger(
        model=model,
        feature_extractor=extractor,
        model_id=model_id,
        multi_label=model.config.problem_type == "multi_label_classification",
        sampling_rate=rate,
        native_window_seconds=(n_samples / rate) if n_samples else None,
        label_map=label_map,
        device=device if device is not None else next(model.parameters()).device,
    )


@functools.lru_cache(maxsize=2)
def load_tagger(model_id: str, threads: int = 0, quantize: bool = False, device: str = "auto") -> Tagger:
    """Load a checkpoint once per process (cached), ready for inference."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stderr stays readable in batches

    if threads > 0:
        torch.set_num_threads(threads)
    target = resolve_device(device)
    local = Path(model_id)
    if model_id == DEFAULT_MODEL and not (local / "config.json").is_file():
        raise ModelUnavailableError(f"The default model is missing ({local}). {HOW_TO_GET_A_MODEL}")
    looks_local = local.exists() or model_id.startswith((".", "/", "~")) or model_id.count("/") > 1
    if looks_local and not (local / "config.json").is_file():
        raise ModelUnavailableError(f"No checkpoint at {model_id} (config.json missing). {HOW_TO_GET_A_MODEL}")
    try:
        model = AutoModelForAudioClassification.from_pretrained(model_id, use_safetensors=True)
        extractor = AutoFeatureExtractor.from_pretrained(model_id)
    except Exception as exc:  # Hub unreachable, unknown architecture, pickle-only weights, ...
        raise ModelUnavailableError(f"Could not load the model {model_id!r}: {exc}. {HOW_TO_GET_A_MODEL}") from exc
    model = model.float().eval()  # weights may ship in float16; compute in float32 (same scores on CPU and GPU)
    if quantize and target.type != "cpu":
        log.info("dynamic int8 (INSTRUSENSE_QUANTIZE) applies to CPUs only; running float32 on %s", target)
        quantize = False
    if quantize:
        model = quantize_int8(model)
    model = model.to(target)
    tagger = tagger_from(model, extractor, model_id, target)
    log.info("loaded %s (%s%s, %d labels, %s, %s window) on %s", model_id, model.config.model_type,
             ", int8" if quantize else "",
             len(tagger.label_map), "multi-label" if tagger.multi_label else "single-label",
             f"{tagger.native_window_seconds:g} s" if tagger.native_window_seconds else "free", target)
    return tagger
