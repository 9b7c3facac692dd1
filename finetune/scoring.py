"""Clip scores through the library's own analysis: what `python -m instrusense analyze` reports.

Evaluation, model selection and the validation score during training all call `score_clips`, so the
published numbers are the numbers a user gets for a file of the clip's length: the same windows and
hop, silent windows skipped, the recording's peak normalised, window scores pooled by
`clip_confidence` (the top fraction of windows). Only decoding is skipped: the clips are in memory.
A library module, like `finetune.metrics`: `finetune.train` and the commands of `finetune.evaluation`
import it, it imports neither.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from finetune.data.schema import SAMPLE_RATE
from instrusense.analysis import analyze_recording
from instrusense.audio import Recording, RecordingBuilder
from instrusense.model import Tagger
from instrusense.settings import Settings
from instrusense.taxonomy import LABEL_INDEX, LABELS


def clip_recording(wave: np.ndarray, sample_rate: int) -> Recording:
    """A clip's samples as the `Recording` a file holding them decodes to: through the same
    `RecordingBuilder` (NaN/Inf silenced, over-range audio scaled back, resampled to the model's rate)."""
    builder = RecordingBuilder(SAMPLE_RATE, sample_rate)
    builder.push(wave)
    return builder.finish(source_duration=len(wave) / SAMPLE_RATE)


def score_clips(tagger: Tagger, waves: Sequence[np.ndarray], settings: Settings | None = None) -> np.ndarray:
    """(n_clips, len(LABELS)) clip confidences (`Analysis.labels`) of 16 kHz clips.

    `settings` default to the shipped defaults, not the environment, so that a table does not depend on
    the INSTRUSENSE_* variables of the shell that ran it.
    """
    settings = settings or Settings()
    out = np.zeros((len(waves), len(LABELS)), np.float32)
    for i, wave in enumerate(waves):
        analysis = analyze_recording(clip_recording(wave, tagger.sampling_rate), tagger, settings)
        for score in analysis.labels:
            out[i, LABEL_INDEX[score.label]] = score.confidence
    return out
