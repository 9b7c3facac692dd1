"""Non-instrument clips (every label 0): speech, noise, clicks, hum, tones, sweeps, near-silence, mixtures.

Speech comes from the Free Spoken Digit Dataset (FSDD: 6 speakers, 8 kHz, CC-BY-SA 4.0) and from
`espeak-ng` (many languages); the rest is generated. Each split draws on its own speakers, voices and
generator parameter ranges, so the held-out ``negatives`` split scores sounds never seen in training:
FSDD speakers theo and yweweler, the espeak languages of ``HELDOUT_VOICES``, 60 Hz hum (training: 50 Hz),
noise slopes, tone bands, click rates and sweep shapes of their own.
Clip ``i`` of a split depends only on (seed, split code, i), like the rendered clips.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finetune.data.clips import crop
from finetune.data.config import BuildConfig
from finetune.data.libraries import extract_from_mirror
from finetune.data.rows.base import RowSource, Stats, flac_bytes
from finetune.data.schema import SAMPLE_RATE

log = logging.getLogger(__name__)

NEGATIVE_CODES = {"train": 6, "negatives": 7}  # seed codes: apart from the build's (train 1, validation 2, one-shots 3, real_heldout 4)
HELDOUT_SPLIT = "negatives"
KIND = "negative"
FSDD_SPEAKERS = {"train": ("george", "jackson", "lucas", "nicolas"), "negatives": ("theo", "yweweler")}
# Latin-script languages (espeak reads the pseudo-words by each language's rules)
VOICES = {"train": ("en-us", "en-gb", "de", "fr-fr", "es", "it", "pt", "pl", "sv", "cs", "ro", "id", "tr", "hu"),
          "negatives": ("nl", "fi", "da", "ca", "hr", "sk", "en-gb-scotland")}
HELDOUT_VOICES = VOICES["negatives"]
# source -> share of a split's clips; sources are also the per-type rows of the evaluation
MIX = {"fsdd": 0.25, "espeak": 0.25, "noise": 0.1, "clicks": 0.08, "hum": 0.08, "tone": 0.08, "sweep": 0.06,
       "silence": 0.04, "mixture": 0.06}
SPEECH = ("fsdd", "espeak")
ORIGIN = {"fsdd": "real"}  # everything else is rendered (synthesised or generated)
LICENCES = {
    "fsdd": "Jakobovski/free-spoken-digit-dataset, CC-BY-SA 4.0 (real recordings of spoken digits)",
    "espeak": "synthesised with espeak-ng (GPL-3.0 software; the audio is generated here)",
    "generated": "noise, clicks, hum, tones, sweeps, near-silence and their mixtures: generated here (no licence)",
}
SYLLABLES = [c + v for c in ("", "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "sh", "ch")
             for v in ("a", "e", "i", "o", "u", "ai", "ou")]


def origin(source: str) -> str:
    return ORIGIN.get(source, "rendered")


# ---- generated sounds: pure functions of (rng, samples, held-out?) -------------------------------------------

def _band(rng: np.random.Generator, bands: list[tuple[float, float]]) -> float:
    lo, hi = bands[int(rng.integers(len(bands)))]
    return float(rng.uniform(lo, hi))


def coloured_noise(rng: np.random.Generator, n: int, slope: float) -> np.ndarray:
    """Noise whose power falls as 1/f**slope (0 white, 1 pink, 2 brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    f[0] = f[1] if n > 1 else 1.0
    x = np.fft.irfft(spec / f ** (slope / 2), n)
    return (x / (np.sqrt(np.mean(x ** 2)) + 1e-12)).astype(np.float32)


def noise(rng: np.random.Generator, n: int, held: bool) -> np.ndarray:
    slope = _band(rng, [(0.35, 0.75), (1.25, 1.65)] if held else [(0.0, 0.25), (0.85, 1.15), (1.75, 2.0)])
    x = coloured_noise(rng, n, slope)
    if rng.random() < 0.3:  # swelling and fading, like wind or traffic
        t = np.arange(n) / SAMPLE_RATE
        x *= (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 0.8) * t + rng.uniform(0, 6.3))).astype(np.float32)
    return x


