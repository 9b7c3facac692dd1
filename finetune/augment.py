"""On-the-fly audio augmentation for training: what separates a dry SoundFont from a real recording.

:func:`augment` is pure: a 1-D waveform and a ``torch.Generator`` in, a waveform of the same length
out, every random choice drawn from the generator (same seed, same result). The chain follows the
signal path of a real recording: the player's tone (EQ, compression) -> the room (reverberation)
-> the background (noise at a random SNR) -> the microphone (phone / laptop band-limiting) -> gain.
Each stage runs with its own probability; the training loader calls it once per example.
"""

from __future__ import annotations

import math

import torch
import torchaudio.functional as AF


P_EQ = 0.5
P_COMPRESS = 0.3
P_REVERB = 0.5
P_NOISE = 0.5
P_DEVICE = 0.25
P_GAIN = 0.8


def _u(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _chance(g: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=g)) < p


def _choice(g: torch.Generator, options: list):
    return options[int(torch.randint(len(options), (), generator=g))]


def random_eq(wave: torch.Tensor, sr: int, g: torch.Generator) -> torch.Tensor:
    """1-3 random peaking / shelving / pass filters (tone of the instrument, mic placement)."""
    for _ in range(int(torch.randint(1, 4, (), generator=g))):
        kind = _choice(g, ["peak", "peak", "bass", "treble", "highpass", "lowpass"])
        if kind == "peak":
            f = math.exp(_u(g, math.log(80), math.log(min(7000, sr / 2 - 500))))
            wave = AF.equalizer_biquad(wave, sr, f, _u(g, -12, 12), _u(g, 0.4, 2.5))
        elif kind == "bass":
            wave = AF.bass_biquad(wave, sr, _u(g, -10, 10), _u(g, 80, 300))
        elif kind == "treble":
            wave = AF.treble_biquad(wave, sr, _u(g, -10, 8), _u(g, 2500, min(6000, sr / 2 - 1000)))
        elif kind == "highpass":
            wave = AF.highpass_biquad(wave, sr, _u(g, 30, 200))
        else:
            wave = AF.lowpass_biquad(wave, sr, _u(g, 2500, sr / 2 - 500))
    return wave


def synthetic_ir(sr: int, g: torch.Generator, rt60: float | None = None) -> torch.Tensor:
    """Room impulse response: direct path, pre-delay, exponentially decaying noise tail that gets
    darker as it decays (high frequencies die faster, as in real rooms)."""
    rt60 = rt60 if rt60 is not None else _u(g, 0.15, 1.6)
    n = int(sr * min(rt60 * 1.2, 2.0)) + 1
    t = torch.arange(n, dtype=torch.float32) / sr
    noise = torch.randn(n, generator=g)
    tail = noise * torch.exp(-6.9078 * t / rt60)  # -60 dB at rt60
    # darker tail: blend with a low-passed copy, more of it later in the tail
    dark = AF.lowpass_biquad(tail, sr, _u(g, 1500, 5000))
    mix = torch.clamp(t / rt60, 0, 1)
    tail = (1 - mix) * tail + mix * dark
    predelay = int(sr * _u(g, 0.002, 0.03))
    ir = torch.zeros(n + predelay)
    ir[predelay:] = tail * _u(g, 0.2, 0.8) / (tail.norm() + 1e-9)
    ir[0] = 1.0
    return ir / ir.norm()


def reverb(wave: torch.Tensor, sr: int, g: torch.Generator) -> torch.Tensor:
    ir = synthetic_ir(sr, g)
    wet = AF.fftconvolve(wave, ir)[: wave.shape[-1]]
    dry_rms, wet_rms = wave.pow(2).mean().sqrt(), wet.pow(2).mean().sqrt() + 1e-9
    return wet * (dry_rms / wet_rms)


def coloured_noise(n: int, g: torch.Generator, slope: float) -> torch.Tensor:
    """Noise whose power falls as 1/f^slope (0 white, 1 pink, 2 brown)."""
    spec = torch.fft.rfft(torch.randn(n, generator=g))
    f = torch.arange(spec.shape[-1], dtype=torch.float32)
    f[0] = 1.0
    noise = torch.fft.irfft(spec / f.pow(slope / 2), n=n)
    return noise / (noise.pow(2).mean().sqrt() + 1e-9)


