"""Turn any pretrained audio checkpoint into an InstruSense classifier over the taxonomy, initialise its
head from data, and load and save its weights.

Whisper bases get special care: their encoder expects 30 s inputs, so the positional table is cut
to the training window (and the feature extractor told the same), and only the first
`encoder_layers` blocks are kept — the early blocks transfer best to instruments, the deep ones
specialise in speech, and each dropped block makes inference cheaper.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
from transformers import (AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification,
                          WhisperFeatureExtractor, WhisperForAudioClassification)

from instrusense.taxonomy import LABELS

log = logging.getLogger(__name__)

WHISPER_FRAMES_PER_SECOND = 50  # encoder positions per second of audio (10 ms hop, conv stride 2)


def label_kwargs(labels: tuple[str, ...] = LABELS) -> dict:
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
        "problem_type": "multi_label_classification",
    }


def build_classifier(base: str, *, window_seconds: float = 3.0, encoder_layers: int | None = None,
                     projector_size: int = 256, labels: tuple[str, ...] = LABELS) -> tuple[torch.nn.Module, object]:
    """A fresh multi-label classifier head on `base` (local dir or Hub id) and its feature extractor."""
    config = AutoConfig.from_pretrained(base)
    if config.model_type != "whisper":
        model = AutoModelForAudioClassification.from_pretrained(base, ignore_mismatched_sizes=True, **label_kwargs(labels))
        return model, AutoFeatureExtractor.from_pretrained(base)

    positions = round(window_seconds * WHISPER_FRAMES_PER_SECOND)
    if window_seconds * WHISPER_FRAMES_PER_SECOND != positions or positions > config.max_source_positions:
        raise ValueError(f"window_seconds must be a multiple of 0.02 s and at most "
                         f"{config.max_source_positions / WHISPER_FRAMES_PER_SECOND:g} s, got {window_seconds}")
    if encoder_layers is not None:
        if not 1 <= encoder_layers <= config.encoder_layers:
            raise ValueError(f"encoder_layers must lie in 1..{config.encoder_layers}, got {encoder_layers}")
        config.encoder_layers = encoder_layers
    config.use_weighted_layer_sum = True
    config.classifier_proj_size = projector_size
    for key, value in label_kwargs(labels).items():
        setattr(config, key, value)
    model = WhisperForAudioClassification.from_pretrained(base, config=config, ignore_mismatched_sizes=True)
    table = model.encoder.embed_positions.weight.data[:positions].clone()
    model.encoder.embed_positions = torch.nn.Embedding(positions, config.d_model)
    model.encoder.embed_positions.weight.data.copy_(table)
    model.encoder.embed_positions.requires_grad_(False)
    model.encoder.max_source_positions = positions
    model.config.max_source_positions = positions
    extractor = WhisperFeatureExtractor.from_pretrained(base, chunk_length=window_seconds)
    # chunk_length sets n_samples / nb_max_frames only in __init__; make sure they match the window.
    extractor.chunk_length = window_seconds
    extractor.n_samples = round(window_seconds * extractor.sampling_rate)
    extractor.nb_max_frames = extractor.n_samples // extractor.hop_length
    log.info("whisper classifier: %d encoder layers, %g s window (%d positions), %d labels",
             config.encoder_layers, window_seconds, positions, len(labels))
    return model, extractor


def _output_layer(model) -> torch.nn.Linear:
    """The last linear layer producing one logit per label (any audio-classification head)."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == model.config.num_labels]
    return layers[-1]


@torch.no_grad()
def _fit_projector(projector: torch.nn.Linear, x: torch.Tensor) -> None:
    """Set `projector` to standardise `x` (windows × features) and project it on its principal axes."""
    mu, sigma = x.mean(0), x.std(0).clamp_min(1e-3)
    z = (x - mu) / sigma
    _, s, vt = torch.linalg.svd(z - z.mean(0), full_matrices=False)
    out_dim = projector.out_features
    k = min(out_dim, vt.shape[0])
    comp = vt[:k] / (s[:k, None] / math.sqrt(len(z))).clamp_min(1e-3)  # unit variance per component
    weight = torch.zeros(out_dim, x.shape[1], dtype=torch.float64)
    weight[:k] = comp / sigma[None, :]
    projector.weight.copy_(weight.float())
    projector.bias.copy_((-weight @ mu).float())
    log.info("projector initialised from %d windows (%d principal axes)", len(x), k)