def clicks(rng: np.random.Generator, n: int, held: bool) -> np.ndarray:
    """A click train (a metronome, a ticking clock, a crackle): short decaying impulses."""
    rate = _band(rng, [(10.0, 30.0)] if held else [(0.5, 8.0)])
    x = np.zeros(n, np.float32)
    if rng.random() < 0.5:  # regular
        times = np.arange(rng.uniform(0, 1 / rate), n / SAMPLE_RATE, 1 / rate)
    else:  # random, like vinyl crackle
        times = np.sort(rng.uniform(0, n / SAMPLE_RATE, rng.poisson(rate * n / SAMPLE_RATE) + 1))
    length = int(rng.integers(2, 80))
    shape = (rng.standard_normal(length) * np.exp(-np.arange(length) / max(1.0, length / 4))).astype(np.float32)
    for t in times:
        i = int(t * SAMPLE_RATE)
        seg = x[i:i + length]
        seg += shape[:len(seg)] * np.float32(rng.uniform(0.3, 1.0))
    return x + coloured_noise(rng, n, 0.0) * np.float32(10 ** (rng.uniform(-70, -45) / 20))


def hum(rng: np.random.Generator, n: int, held: bool) -> np.ndarray:
    """Mains hum: 60 Hz held out, 50 Hz in training, with harmonics and sometimes a buzzing clip."""
    base = (60.0 if held else 50.0) * rng.uniform(0.995, 1.005)
    t = np.arange(n) / SAMPLE_RATE
    x = sum(rng.uniform(0, 1) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6.3)) for k in range(1, 9))
    x = np.asarray(x, np.float32)
    if rng.random() < 0.4:
        peak = np.abs(x).max() + 1e-9
        x = np.clip(x / peak * rng.uniform(1.5, 4), -1, 1)
    return x + coloured_noise(rng, n, 1.0) * np.float32(0.01)


def tone(rng: np.random.Generator, n: int, held: bool) -> np.ndarray:
    """Pure sine tones, steady or as beeps; frequency bands alternate octaves between the splits."""
    bands = [(200, 400), (800, 1600), (3200, 5000)] if held else [(60, 200), (400, 800), (1600, 3200)]
    x = np.zeros(n, np.float32)
    beeps = 1 if rng.random() < 0.5 else int(rng.integers(2, 7))
    for _ in range(beeps):
        f = _band(rng, bands)
        a = 0 if beeps == 1 else int(rng.integers(0, max(1, n - SAMPLE_RATE // 10)))
        b = n if beeps == 1 else min(n, a + int(rng.uniform(0.05, 0.6) * SAMPLE_RATE))
        t = np.arange(b - a) / SAMPLE_RATE
        ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)
        x[a:b] += (np.sin(2 * np.pi * f * t) * ramp).astype(np.float32)
    return x


def sweep(rng: np.random.Generator, n: int, held: bool) -> np.ndarray:
    """A sine sweep: linear in frequency in training, exponential held out."""
    f0, f1 = np.exp(rng.uniform(np.log(50), np.log(6000), 2))
    t = np.arange(n) / SAMPLE_RATE
    dur = n / SAMPLE_RATE
    k = np.log(f1 / f0) / dur
    if held and abs(k) > 1e-6:
        phase = 2 * np.pi * f0 * (np.exp(k * t) - 1) / k
    else:
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * dur))
    return np.sin(phase).astype(np.float32)


def silence(rng: np.random.Generator, n: int, held: bool) -> np.ndarray:
    """Near-silence: a low noise floor (room tone, a preamp)."""
    level = rng.uniform(-58, -45) if held else rng.uniform(-80, -58)
    slope = rng.uniform(0.4, 1.6) if held else rng.choice([0.0, 1.0, 2.0])
    return coloured_noise(rng, n, slope) * np.float32(10 ** (level / 20))


GENERATORS: dict[str, Callable[[np.random.Generator, int, bool], np.ndarray]] = {
    "noise": noise, "clicks": clicks, "hum": hum, "tone": tone, "sweep": sweep, "silence": silence}


def mixture(rng: np.random.Generator, n: int, held: bool) -> np.ndarray:
    names = rng.choice(["noise", "clicks", "hum", "tone", "sweep"], size=int(rng.integers(2, 4)), replace=False)
    out = np.zeros(n, np.float32)
    for name in names:
        x = GENERATORS[str(name)](rng, n, held)
        out += x / (np.abs(x).max() + 1e-9) * np.float32(rng.uniform(0.2, 1.0))
    return out


# ---- speech ------------------------------------------------------------------------------------------------

def _resample(x: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return x.astype(np.float32)
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(x.astype(np.float32)), rate, SAMPLE_RATE).numpy()


def _decode(data: bytes) -> np.ndarray:
    import soundfile as sf

    x, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return _resample(x.mean(axis=1), rate)


