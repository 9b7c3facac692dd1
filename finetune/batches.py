"""The training batch stream: seeded, endless, augmented on the fly, preparable ahead by workers.

Batch `step` depends only on the seed and the step, so a resumed run, a run with data workers and
a run without them all see the same batches (up to float rounding). Each batch also carries the
origin of every example (`inputs["origin"]`: 1 real recording, 0 rendered, -1 mixed or unknown) for a
domain-adversarial loss; the training loop removes it before the model sees the inputs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from finetune.augment import augment, varispeed
from finetune.data.clips import Clips
from finetune.data.schema import SAMPLE_RATE
from instrusense.taxonomy import LABEL_INDEX, LABELS


def crop(wave: np.ndarray, length: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A random window of `length` samples (zero-padded at a random offset when the clip is shorter)."""
    if len(wave) >= length:
        start = int(rng.integers(0, len(wave) - length + 1))
        return wave[start:start + length], start
    out = np.zeros(length, np.float32)
    offset = int(rng.integers(0, length - len(wave) + 1))
    out[offset:offset + len(wave)] = wave
    return out, 0


@dataclass
class TrainBatches:
    """Endless, seeded stream of augmented training batches (see `finetune.train.DataArguments`)."""

    clips: Clips
    extractor: object
    window: int
    batch_size: int
    seed: int = 0
    augment: bool = True
    short_fraction: float = 0.0
    mix_fraction: float = 0.0
    pitch_shift: float = 0.0
    pitch_shift_drums: bool = True
    balance_origin: bool = False

    def __post_init__(self) -> None:
        self._p = origin_balanced_weights(self.clips) if self.balance_origin else None

    def batch(self, step: int) -> tuple[dict, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        if self._p is None:
            idx = rng.integers(0, len(self.clips), self.batch_size)
        else:
            idx = rng.choice(len(self.clips), self.batch_size, p=self._p)
        waves, targets = [], np.zeros((self.batch_size, len(LABELS)), np.float32)
        origin = np.full(self.batch_size, -1.0, np.float32)
        for b, i in enumerate(idx):
            wave, start, span = self._source_window(int(i), rng)
            length = self.window
            if rng.random() < self.short_fraction:  # a short recording, padded at the end like the app does
                length = int(rng.integers(SAMPLE_RATE // 10, self.window))
            labels = set(self.clips.labels_in(int(i), start, round(length * span / self.window)))
            origins = {self._origin(int(i))}
            if self.mix_fraction and rng.random() < self.mix_fraction:
                wave, extra, others = self._mix_in(wave, length, rng)
                labels |= extra
                origins |= others
            if len(origins) == 1 and (o := origins.pop()) in ORIGIN_CODES:
                origin[b] = ORIGIN_CODES[o]
            if length < self.window:
                wave = np.concatenate([wave[:length], np.zeros(self.window - length, np.float32)])
            for label in labels:
                targets[b, LABEL_INDEX[label]] = 1.0
            if self.augment:
                wave = augment(torch.from_numpy(wave.copy()), SAMPLE_RATE, gen).numpy()
            waves.append(wave)
        inputs = dict(self.extractor(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt"))
        inputs["origin"] = torch.from_numpy(origin)
        return inputs, torch.from_numpy(targets)

    def _origin(self, i: int) -> str:
        return self.clips.origins[i] if self.clips.origins else "unknown"

    def _source_window(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
        """A window of the clip, played faster or slower when `pitch_shift` is on: the window, where it
        starts in the clip and how many clip samples it spans. Without a shift no extra draw is made."""
        wave, factor = self.clips.waves[i], 1.0
        if self.pitch_shift:
            factor = 2 ** (rng.uniform(-self.pitch_shift, self.pitch_shift) / 12)
            if not self.pitch_shift_drums and "drums" in self.clips.labels[i]:
                factor = 1.0  # drawn all the same, so the rest of the stream does not depend on the option
        if factor == 1.0:
            window, start = crop(wave, self.window, rng)
            return window, start, self.window
        span = max(1, round(self.window * factor))
        source, start = crop(wave, span, rng)
        played = varispeed(torch.from_numpy(source), SAMPLE_RATE, factor).numpy()
        out = np.zeros(self.window, np.float32)
        out[:min(self.window, len(played))] = played[:self.window]
        return out, start, span

    def _mix_in(self, wave: np.ndarray, length: int,
                rng: np.random.Generator) -> tuple[np.ndarray, set[str], set[str]]:
        """Add 1-2 crops of other random clips, as `finetune.data.render.assemble` mixes parts.

        The rendered mixtures come from one library at a time; summing crops of any two training clips
        gives far more (and cross-library) polyphony for the same rendering budget. Every part is
        RMS-normalised and set 0-10 dB down, and the sum keeps the first crop's peak level. Returns the
        mixture, the labels and the origins the crops added; a real and a rendered source of one label
        in one example is one of the means against the origin shortcut (issue 27).
        """
        parts, labels, origins = [wave], set(), set()
        for _ in range(int(rng.integers(1, 3))):
            j = int(rng.integers(len(self.clips)))
            other, start = crop(self.clips.waves[j], self.window, rng)
            parts.append(other)
            labels.update(self.clips.labels_in(j, start, length))
            origins.add(self._origin(j))
        mix = np.zeros(self.window, np.float64)
        for part in parts:
            rms = np.sqrt(np.mean(part.astype(np.float64) ** 2))
            if rms > 1e-6:
                mix += part / rms * 10 ** (rng.uniform(-10, 0) / 20)
        peak, target = np.abs(mix).max(), np.abs(wave).max() or 0.5
        if peak > 0:
            mix *= target / peak
        return mix.astype(np.float32), labels, origins


ORIGIN_CODES = {"rendered": 0.0, "real": 1.0}


def origin_balanced_weights(clips: Clips) -> np.ndarray:
    """Sampling probabilities under which, for every label, its real and rendered single-label clips are
    drawn equally often, while each label (and mixtures, negatives) keeps its share of the stream.

    Without this a label's real share is its number of real libraries over all its libraries, so it
    differs from label to label and origin carries information about the label (FINDINGS.md).
    """
    key = [(c[0] if len(c) == 1 else None, o) for c, o in zip(clips.labels, clips.origins or ["?"] * len(clips))]
    count = Counter(key)
    clips_of = Counter(label for label, _ in key if label is not None)
    origins_of = Counter(label for label, _ in count if label is not None)
    w = np.array([1.0 if label is None else clips_of[label] / (origins_of[label] * count[label, o])
                  for label, o in key])
    return w / w.sum()


class _Steps(torch.utils.data.Dataset):
    """Batch `step` of a `TrainBatches` stream, so that a DataLoader's workers can prepare batches ahead."""

    def __init__(self, batches: TrainBatches, first: int, last: int):
        self.batches, self.first, self.last = batches, first, last

    def __len__(self) -> int:
        return self.last - self.first

    def __getitem__(self, i: int) -> tuple[dict, torch.Tensor]:
        return self.batches.batch(self.first + i)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # workers share the cores; one thread each


def batch_stream(batches: TrainBatches, first: int, last: int, workers: int):
    """Batches `first` .. `last - 1` in order; with `workers` > 0 prepared ahead in that many processes."""
    if workers <= 0:
        return (batches.batch(step) for step in range(first, last))
    return iter(torch.utils.data.DataLoader(_Steps(batches, first, last), batch_size=None, shuffle=False,
                                            num_workers=workers, worker_init_fn=_one_thread, prefetch_factor=4,
                                            persistent_workers=False))
