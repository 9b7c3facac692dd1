"""Growing a saved Whisper classifier to more encoder blocks (finetune.modeling.grow_weights): the grown
model must score exactly as the saved one until it trains, and must refuse what it cannot grow."""

import numpy as np
import pytest
import torch

from finetune.modeling import build_classifier, grow_weights, load_weights, save_model
from tiny_model import make_tiny_whisper


@pytest.fixture(scope="module")
def two_block_base(tmp_path_factory):
    return make_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper-2"), encoder_layers=2, seed=3)


def _logits(model, extractor, wave):
    inputs = extractor(wave, sampling_rate=16000, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        return model(input_features=inputs["input_features"]).logits


def test_a_grown_model_scores_as_the_saved_one_and_its_new_block_can_learn(two_block_base, tmp_path):
    small, extractor = build_classifier(str(two_block_base), encoder_layers=1, projector_size=8)
    with torch.no_grad():  # a trained-looking layer sum, not the uniform default
        small.layer_weights.copy_(torch.tensor([0.3, -0.7]))
    save_model(small, extractor, tmp_path / "small", "float32")

    grown, _ = build_classifier(str(two_block_base), encoder_layers=2, projector_size=8)
    before = _logits(grown, extractor, np.random.default_rng(0).normal(0, 0.1, 48000).astype(np.float32))
    grow_weights(grown, tmp_path / "small")
    wave = np.random.default_rng(1).normal(0, 0.1, 48000).astype(np.float32)
    expected = _logits(small, extractor, wave)
    got = _logits(grown, extractor, wave)
    assert not torch.allclose(before, got, atol=1e-3)  # the weights did change
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    # the new block is not frozen at the identity: a step of training moves its output projection
    grown.train()
    inputs = extractor(wave, sampling_rate=16000, return_tensors="pt")
    grown(input_features=inputs["input_features"]).logits.sum().backward()
    assert grown.encoder.layers[1].fc2.weight.grad.abs().sum() > 0


def test_growing_refuses_a_model_with_as_many_blocks_or_other_labels(two_block_base, tmp_path):
    same, extractor = build_classifier(str(two_block_base), encoder_layers=2, projector_size=8)
    save_model(same, extractor, tmp_path / "same", "float32")
    with pytest.raises(ValueError, match="grow"):
        grow_weights(same, tmp_path / "same")
    load_weights(same, tmp_path / "same")  # an equal model still loads the strict way

    other, _ = build_classifier(str(two_block_base), encoder_layers=2, projector_size=8, labels=("flute", "tuba"))
    with pytest.raises(ValueError, match="labels"):
        grow_weights(other, tmp_path / "same")


def test_grown_blocks_learn_at_the_head_rate_and_the_old_blocks_at_the_encoder_rate(two_block_base):
    from finetune.modeling import param_groups

    model, _ = build_classifier(str(two_block_base), encoder_layers=2, projector_size=8)
    head, body = param_groups(model, 1e-3, 1e-5, 0.01, new=("encoder.layers.1.",))
    assert (head["lr"], body["lr"]) == (1e-3, 1e-5)
    ids = {id(p): name for name, p in model.named_parameters()}
    assert any(ids[id(p)].startswith("encoder.layers.1.") for p in head["params"])
    assert not any(ids[id(p)].startswith("encoder.layers.1.") for p in body["params"])
    assert any(ids[id(p)].startswith("encoder.layers.0.") for p in body["params"])