def read_fsdd(path: str | Path, speakers: tuple[str, ...]) -> dict[str, list[np.ndarray]]:
    """speaker -> their recordings (16 kHz), sorted by file name, from a checked-out folder (``recordings/``
    or the wavs themselves) or a bare git mirror of Jakobovski/free-spoken-digit-dataset."""
    path = Path(path)
    if (path / "HEAD").is_file() and (path / "objects").is_dir():  # a bare mirror: extract the recordings
        tmp = Path(tempfile.mkdtemp(prefix="fsdd-"))
        try:
            extract_from_mirror(path, "HEAD", ("recordings",), tmp)
            return read_fsdd(tmp / "recordings", speakers)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    import soundfile as sf

    folder = path / "recordings" if (path / "recordings").is_dir() else path
    raw: dict[str, list[np.ndarray]] = {s: [] for s in speakers}
    rate = None
    for f in sorted(folder.glob("*.wav")):
        parts = f.stem.split("_")  # DIGIT_SPEAKER_INDEX.wav
        if len(parts) != 3 or parts[1] not in raw:
            continue
        try:
            x, sr = sf.read(str(f), dtype="float32", always_2d=True)
        except Exception as exc:  # a missing LFS blob or a broken file: the rest still serve
            log.warning("FSDD: skipped %s (%s)", f.name, exc)
            continue
        if rate not in (None, sr):
            raise ValueError(f"FSDD files at {rate} and {sr} Hz under {folder}")
        rate = sr
        raw[parts[1]].append(x.mean(axis=1))
    empty = [s for s, v in raw.items() if not v]
    if empty:
        raise FileNotFoundError(f"no FSDD recordings of speaker(s) {empty} under {folder}")
    return {s: _resample_each(takes, rate) for s, takes in raw.items()}


