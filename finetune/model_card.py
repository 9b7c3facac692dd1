"""The model card (README.md beside the weights): what a model user needs, filled from the training record.

The prose lives in a template (`finetune/templates/model_card.md`, rendered by `huggingface_hub.ModelCard`);
the evaluation section between the markers and the metrics in the front matter's `model-index` are
filled in by `python -m finetune.evaluation.evaluate --card ...`.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import HfArgumentParser

from finetune.records import last_trained, read_record
from instrusense.logs import configure_logging
from instrusense.taxonomy import FAMILIES

log = logging.getLogger(__name__)

CARD_START, CARD_END = "<!-- eval:start -->", "<!-- eval:end -->"
TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"
MODEL_NAME = "InstruSense instrument tagger"


def _command(argv: list[str]) -> str:
    return "python -m finetune.train " + shlex.join(argv)


def _earlier_stages(run: dict) -> list[dict]:
    """The runs this one continued from (`--init_from`), oldest first; a weight average
    (`finetune.average`, ``{"averaged": [...]}``) is one stage that ends the walk."""
    stages, parent = [], run.get("parent")
    while parent:
        stages.insert(0, parent)
        parent = None if "averaged" in parent else parent.get("parent")
    return stages


def _run_key(run: dict) -> str:
    """One training run's identity: records copy a shared stage into every lineage that contains it."""
    return json.dumps([run.get("argv"), run["train"].get("output_dir")])


def _trained_runs(record: dict) -> list[dict]:
    """Every training run behind a record (its own, its stages', every averaged model's), each once."""
    found: dict[str, dict] = {}

    def walk(r: dict | None) -> None:
        if not r:
            return
        if "averaged" in r:
            for a in r["averaged"]:
                walk(a.get("run"))
            return
        walk(r.get("parent"))
        found.setdefault(_run_key(r), r)

    walk(record)
    return list(found.values())


def _stage_commands(s: dict, written_to: str | None = None) -> list[str]:
    """The commands that made a stage: a run's own; for an average, every averaged run's stages and then
    the average (shared earlier stages once). An average's output directory is the one it recorded, else
    ``written_to`` (where the stage after it found it), else ``DIR``."""
    if "averaged" not in s:
        return [_command(s["argv"])] if s.get("argv") else []
    out = []
    for a in s["averaged"]:
        if a.get("run"):
            out += _chain_commands(a["run"])
    out.append(f"python -m finetune.average --out {shlex.quote(s.get('out') or written_to or 'DIR')} --models "
               + " ".join(shlex.quote(a["path"]) for a in s["averaged"]))
    return list(dict.fromkeys(out))


def _chain_commands(run: dict, own: bool = True) -> list[str]:
    """A run's earlier stages' commands (and its own unless ``own`` is false); a stage's output is where
    the next one's ``--init_from`` read it."""
    stages = _earlier_stages(run)
    out = []
    for stage, after in zip(stages, [*stages[1:], run]):
        out += _stage_commands(stage, after["model"].get("init_from"))
    return out + (_stage_commands(run) if own else [])


def _averaged_parts(average: dict) -> str:
    """The averaged models as the card names them: an input that is itself an average says of how many."""
    parts = []
    for a in average["averaged"]:
        inner = (a.get("run") or {}).get("averaged")
        parts.append(f"`{a['path']}`" + (f" (itself an average of {len(inner)})" if inner else ""))
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else "".join(parts)


def card_data(eval_results: list[EvalResult] | None = None) -> ModelCardData:
    return ModelCardData(license="mit", library_name="transformers", pipeline_tag="audio-classification",
                         base_model="openai/whisper-base", model_name=MODEL_NAME,
                         tags=["audio-classification", "musical-instruments", "instrusense"],
                         eval_results=eval_results or None)


def eval_results(results: dict, model_key: str = "whisper") -> list[EvalResult]:
    """The fine-tuned model's rows of an evaluation (results.json) as `model-index` entries."""
    rows = results.get("models", {}).get(model_key, {}).get("rows", {})
    out = []
    for row, metrics in rows.items():
        for key, kind, name in (("top1", "accuracy", "top-1 accuracy"), ("mAP", "map", "mAP")):
            if metrics.get(key) is not None:
                slug = re.sub(r"[^a-z0-9]+", "-", row.lower()).strip("-")  # one model-index entry per row
                out.append(EvalResult(task_type="audio-classification", dataset_type=f"instrusense-{slug}",
                                      dataset_name=row, metric_type=kind, metric_name=name,
                                      metric_value=round(float(metrics[key]), 4)))
    return out


