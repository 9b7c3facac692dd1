"""The CLI's JSON record as one flat table row, generically: whatever the record holds is carried.

A row is the record with its `labels` list turned into one confidence column per taxonomy label (the
family is the taxonomy's); every other field (`segments`, `timeline`, `error`, fields added later) stays
as it is, nested where it is nested.
"""

from __future__ import annotations

import re
from pathlib import Path

from instrusense.taxonomy import LABELS


def record_row(record: dict) -> dict:
    """Row for one record: file, duration, a column per label (None where the file failed), then the rest."""
    confidences = {item["label"]: item["confidence"] for item in record.get("labels") or []}
    row = {"file": record["file"], "duration": record.get("duration")}
    row.update({label: confidences.get(label) for label in LABELS})
    row.update({key: value for key, value in record.items() if key not in row and key != "labels"})
    return row


def failure_reason(file: str, error: str) -> str:
    """The kind of an error message, for counting failures: the file's name and the details cut off."""
    name = Path(file).name
    text = error.replace(name, "<file>") if name else error
    return re.split(r":| \(", text, maxsplit=1)[0].strip().rstrip(".")