def _resample_each(takes: list[np.ndarray], rate: int) -> list[np.ndarray]:
    """Resample many short takes in one call (end to end, cut back at the scaled boundaries)."""
    whole = _resample(np.concatenate(takes), rate)
    bounds = np.round(np.cumsum([0] + [len(t) for t in takes]) * SAMPLE_RATE / rate).astype(int)
    return [whole[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def fsdd_utterance(rng: np.random.Generator, pool: dict[str, list[np.ndarray]]) -> np.ndarray:
    """One speaker: a single digit, or several spliced into a longer utterance with short pauses."""
    speaker = sorted(pool)[int(rng.integers(len(pool)))]
    takes = pool[speaker]
    count = 1 if rng.random() < 0.3 else int(rng.integers(2, 9))
    pieces = []
    for _ in range(count):
        pieces += [takes[int(rng.integers(len(takes)))], np.zeros(int(rng.uniform(0.03, 0.4) * SAMPLE_RATE), np.float32)]
    return np.concatenate(pieces)


def espeak_text(rng: np.random.Generator) -> str:
    """Pseudo-words and numbers: read by every language's own rules, no corpus needed."""
    words = []
    for _ in range(int(rng.integers(1, 14))):
        if rng.random() < 0.15:
            words.append(str(int(rng.integers(0, 10 ** int(rng.integers(1, 5))))))
        else:
            words.append("".join(rng.choice(SYLLABLES, size=int(rng.integers(1, 4)))))
    text = " ".join(words)
    return text + str(rng.choice([".", "?", "!", ",", ""]))


def espeak(rng: np.random.Generator, voices: tuple[str, ...]) -> np.ndarray:
    voice = str(rng.choice(voices))
    variant = str(rng.choice(["", "+m1", "+m3", "+f1", "+f2", "+f4", "+klatt"]))
    cmd = ["espeak-ng", "-v", voice + variant, "-s", str(int(rng.integers(90, 260))),
           "-p", str(int(rng.integers(10, 90))), "-a", "150", "--stdout", espeak_text(rng)]
    return _decode(subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout)


# ---- clips and rows ----------------------------------------------------------------------------------------

@dataclass
class Speech:
    """What speech a split may use: its FSDD speakers (None: no FSDD) and espeak voices."""

    fsdd: dict[str, list[np.ndarray]] | None
    voices: tuple[str, ...]


def negative_clip(rng: np.random.Generator, n: int, split: str, speech: Speech) -> tuple[str, np.ndarray]:
    """(source, audio) of one clip; ``split`` is "train" or "negatives" (held out)."""
    held = split == HELDOUT_SPLIT
    mix = {k: v for k, v in MIX.items() if k != "fsdd" or speech.fsdd}
    names = sorted(mix)
    p = np.array([mix[k] for k in names])
    source = str(rng.choice(names, p=p / p.sum()))
    if source == "fsdd":
        x = crop(fsdd_utterance(rng, speech.fsdd), n, rng)[0]
    elif source == "espeak":
        x = crop(espeak(rng, speech.voices), n, rng)[0]
    elif source == "mixture":
        x = mixture(rng, n, held)
    else:
        x = GENERATORS[source](rng, n, held)
    if source in SPEECH and rng.random() < 0.5:  # speech over a room's noise floor
        x = x / (np.abs(x).max() + 1e-9) + coloured_noise(rng, n, float(rng.uniform(0, 2))) * np.float32(
            10 ** (rng.uniform(-60, -30) / 20))
    if source != "silence":  # near-silence keeps its level; the rest a random peak level
        x = x / (np.abs(x).max() + 1e-9) * np.float32(10 ** (rng.uniform(-30, -1) / 20))
    return source, np.clip(x, -1, 1).astype(np.float32)


def negative_rows(split: str, n_clips: int, seed: int, seconds: float, fsdd: str | Path | None,
                  encode: Callable[[np.ndarray], bytes]) -> Iterator[dict]:
    """``n_clips`` rows of the dataset schema (labels and activity empty, kind "negative"), in index order."""
    if split not in NEGATIVE_CODES:
        raise ValueError(f"negatives split must be one of {sorted(NEGATIVE_CODES)}, got {split!r}")
    if shutil.which("espeak-ng") is None:
        raise FileNotFoundError("espeak-ng is not installed (Debian package espeak-ng; scripts/install.sh)")
    pool = read_fsdd(fsdd, FSDD_SPEAKERS[split]) if fsdd else None
    if pool is None:
        log.warning("negatives (%s): no FSDD folder given (--fsdd), speech comes from espeak-ng alone", split)
    speech = Speech(pool, VOICES[split])
    n = int(round(seconds * SAMPLE_RATE))
    for i in range(n_clips):
        rng = np.random.default_rng([seed, NEGATIVE_CODES[split], i])
        source, audio = negative_clip(rng, n, split, speech)
        yield {"audio": {"bytes": encode(audio), "path": f"{split}/negative-{i:07d}.flac"},
               "labels": [], "source": source, "kind": KIND, "activity": [], "origin": origin(source)}


def card_section(counts: dict[tuple[str, str], int]) -> str:
    """The dataset card's account of the negatives: clips per source and split, what is held out, licences."""
    splits = [s for s in ("train", HELDOUT_SPLIT) if any(k[0] == s for k in counts)]
    sources = sorted({src for (_, src) in counts})
    rows = "\n".join(f"| {src} | {origin(src)} | " + " | ".join(str(counts.get((s, src), 0)) for s in splits) + " |"
                     for src in sources)
    return (
        "## Non-instrument negatives (kind `negative`, no labels)\n"
        f"| source | origin | {' | '.join(splits)} |\n|---|---|{'---|' * len(splits)}\n{rows}\n\n"
        f"The **{HELDOUT_SPLIT}** split is held out: FSDD speakers {', '.join(FSDD_SPEAKERS[HELDOUT_SPLIT])} "
        f"(training: {', '.join(FSDD_SPEAKERS['train'])}); espeak-ng voices {', '.join(VOICES[HELDOUT_SPLIT])} "
        f"(training: {', '.join(VOICES['train'])}); 60 Hz hum (training 50 Hz); noise slopes 0.35-0.75 and "
        "1.25-1.65 (training near white, pink, brown); tones in the octaves 200-400, 800-1600, 3200-5000 Hz "
        "(training the octaves between); click rates 10-30/s (training 0.5-8/s); exponential sweeps (training "
        "linear); noise floors -58 to -45 dBFS (training -80 to -58). Evaluate with "
        "`python -m finetune.evaluation.negatives`.\n\n" + "\n".join(f"- `{k}`: {v}" for k, v in LICENCES.items()))


class NegativeRows(RowSource):
    """The negatives of one split ("train" or the held-out "negatives") as a source of the build."""

    def __init__(self, split: str, n_clips: int, seed: int, seconds: float, fsdd: str | Path | None):
        super().__init__(split, seconds)
        self.n_clips, self.seed, self.fsdd = n_clips, seed, fsdd

    def rows(self, stats: Stats) -> Iterator[dict]:
        return negative_rows(self.split, self.n_clips, self.seed, self.seconds, self.fsdd, flac_bytes)

    @classmethod
    def card_section(cls, stats: Stats) -> str | None:
        counts = {k: v for k, v in stats.source.items() if k[1] in MIX}
        return card_section(counts) if counts else None


def row_sources(config: BuildConfig) -> list[RowSource]:
    """With ``--negatives N``: N training clips after the rest of train, and the held-out split."""
    if not config.negatives:
        return []
    fsdd = str(config.fsdd) if config.fsdd else None
    return [NegativeRows("train", config.negatives, config.seed, config.clip_seconds, fsdd),
            NegativeRows(HELDOUT_SPLIT, config.negatives_heldout, config.seed, config.clip_seconds, fsdd)]
