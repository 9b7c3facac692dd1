"""InstruSense: which instruments play in a recording, and when.

One-call entry point::

    from instrusense import analyze
    result = analyze("song.mp3")          # default model, settings from the environment
    result.labels[:3], result.segments    # what plays, and when

For a whole archive: ``python -m instrusense corpus ROOT --out results.parquet``, or, for a `datasets`
dataset, ``analyze_dataset(ds)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from instrusense.analysis import Analysis


def analyze(path: str | Path, model: str | None = None) -> "Analysis":
    """Analyse one file with the default (or given) model; raises AudioError / ModelUnavailableError."""
    from instrusense.analysis import analyze_file
    from instrusense.model import tagger_for
    from instrusense.settings import load_settings

    settings = load_settings(model=model)
    return analyze_file(path, tagger_for(settings), settings)


def analyze_dataset(ds, audio_column: str = "audio", model: str | None = None, batch_size: int = 16,
                    num_proc: int | None = None):
    """A `datasets` Dataset/DatasetDict with the analysis added as columns (a confidence per label, duration,
    segments, timeline, error), via batched `map`; see `instrusense.corpus.hf`."""
    from instrusense.corpus.hf import analyze_dataset as _analyze_dataset

    return _analyze_dataset(ds, audio_column, model, batch_size, num_proc)
