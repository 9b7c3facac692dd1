"""A file → its JSON record (the CLI contract), never raising: the one per-file step that the CLI, the corpus
job and `analyze_dataset` share, so that their records are equal by construction."""

from __future__ import annotations

import logging
from pathlib import Path

from instrusense.analysis import Analysis, analyze_file
from instrusense.audio import AudioError
from instrusense.export import analysis_record, error_record
from instrusense.model import Tagger
from instrusense.settings import Settings

log = logging.getLogger(__name__)


def model_unavailable_record(file: str, reason: str | Exception) -> dict:
    """The record of a file that was not analysed because the model could not be loaded."""
    return error_record(file, f"Model unavailable: {reason}")


def file_record(path: str | Path, tagger: Tagger, settings: Settings,
                name: str | None = None) -> tuple[dict, Analysis | None]:
    """The record of one file (`name` as its `file` field, default the path as given) and its analysis (None
    where it failed). Unusable audio and unexpected failures become the record's `error`: a bad file or a bug
    never loses the rest of a batch. Notices (truncation, silence, repaired samples) are logged here."""
    name = str(path) if name is None else name
    try:
        analysis = analyze_file(path, tagger, settings)
    except AudioError as exc:
        return error_record(name, str(exc)), None
    except Exception as exc:
        log.exception("unexpected failure on %s", name)
        return error_record(name, f"Internal error while analysing the file: {type(exc).__name__}: {exc}"), None
    for notice in analysis.notices:
        log.warning("%s: %s", name, notice)
    return analysis_record(name, analysis), analysis
