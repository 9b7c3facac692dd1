"""Training records: what made a model directory, read by restarts, the model card and evaluation.

A model saved by ``finetune.train`` holds ``training_run.json`` (its arguments, its parent's record,
the kept step); one written by ``finetune.average`` holds ``averaged_from.json`` instead
(``{"out": its directory, "averaged": [{"path": ..., "run": record-or-null}, ...]}``).
"""

from __future__ import annotations

import json
from pathlib import Path

RUN_RECORD = "training_run.json"
AVERAGE_RECORD = "averaged_from.json"


def read_record(model_dir: str | Path) -> dict | None:
    """The record of the run or the average that wrote ``model_dir``; None when it has neither."""
    for name in (RUN_RECORD, AVERAGE_RECORD):
        path = Path(model_dir) / name
        if path.is_file():
            return json.loads(path.read_text())
    return None


def last_trained(record: dict) -> dict | None:
    """The training run a record ends with: the run itself, or for an average the last averaged model
    that has a record (``finetune.average`` lists the newest last by convention), followed down through
    averages of averages."""
    while record is not None and "averaged" in record:
        runs = [a["run"] for a in record["averaged"] if a.get("run")]
        record = runs[-1] if runs else None
    return record