def background(n: int, sr: int, g: torch.Generator) -> torch.Tensor:
    """Coloured noise, mains hum, or a babble-like modulated band of noise (unit RMS)."""
    kind = _choice(g, ["white", "pink", "brown", "hum", "babble"])
    if kind == "hum":
        t = torch.arange(n, dtype=torch.float32) / sr
        f0 = _choice(g, [50.0, 60.0])
        x = sum(_u(g, 0.2, 1.0) / k * torch.sin(2 * math.pi * f0 * k * t + _u(g, 0, 6.28)) for k in range(1, 6))
        x = x + 0.1 * coloured_noise(n, g, 1.0)
    elif kind == "babble":
        x = AF.bandpass_biquad(coloured_noise(n, g, 1.0), sr, _u(g, 300, 1200), 0.7)
        env = AF.lowpass_biquad(torch.rand(n, generator=g), sr, _u(g, 2, 8))
        x = x * (env - env.min() + 0.2)
    else:
        x = coloured_noise(n, g, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind])
    return x / (x.pow(2).mean().sqrt() + 1e-9)


def add_noise(wave: torch.Tensor, sr: int, g: torch.Generator, snr_db: tuple[float, float] = (5, 40)) -> torch.Tensor:
    noise = background(wave.shape[-1], sr, g)
    rms = wave.pow(2).mean().sqrt()
    return wave + noise * rms / (10 ** (_u(g, *snr_db) / 20))


def device(wave: torch.Tensor, sr: int, g: torch.Generator) -> torch.Tensor:
    """Band-limiting of a phone (~300-3400 Hz) or laptop microphone (~150-7000 Hz), light saturation."""
    if _chance(g, 0.5):
        lo, hi = _u(g, 250, 400), _u(g, 3000, 3800)
    else:
        lo, hi = _u(g, 100, 250), _u(g, 5000, min(7500, sr / 2 - 200))
    for _ in range(2):  # 4th-order slopes
        wave = AF.highpass_biquad(wave, sr, lo)
        wave = AF.lowpass_biquad(wave, sr, hi)
    if _chance(g, 0.5):
        drive = _u(g, 1.0, 4.0)
        peak = wave.abs().max() + 1e-9
        wave = torch.tanh(wave / peak * drive) * peak / math.tanh(drive)
    return wave


def compress(wave: torch.Tensor, sr: int, g: torch.Generator) -> torch.Tensor:
    """Feed-forward RMS compressor: threshold below the peak level, ratio 2-8, ~10 ms detector."""
    hop = max(1, sr // 100)
    n = wave.shape[-1]
    frames = torch.nn.functional.pad(wave, (0, (-n) % hop)).reshape(-1, hop)
    level = 20 * torch.log10(frames.pow(2).mean(dim=1).sqrt() + 1e-8)
    threshold = float(level.max()) - _u(g, 6, 24)
    ratio = _u(g, 2, 8)
    over = torch.clamp(level - threshold, min=0)
    gain_db = -over * (1 - 1 / ratio)
    gain = 10 ** (gain_db / 20)
    gain = torch.nn.functional.interpolate(gain[None, None], size=frames.numel(), mode="linear",
                                           align_corners=False)[0, 0][:n]
    return wave * gain * 10 ** (float(-gain_db.min()) * _u(g, 0.3, 1.0) / 20)  # make-up gain


def augment(wave: torch.Tensor, sample_rate: int, generator: torch.Generator) -> torch.Tensor:
    """A random, reproducible chain of recording effects; same length, finite, peak at most 1."""
    if wave.dim() != 1:
        raise ValueError(f"augment expects a 1-D waveform, got shape {tuple(wave.shape)}")
    n = wave.shape[-1]
    g = generator
    x = wave.detach().to(torch.float32).clone()
    if n == 0 or not torch.isfinite(x).all() or x.abs().max() == 0:
        return torch.nan_to_num(x)
    if _chance(g, P_EQ):
        x = random_eq(x, sample_rate, g)
    if _chance(g, P_COMPRESS):
        x = compress(x, sample_rate, g)
    if _chance(g, P_REVERB):
        x = reverb(x, sample_rate, g)
    if _chance(g, P_NOISE):
        x = add_noise(x, sample_rate, g)
    if _chance(g, P_DEVICE):
        x = device(x, sample_rate, g)
    peak = float(x.abs().max())
    if _chance(g, P_GAIN) and peak > 0:
        x = x / peak * 10 ** (_u(g, -30, -1) / 20)
    x = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(x.abs().max())
    if peak > 1.0:
        x = x / peak
    return x[:n]


def varispeed(wave: torch.Tensor, sample_rate: int, factor: float) -> torch.Tensor:
    """Play ``wave`` ``factor`` times faster: pitch *and* formants move together, as on a tape machine.

    A shifted recording is a slightly bigger or smaller instrument, which multiplies the few sample
    libraries per label; the caller crops ``factor`` times the window it needs. The rate is rounded to
    10 Hz so the polyphase resampler stays small.
    """
    if factor <= 0:
        raise ValueError(f"varispeed factor must be positive, got {factor}")
    orig = max(10, int(round(sample_rate * factor / 10)) * 10)
    if orig == sample_rate:
        return wave
    return AF.resample(wave, orig, sample_rate)
