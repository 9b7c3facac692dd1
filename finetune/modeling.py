"""Turn any pretrained audio checkpoint into an InstruSense classifier over the taxonomy.

Whisper bases get special care: their encoder expects 30 s inputs, so the positional table is cut
to the training window (and the feature extractor told the same), and only the first
`encoder_layers` blocks are kept — the early blocks transfer best to instruments, the deep ones
specialise in speech, and each dropped block makes inference cheaper.
"""

from __future__ import annotations

import logging

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