def render_card(run: dict, best_step: int | None, history: list[dict], command: str,
                model_dir: str | Path | None = None) -> str:
    """``run``: a training run's record, or a weight average's (``{"averaged": [...]}``), whose recipe and
    curve are those of its last averaged model (``history``, ``best_step`` and ``command`` are that run's).
    ``model_dir``: where the card goes; an average written elsewhere ends its commands with the copy."""
    average = run if "averaged" in run else None
    if average:
        run = last_trained(average)
        if run is None:
            raise ValueError("none of the averaged models has a training record")
    m, d, t = run["model"], run["data"], run["train"]
    commands = _stage_commands(average) if average else [*_chain_commands(run, own=False), command]
    if average and average.get("out") and model_dir and Path(average["out"]) != Path(model_dir):
        commands.append(f"cp {shlex.quote(average['out'])}/* {shlex.quote(str(model_dir))}/")
    wall = history[-1]["elapsed_s"] if history else float("nan")
    others = [r for r in _trained_runs(average or run) if _run_key(r) != _run_key(run)]
    earlier = [r["elapsed_s"] for r in others if "elapsed_s" in r]
    total = (f" ({(wall + sum(earlier)) / 60:.0f} min with every stage behind {'the average' if average else 'it'})"
             if others and len(earlier) == len(others) else "")
    history = [{"validation": {}, "real": {}, **h} for h in history]
    card = ModelCard.from_template(
        card_data(), template_path=str(TEMPLATE), families=FAMILIES, window=f"{m['window_seconds']:g}",
        encoder_layers=m["encoder_layers"] or "all", projector_size=m["projector_size"], save_dtype=t["save_dtype"],
        dataset=d["dataset"], average=average is not None, average_count=len(average["averaged"]) if average else 0,
        averaged_parts=_averaged_parts(average) if average else "",
        short_fraction=f"{d['short_fraction']:.0%}", mix_fraction=f"{d['mix_fraction']:.0%}" if d.get("mix_fraction") else "",
        pitch_shift=f"{d.get('pitch_shift', 0.0):g}" if d.get("pitch_shift") else "",
        pitch_shift_drums=d.get("pitch_shift_drums", True), head_lr=f"{t['head_lr']:g}", encoder_lr=f"{t['encoder_lr']:g}",
        family_loss=f"{t['family_loss']:g}" if t.get("family_loss") else "", batch_size=t["batch_size"],
        max_steps=t["max_steps"], seed=t["seed"], best_step=best_step, stages=len(_earlier_stages(run)),
        wall_minutes=f"{wall / 60:.0f}", total=total, commands="\n".join(commands), eval_limit=d.get("eval_limit"),
        history=history, nan=float("nan"), eval_start=CARD_START, eval_end=CARD_END)
    return str(card)


def write_model_card(model_dir: Path, run: dict, best_step: int | None, history: list[dict], argv: list[str]) -> Path:
    """Write README.md next to the weights, keeping an existing evaluation section and its metrics."""
    path = model_dir / "README.md"
    text = render_card(run, best_step, history, _command(argv), model_dir)
    if path.is_file():
        old = path.read_text()
        if CARD_START in old and CARD_END in old:
            kept = old[old.index(CARD_START):old.index(CARD_END)]
            text = text[:text.index(CARD_START)] + kept + text[text.index(CARD_END):]
            card = ModelCard(text)
            card.data.eval_results = ModelCard(old).data.eval_results
            text = str(card)
    path.write_text(text)
    return path


def update_card(path: str | Path, section: str, results: dict, model_key: str = "whisper") -> bool:
    """Put an evaluation's markdown between the card's markers (appended if missing) and its fine-tuned
    model's (``model_key``'s) metrics into the front matter's `model-index`."""
    path = Path(path)
    if not path.is_file():
        log.warning("no model card at %s; not updated", path)
        return False
    text = path.read_text()
    block = f"{CARD_START}\n{section.rstrip()}\n{CARD_END}"
    start, end = text.find(CARD_START), text.find(CARD_END)
    if start >= 0 and end > start:
        text = text[:start] + block + text[end + len(CARD_END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    card = ModelCard(text)
    card.data.model_name = card.data.model_name or MODEL_NAME
    card.data.eval_results = eval_results(results, model_key) or None
    path.write_text(str(card))
    log.info("model card %s updated", path)
    return True


@dataclass
class CardArguments:
    run: str = field(metadata={"help": "the run directory of finetune.train (for an average: of the last averaged model)"})
    model: str = field(default="models/instrusense", metadata={"help": "the model folder whose README.md is rewritten"})
    argv: str | None = field(default=None, metadata={"help": "the training command's arguments, if the run did not record them"})


def main(argv: list[str] | None = None) -> int:
    """Rewrite the card of an existing model from its run directory (`runs/NAME`)."""
    configure_logging("INFO")
    (args,) = HfArgumentParser(CardArguments).parse_args_into_dataclasses(args=argv)
    run_dir, model_dir = Path(args.run), Path(args.model)
    info = read_record(model_dir)
    last = last_trained(info) if info else None
    if last is None:
        raise SystemExit(f"{model_dir} has no training record (training_run.json or averaged_from.json)")
    history = json.loads((run_dir / "history.json").read_text())
    command_args = shlex.split(args.argv) if args.argv else (last.get("argv") or [])
    write_model_card(model_dir, info, last.get("step"), history, command_args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
