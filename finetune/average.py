"""Uniform average of the weights of models this project trained (a "model soup", Wortsman et al. 2022).

    python -m finetune.average --out runs/soup --models MODEL_DIR MODEL_DIR [...]

Averaging only makes sense for models of one architecture that share a start (warm restarts of one
model), so anything else is refused: different labels, tensor names or shapes. The output is a normal
Hugging Face model directory (config, preprocessor config, safetensors in the first model's dtypes) and
``averaged_from.json`` with where it was written, the inputs and their training records, so a restart
from it (``--init_from``) and its model card can tell where it came from.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from finetune.records import AVERAGE_RECORD, RUN_RECORD, read_record
from instrusense.logs import configure_logging

log = logging.getLogger("finetune.average")


def average(models: list[Path], out: Path) -> Path:
    """Write the uniform weight average of ``models`` to ``out``; returns ``out``."""
    import torch
    from safetensors.torch import load_file, save_file

    if len(models) < 2:
        raise ValueError("averaging needs at least two models")
    configs = [json.loads((Path(m) / "config.json").read_text()) for m in models]
    for m, c in zip(models[1:], configs[1:]):
        if c.get("id2label") != configs[0].get("id2label"):
            raise ValueError(f"{m} has other labels than {models[0]}")
    states = [load_file(str(Path(m) / "model.safetensors")) for m in models]
    for m, s in zip(models[1:], states[1:]):
        if s.keys() != states[0].keys() or any(s[k].shape != states[0][k].shape for k in s):
            raise ValueError(f"{m} is not the same architecture as {models[0]} (tensor names or shapes differ)")
    avg = {}
    for k, first in states[0].items():
        if first.is_floating_point():
            avg[k] = (torch.stack([s[k].float() for s in states]).mean(dim=0)).to(first.dtype)
        else:
            avg[k] = first
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "preprocessor_config.json"):
        if (Path(models[0]) / name).is_file():
            shutil.copy(Path(models[0]) / name, out / name)
    save_file(avg, str(out / "model.safetensors"), metadata={"format": "pt"})
    runs = [{"path": str(m), "run": read_record(m)} for m in models]
    (out / RUN_RECORD).unlink(missing_ok=True)  # a stale run record would be read before this one
    (out / AVERAGE_RECORD).write_text(json.dumps({"out": str(out), "averaged": runs}, indent=2) + "\n")
    return out


@dataclass
class AverageArguments:
    out: str = field(metadata={"help": "where the averaged model goes"})
    models: list[str] = field(default_factory=list, metadata={"help": "model directories saved by finetune.train"})


def main(argv: list[str] | None = None) -> int:
    configure_logging("INFO")
    (args,) = HfArgumentParser(AverageArguments).parse_args_into_dataclasses(args=argv)
    try:
        average([Path(m) for m in args.models], Path(args.out))
    except (ValueError, FileNotFoundError) as err:
        log.error("%s", err)
        return 2
    log.info("averaged %d models into %s", len(args.models), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
