"""finetune.augment: same length, finite, bounded, reproducible for a seed, actually changes audio."""

from __future__ import annotations

import pytest
import torch

from finetune.augment import amplifier, augment, filter_gains, spec_mask, synthetic_ir, varispeed

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


def test_spec_mask_hides_bounded_bands_and_spans_with_the_mean():
    x = torch.randn(6, 80, 300)
    before = x.clone()
    y = spec_mask(x, torch.Generator().manual_seed(1), freq_width=12, time_width=0.1)
    assert torch.equal(x, before) and y.shape == x.shape
    assert torch.equal(y, spec_mask(x, torch.Generator().manual_seed(1), freq_width=12, time_width=0.1))
    changed = x != y
    assert changed.any()
    for b in range(len(x)):
        assert torch.allclose(y[b][changed[b]], x[b].mean().expand(int(changed[b].sum())))
        rows = changed[b].all(dim=1)  # a masked band spans every frame
        cols = changed[b].all(dim=0)  # a masked span covers every bin
        assert rows.sum() <= 2 * 12 and cols.sum() <= 2 * 30
        # every changed value lies in a masked band or span: nothing else is touched
        assert not (changed[b] & ~rows[:, None] & ~cols[None, :]).any()


def test_spec_mask_with_zero_widths_changes_nothing_and_rejects_other_shapes():
    x = torch.randn(2, 80, 100)
    assert torch.equal(spec_mask(x, torch.Generator().manual_seed(0), freq_width=0, time_width=0.0), x)
    with pytest.raises(ValueError):
        spec_mask(torch.randn(80, 100), torch.Generator().manual_seed(0))


@pytest.mark.parametrize("seed", range(6))
def test_filter_gains_add_one_bounded_curve_per_example_over_every_frame(seed):
    x = torch.randn(5, 80, 120)
    before = x.clone()
    y = filter_gains(x, torch.Generator().manual_seed(seed), units_per_db=1 / 40, db_range=6.0)
    assert torch.equal(x, before) and y.shape == x.shape
    assert torch.equal(y, filter_gains(x, torch.Generator().manual_seed(seed), units_per_db=1 / 40, db_range=6.0))
    gain_db = (y - x) * 40
    curve = gain_db[:, :, :1]
    assert torch.allclose(gain_db, curve.expand_as(gain_db), atol=1e-4)  # the same filter in every frame
    assert gain_db.abs().max() <= 6.0 + 1e-3
    assert (curve.squeeze(-1).std(dim=1) > 0.1).all()  # a shaped filter, not a plain level change
    other = filter_gains(x, torch.Generator().manual_seed(seed + 100), units_per_db=1 / 40)
    assert not torch.allclose(other, y)


def test_filter_gains_respect_the_chance_and_reject_other_shapes():
    x = torch.randn(40, 80, 10)
    assert filter_gains(x, torch.Generator().manual_seed(0), units_per_db=1 / 40, chance=0.0) is x
    y = filter_gains(x, torch.Generator().manual_seed(0), units_per_db=1 / 40, chance=0.5)
    touched = int(((y - x).abs().amax(dim=(1, 2)) > 0).sum())
    assert 5 < touched < 35
    with pytest.raises(ValueError):
        filter_gains(torch.randn(80, 100), torch.Generator().manual_seed(0), units_per_db=1 / 40)


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


@pytest.mark.parametrize("seed", range(6))
def test_amplifier_keeps_length_and_peak_and_adds_harmonics(seed):
    t = torch.arange(SR) / SR
    x = 0.3 * torch.sin(2 * torch.pi * 200 * t)  # 200 Hz: bins of a 1 s signal fall on its harmonics
    y = amplifier(x, SR, torch.Generator().manual_seed(seed))
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert float(y.abs().max()) == pytest.approx(0.3, rel=1e-4)
    spectrum = torch.fft.rfft(y).abs()
    harmonics = spectrum[[400, 600, 800]].pow(2).sum().sqrt()
    assert harmonics > 0.01 * spectrum[200]  # a pure tone comes out distorted (the input has none)


def test_amp_chance_zero_keeps_the_old_stream_and_one_changes_it():
    x = _tone()
    plain = augment(x, SR, torch.Generator().manual_seed(3))
    assert torch.equal(plain, augment(x, SR, torch.Generator().manual_seed(3), amp=0.0))
    assert not torch.equal(plain, augment(x, SR, torch.Generator().manual_seed(3), amp=1.0))