@torch.no_grad()
def init_head_from_data(model, batches, n_batches: int) -> None:
    """Data-dependent head init: label-prior biases, and for Whisper a standardising projector.

    With a zero bias every sigmoid starts at 0.5 and the optimizer spends thousands of steps only
    learning that most instruments are absent, so each label starts at its base rate instead.
    Whisper's residual stream also carries a few huge, nearly constant dimensions; a randomly
    initialised linear projector passes them on and the classifier sees almost the same pooled vector
    for every clip. Because the projector is linear and pooling is a mean, fitting it (standardised
    principal axes) on time-averaged hidden states is exact. The model classes stay standard.
    """
    model.eval()
    device = next(model.parameters()).device
    whisper = getattr(model.config, "use_weighted_layer_sum", False) and hasattr(model, "projector")
    pooled, targets = [], []
    for step in range(n_batches):
        inputs, target = batches.batch(10**9 + step)  # steps the training loop never draws
        targets.append(target)
        if whisper:
            features = inputs["input_features"].to(device)
            hidden = torch.stack(model.encoder(features, output_hidden_states=True).hidden_states, 1)
            weights = torch.softmax(model.layer_weights, dim=-1).view(1, -1, 1, 1)
            pooled.append((hidden * weights).sum(1).mean(1).cpu())
    if whisper:
        _fit_projector(model.projector, torch.cat(pooled).double())
    head = _output_layer(model)
    prior = torch.cat(targets).mean(0).clamp(1e-3, 0.5)
    head.bias.copy_(torch.log(prior / (1 - prior)).to(head.bias.device))
    head.weight.mul_(0.1)
    log.info("classifier bias at the label priors of %d examples", sum(len(t) for t in targets))


ENCODER_PREFIXES = {"encoder", "model", "audio_spectrogram_transformer", "wav2vec2", "hubert"}


def param_groups(model, head_lr: float, encoder_lr: float, weight_decay: float) -> list[dict]:
    """The new head at `head_lr`, the pretrained encoder at `encoder_lr` (0 freezes it)."""
    head, body = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (body if name.split(".")[0] in ENCODER_PREFIXES else head).append(p)
    if encoder_lr <= 0:
        for p in body:
            p.requires_grad_(False)
        body = []
    groups = [{"params": head, "lr": head_lr, "weight_decay": weight_decay}]
    if body:
        groups.append({"params": body, "lr": encoder_lr, "weight_decay": weight_decay})
    return groups


def load_weights(model, path: Path) -> None:
    """Copy a saved model's weights into `model` (cast to its dtype); refuse a model whose labels or
    parameters differ, since a partial copy would train a different model than asked for."""
    from safetensors.torch import load_file

    saved = json.loads((path / "config.json").read_text()).get("id2label", {})
    if {int(i): label for i, label in saved.items()} != model.config.id2label:
        raise ValueError(f"{path} has labels {list(saved.values())}, not this taxonomy's "
                         f"{list(model.config.id2label.values())}")
    try:  # strict: missing, unexpected and reshaped tensors are all errors
        model.load_state_dict(load_file(str(path / "model.safetensors")))
    except RuntimeError as err:
        raise ValueError(f"{path} does not match the model built from --base: {err}") from err
    log.info("weights from %s", path)


def save_model(model, extractor, out: Path, dtype: str) -> None:
    """Hugging Face format, loadable by `pipeline("audio-classification", model=out)`."""
    out.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(getattr(torch, dtype)) if v.is_floating_point() else v).cpu()
             for k, v in model.state_dict().items()}
    model.save_pretrained(out, state_dict=state, safe_serialization=True)
    extractor.save_pretrained(out)
