"""Tiny randomly initialised checkpoints for tests (never a default model)."""

from __future__ import annotations

from pathlib import Path

from instrusense.taxonomy import LABELS


def make_tiny_whisper(out: Path, window_seconds: int = 3, seed: int = 0) -> Path:
    """A 1-layer Whisper audio classifier over the taxonomy, with a window-long positional table."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForAudioClassification

    torch.manual_seed(seed)
    config = WhisperConfig(
        d_model=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32, vocab_size=64,
        num_mel_bins=80, max_source_positions=window_seconds * 50, max_target_positions=8,
        pad_token_id=0, bos_token_id=0, eos_token_id=0, decoder_start_token_id=1,
        classifier_proj_size=16, use_weighted_layer_sum=True,
        id2label=dict(enumerate(LABELS)), label2id={k: i for i, k in enumerate(LABELS)},
        problem_type="multi_label_classification",
    )
    model = WhisperForAudioClassification(config)
    model.save_pretrained(out, safe_serialization=True)
    WhisperFeatureExtractor(chunk_length=window_seconds).save_pretrained(out)
    return out


def make_tiny_ast(out: Path, labels: list[str], seed: int = 0) -> Path:
    """A 1-layer single-label AST whose labels are arbitrary names (to test label mapping)."""
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    torch.manual_seed(seed)
    config = ASTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       max_length=300, id2label=dict(enumerate(labels)),
                       label2id={k: i for i, k in enumerate(labels)})
    ASTForAudioClassification(config).save_pretrained(out, safe_serialization=True)
    ASTFeatureExtractor(max_length=300).save_pretrained(out)
    return out
