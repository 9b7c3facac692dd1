"""InstruSense: which instruments play in a recording, and when.

One-call entry point::

    from instrusense import analyze
    result = analyze("song.mp3")          # default model, settings from the environment
    result.labels[:3], result.segments    # what plays, and when
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
