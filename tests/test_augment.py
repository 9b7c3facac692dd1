"""finetune.augment: same length, finite, bounded, reproducible for a seed, actually changes audio."""

from __future__ import annotations

import pytest
import torch

from finetune.augment import augment, synthetic_ir, varispeed

SR = 16000


def _tone(seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(SR * seconds)) / SR
    return 0.5 * torch.sin(2 * torch.pi * 440 * t) * torch.exp(-2 * t)


@pytest.mark.parametrize("seed", range(12))
def test_keeps_length_and_is_finite_and_bounded(seed):
    x = _tone()
    y = augment(x, SR, torch.Generator().manual_seed(seed))
    assert y.shape == x.shape and y.dtype == torch.float32
    assert torch.isfinite(y).all() and y.abs().max() <= 1.0


def test_deterministic_for_a_seed_and_varies_across_seeds():
    x = _tone()
    a = augment(x, SR, torch.Generator().manual_seed(5))
    b = augment(x, SR, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    outs = [augment(x, SR, torch.Generator().manual_seed(s)) for s in range(6)]
    assert any(not torch.allclose(o, x) for o in outs)
    assert len({round(float(o.abs().sum()), 3) for o in outs}) > 1


def test_does_not_modify_input_and_handles_edge_cases():
    x = _tone()
    before = x.clone()
    augment(x, SR, torch.Generator().manual_seed(0))
    assert torch.equal(x, before)
    assert augment(torch.zeros(SR), SR, torch.Generator().manual_seed(0)).abs().max() == 0
    assert augment(torch.zeros(0), SR, torch.Generator().manual_seed(0)).shape == (0,)
    with pytest.raises(ValueError):
        augment(torch.zeros(2, SR), SR, torch.Generator().manual_seed(0))


def test_impulse_response_decays():
    ir = synthetic_ir(SR, torch.Generator().manual_seed(0), rt60=0.5)
    assert torch.isfinite(ir).all() and abs(float(ir.norm()) - 1) < 1e-4
    early, late = ir[: SR // 10].pow(2).sum(), ir[SR // 2 :].pow(2).sum()
    assert late < early * 1e-2


@pytest.mark.parametrize("semitones", [-2.0, -0.5, 1.0, 2.0])
def test_varispeed_moves_the_pitch_by_its_factor_and_the_length_by_its_inverse(semitones):
    factor = 2 ** (semitones / 12)
    played = varispeed(_tone(2.0), SR, factor)
    assert len(played) == pytest.approx(2 * SR / factor, rel=1e-3)  # the rate is rounded to 10 Hz
    spectrum = torch.fft.rfft(played).abs()
    peak_hz = float(spectrum.argmax()) * SR / len(played)
    assert peak_hz == pytest.approx(440 * factor, abs=2.0)


def test_varispeed_at_unit_speed_is_the_input_and_rejects_a_non_positive_factor():
    x = _tone()
    assert varispeed(x, SR, 1.0) is x
    with pytest.raises(ValueError, match="positive"):
        varispeed(x, SR, 0.0)
