"""Where the model runs: the INSTRUSENSE_DEVICE / --device choice, resolved the same way everywhere."""

import pytest
import torch

from instrusense.model import ModelUnavailableError, load_tagger, resolve_device


def test_auto_takes_a_gpu_when_there_is_one_and_the_cpu_otherwise():
    assert resolve_device("auto", cuda_available=True) == torch.device("cuda")
    assert resolve_device("auto", cuda_available=False) == torch.device("cpu")
    assert resolve_device("cpu", cuda_available=True) == torch.device("cpu")
    assert resolve_device("cuda:0", cuda_available=True) == torch.device("cuda:0")


def test_asking_for_a_missing_gpu_is_a_clear_error_not_a_silent_fallback():
    with pytest.raises(ModelUnavailableError, match="'cuda'.*no CUDA device.*'auto' or 'cpu'"):
        resolve_device("cuda", cuda_available=False)
    with pytest.raises(ModelUnavailableError, match="cuda:1"):
        resolve_device("cuda:1", cuda_available=True)  # one device: index 0 only


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_loading_on_a_missing_gpu_names_the_setting(tiny_whisper):
    with pytest.raises(ModelUnavailableError, match="INSTRUSENSE_DEVICE"):
        load_tagger(tiny_whisper, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_scores_on_the_gpu_match_the_cpu(tiny_whisper):
    import numpy as np

    windows = np.random.default_rng(0).normal(0, 0.1, (5, 48000)).astype(np.float32)
    cpu = load_tagger(tiny_whisper, device="cpu").predict(windows, batch_size=4)
    gpu = load_tagger(tiny_whisper, device="cuda").predict(windows, batch_size=4)
    assert np.abs(cpu - gpu).max() < 1e-3


def test_the_cpu_default_runs_int8_linear_layers_with_scores_close_to_float32(tiny_whisper):
    import numpy as np

    from instrusense.model import tagger_for
    from instrusense.settings import load_settings

    tagger = tagger_for(load_settings({}, model=tiny_whisper, device="cpu"))
    linears = [m for m in tagger.model.modules() if "Linear" in type(m).__name__]
    assert linears and all("quantiz" in type(m).__module__ for m in linears)  # every linear layer is int8
    windows = np.random.default_rng(0).normal(0, 0.1, (5, 48000)).astype(np.float32)
    int8 = tagger.predict(windows, batch_size=4)
    fp32 = load_tagger(tiny_whisper, device="cpu").predict(windows, batch_size=4)
    assert 0 < np.abs(int8 - fp32).max() < 0.05  # quantised (not the same numbers), yet the same scores
