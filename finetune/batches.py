"""The training batch stream: seeded, endless, augmented on the fly, preparable ahead by workers.

Batch `step` depends only on the seed and the step, so a resumed run, a run with data workers and
a run without them all see the same batches (up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from finetune.augment import augment, varispeed
from finetune.data.clips import Clips, crop
from finetune.data.schema import SAMPLE_RATE
from instrusense.taxonomy import LABEL_INDEX, LABELS


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

    def batch(self, step: int) -> tuple[dict, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        idx = rng.integers(0, len(self.clips), self.batch_size)
        waves, targets = [], np.zeros((self.batch_size, len(LABELS)), np.float32)
        for b, i in enumerate(idx):
            wave, start, span = self._source_window(int(i), rng)
            length = self.window
            if rng.random() < self.short_fraction:  # a short recording, padded at the end like the app does
                length = int(rng.integers(SAMPLE_RATE // 10, self.window))
            labels = set(self.clips.labels_in(int(i), start, round(length * span / self.window)))
            if self.mix_fraction and rng.random() < self.mix_fraction:
                wave, extra = self._mix_in(wave, length, rng)
                labels |= extra
            if length < self.window:
                wave = np.concatenate([wave[:length], np.zeros(self.window - length, np.float32)])
            for label in labels:
                targets[b, LABEL_INDEX[label]] = 1.0
            if self.augment:
                wave = augment(torch.from_numpy(wave.copy()), SAMPLE_RATE, gen).numpy()
            waves.append(wave)
        inputs = dict(self.extractor(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt"))
        return inputs, torch.from_numpy(targets)

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

    def _mix_in(self, wave: np.ndarray, length: int, rng: np.random.Generator) -> tuple[np.ndarray, set[str]]:
        """Add 1-2 crops of other random clips, as `finetune.data.mixing.assemble` mixes parts.

        The rendered mixtures come from one library at a time; summing crops of any two training clips
        gives far more (and cross-library) polyphony for the same rendering budget. Every part is
        RMS-normalised and set 0-10 dB down, and the sum keeps the first crop's peak level.
        """
        parts, labels = [wave], set()
        for _ in range(int(rng.integers(1, 3))):
            j = int(rng.integers(len(self.clips)))
            other, start = crop(self.clips.waves[j], self.window, rng)
            parts.append(other)
            labels.update(self.clips.labels_in(j, start, length))
        mix = np.zeros(self.window, np.float64)
        for part in parts:
            rms = np.sqrt(np.mean(part.astype(np.float64) ** 2))
            if rms > 1e-6:
                mix += part / rms * 10 ** (rng.uniform(-10, 0) / 20)
        peak, target = np.abs(mix).max(), np.abs(wave).max() or 0.5
        if peak > 0:
            mix *= target / peak
        return mix.astype(np.float32), labels


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
