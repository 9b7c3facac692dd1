"""Fine-tune a pretrained audio transformer into the InstruSense instrument classifier.

    python -m finetune.train finetune/recipes/restart.json --init_from models/instrusense --seed 1 \
        --run_dir runs/restart --output_dir runs/restart/model   # a shipped recipe (JSON); flags after it override it
    python -m finetune.train --encoder_layers 3 --init_from models/instrusense --seed 1 \
        --run_dir runs/restart --output_dir runs/restart/model   # that recipe by the defaults (default dataset)

Reads like the recipe it is: typed arguments (`HfArgumentParser`: flags or one JSON file) → data in
memory → classifier on the pretrained base (`finetune.modeling`) → a plain torch loop over the seeded,
augmented batch stream (`finetune.batches`), multi-label BCE (plus an optional loss on the families),
a higher learning rate for the new head than for the pretrained encoder, warm-up and cosine decay,
periodic validation scored by the library's own analysis (`finetune.scoring`), resumable
checkpoints → the best checkpoint saved in Hugging Face format with its model card.
The defaults are the shipped recipe, `recipes/restart.json` (every stage of the shipped model after the
first): half the examples mixed with other clips, varispeed of ±2 semitones for pitched clips, the loss on
the families, 2000 steps at head/encoder rates 5e-4/5e-5, validation every 500 steps. Three values stay
the caller's: `--encoder_layers` (default: every block of the base; the recipes keep Whisper-base's
first 3), `--eval_limit` (default: every clip) and `--threads`. A recipe file names every value it relies on.
Any `--base` works: a converted Whisper directory or a Hub id (`openai/whisper-base`,
`MIT/ast-finetuned-audioset-10-10-0.4593`, wav2vec2/HuBERT bases) where the Hub is reachable.
Options the experiment log (finetune/EXPERIMENTS.md) found no use for were removed; they are in the
tag `experiments-2026-11`.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import HfArgumentParser, get_cosine_schedule_with_warmup

from finetune.batches import TrainBatches, batch_stream
from finetune.data.clips import Clips, load_clips
from finetune.data.schema import DEFAULT_DATASET, SAMPLE_RATE
from finetune.metrics import multi_hot, summary
from finetune.model_card import write_model_card
from finetune.modeling import build_classifier, init_head_from_data, load_weights, param_groups, save_model
from finetune.records import AVERAGE_RECORD, RUN_RECORD, read_record
from finetune.scoring import score_clips
from instrusense.logs import configure_logging
from instrusense.model import resolve_device, tagger_from, to_device
from instrusense.taxonomy import FAMILIES, LABEL_INDEX

log = logging.getLogger("finetune.train")


@dataclass
class ModelArguments:
    base: str = field(default="cache/whisper-base", metadata={"help": "pretrained checkpoint dir or Hub id"})
    window_seconds: float = field(default=3.0, metadata={"help": "model input length (Whisper: positions kept)"})
    encoder_layers: int | None = field(default=None, metadata={"help": "keep only the first N encoder blocks (Whisper)"})
    projector_size: int = field(default=256, metadata={"help": "width of the classification projector"})
    init_from: str | None = field(default=None, metadata={
        "help": "a model this script saved, built from the same --base and architecture: training starts from its "
                "weights instead of a fresh head, with a new learning-rate schedule (a warm restart)"})


@dataclass
class DataArguments:
    dataset: str = field(default=DEFAULT_DATASET, metadata={"help": "DatasetDict from `python -m finetune.data`"})
    train_split: str = field(default="train", metadata={"help": "split to train on"})
    eval_splits: str = field(default="validation,real", metadata={"help": "comma-separated splits to report"})
    select_on: str = field(default="validation", metadata={"help": "split whose mAP picks the best checkpoint"})
    augment: bool = field(default=True, metadata={"help": "random recording effects on every training example"})
    short_fraction: float = field(default=0.25, metadata={
        "help": "share of examples cut to 0.1–3 s and zero-padded, as the app pads short recordings"})
    mix_fraction: float = field(default=0.5, metadata={
        "help": "share of examples that get 1-2 crops of other training clips mixed in (labels: the union)"})
    pitch_shift: float = field(default=2.0, metadata={
        "help": "play every training clip up to this many semitones faster or slower (varispeed; 0: off)"})
    pitch_shift_drums: bool = field(default=False, metadata={
        "help": "with --pitch_shift: shift clips with drums too (false: pitched clips only)"})
    eval_limit: int | None = field(default=None, metadata={"help": "evaluate on at most N clips per split"})


@dataclass
class TrainArguments:
    output_dir: str = field(default="models/instrusense", metadata={"help": "where the final model goes"})
    run_dir: str = field(default="runs/instrusense", metadata={"help": "checkpoints and logs (resumable)"})
    max_steps: int = field(default=2000, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=16)
    head_lr: float = field(default=5e-4, metadata={"help": "learning rate of the new head"})
    encoder_lr: float = field(default=5e-5, metadata={"help": "learning rate of the pretrained encoder (0 freezes it)"})
    weight_decay: float = field(default=0.01)
    warmup_fraction: float = field(default=0.05)
    eval_every: int = field(default=500, metadata={"help": "evaluate and checkpoint every N steps"})
    threads: int = field(default=0, metadata={"help": "torch threads (0: torch default)"})
    device: str = field(default="auto", metadata={
        "help": "auto (a CUDA GPU when there is one), cpu, cuda or cuda:N; on a GPU the forward pass runs in bfloat16 "
                "autocast"})
    workers: int = field(default=0, metadata={
        "help": "processes that prepare batches ahead (augmentation, features); the same batches for any number "
                "(up to float rounding). 0: prepared in the training process. A GPU waits on the data without them"})
    seed: int = field(default=0)
    init_batches: int = field(default=24, metadata={"help": "batches used to initialise the projector from data"})
    save_dtype: str = field(default="float16", metadata={"help": "dtype of the saved weights (float16 or float32)"})
    family_loss: float = field(default=1.0, metadata={
        "help": "weight of a second BCE on the eight families (a family's logit: logsumexp of its labels' logits), "
                "so that a mistake across families costs more than one inside a family; 0: off"})


_FAMILY_COLUMNS = [[LABEL_INDEX[label] for label in labels] for labels in FAMILIES.values()]


def family_logits(logits: torch.Tensor) -> torch.Tensor:
    """(batch, labels) -> (batch, families): a smooth maximum (logsumexp) over each family's labels."""
    return torch.stack([logits[:, cols].logsumexp(dim=1) for cols in _FAMILY_COLUMNS], dim=1)


def family_targets(targets: torch.Tensor) -> torch.Tensor:
    """(batch, labels) multi-hot -> (batch, families): 1 where any label of the family is present."""
    return torch.stack([targets[:, cols].amax(dim=1) for cols in _FAMILY_COLUMNS], dim=1)


def evaluate_splits(model, extractor, evals: dict[str, Clips]) -> dict[str, dict]:
    """Metrics per split, the clips scored exactly as `python -m instrusense analyze` scores files."""
    model.eval()
    tagger = tagger_from(model, extractor, "in training")
    return {name: summary(score_clips(tagger, clips.waves), multi_hot(clips.labels)) for name, clips in evals.items()}


def _record(model_args: ModelArguments, data: DataArguments, t: TrainArguments, argv: list[str] | None) -> dict:
    """What made this run (saved beside the weights); the card follows every stage it continues from."""
    record = {"model": asdict(model_args), "data": asdict(data), "train": asdict(t), "argv": argv}
    parent = read_record(model_args.init_from) if model_args.init_from else None
    if parent:
        record["parent"] = parent
    return record


def train(m: ModelArguments, d: DataArguments, t: TrainArguments, argv: list[str] | None = None) -> dict:
    torch.manual_seed(t.seed)
    if t.threads:
        torch.set_num_threads(t.threads)
    run = Path(t.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    device = resolve_device(t.device)
    model, extractor = build_classifier(m.base, window_seconds=m.window_seconds, encoder_layers=m.encoder_layers,
                                        projector_size=m.projector_size)
    model.to(device)
    log.info("training on %s%s", device, " (bfloat16 autocast)" if device.type == "cuda" else "")
    started = time.time()
    clips = load_clips(d.dataset, d.train_split)
    evals = {s: load_clips(d.dataset, s, d.eval_limit, t.seed) for s in d.eval_splits.split(",") if s}
    log.info("data: %d training clips, eval %s (%.0f s)", len(clips), {k: len(v) for k, v in evals.items()},
             time.time() - started)
    batches = TrainBatches(clips, extractor, round(m.window_seconds * SAMPLE_RATE), t.batch_size, seed=t.seed,
                           augment=d.augment, short_fraction=d.short_fraction, mix_fraction=d.mix_fraction,
                           pitch_shift=d.pitch_shift, pitch_shift_drums=d.pitch_shift_drums)
    optimizer = torch.optim.AdamW(param_groups(model, t.head_lr, t.encoder_lr, t.weight_decay))
    schedule = get_cosine_schedule_with_warmup(optimizer, max(1, int(t.warmup_fraction * t.max_steps)), t.max_steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    step, history, best = 0, [], {"score": -1.0, "step": None}
    ckpt = run / "checkpoint.pt"
    if ckpt.is_file():  # resume: our own file, written by this script
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step, history, best = state["step"], state["history"], state["best"]
        if history:  # wall time counts the whole run, not just the part since the resume
            started -= history[-1]["elapsed_s"]
        log.info("resumed from %s at step %d", ckpt, step)
    elif m.init_from:
        load_weights(model, Path(m.init_from))
    else:
        init_head_from_data(model, batches, n_batches=t.init_batches)
    record = _record(m, d, t, argv)

    bar = tqdm(total=t.max_steps, initial=step, desc="training", unit="step", file=sys.stderr)
    running = None
    stream = batch_stream(batches, step, t.max_steps, t.workers)
    since, since_step = time.time(), step  # training speed between evaluations (data waits included)
    while step < t.max_steps:
        model.train()
        inputs, targets = next(stream)
        inputs, targets = to_device(inputs, device), targets.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(**inputs).logits.float()
        loss = loss_fn(logits, targets)
        if t.family_loss:
            loss = loss + t.family_loss * loss_fn(family_logits(logits), family_targets(targets))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        step += 1
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}")
        if step % t.eval_every == 0 or step == t.max_steps:
            steps_per_s = (step - since_step) / (time.time() - since)
            results = evaluate_splits(model, extractor, evals)
            history.append({"step": step, "loss": running, "elapsed_s": time.time() - started,
                            "steps_per_s": steps_per_s, **results})
            log.info("step %d loss %.4f %s", step, running, json.dumps(results))
            score = results.get(d.select_on, {}).get("mAP", -running)
            if score > best["score"]:
                best = {"score": score, "step": step}
                save_model(model, extractor, run / "best", t.save_dtype)
                (run / "best" / RUN_RECORD).write_text(json.dumps(
                    {**record, "step": step, "elapsed_s": history[-1]["elapsed_s"], "eval": results}, indent=2) + "\n")
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(), "step": step, "history": history, "best": best}, ckpt)
            (run / "history.json").write_text(json.dumps(history, indent=2) + "\n")
            since, since_step = time.time(), step
    bar.close()
    final = Path(t.output_dir)
    if (run / "best").is_dir():
        shutil.copytree(run / "best", final, dirs_exist_ok=True)
        (final / AVERAGE_RECORD).unlink(missing_ok=True)  # saved over an average: its record is not these weights
        write_model_card(final, record, best["step"], history, argv or [])
    log.info("best step %s (%s mAP %.4f) saved to %s", best["step"], d.select_on, best["score"], final)
    return {"best": best, "history": history}


def recipe_args(argv: list[str]) -> list[str]:
    """A recipe (JSON file of argument values, first on the command line) as flags, followed by the flags
    after it, which override it (argparse keeps the last value)."""
    if not argv or not argv[0].endswith(".json"):
        return argv
    values = json.loads(Path(argv[0]).read_text())
    return [a for k, v in values.items() if v is not None and not k.startswith("_") for a in (f"--{k}", str(v))] + argv[1:]


def main(argv: list[str] | None = None) -> int:
    configure_logging("INFO")
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainArguments))
    argv = sys.argv[1:] if argv is None else argv
    m, d, t = parser.parse_args_into_dataclasses(args=recipe_args(argv))
    train(m, d, t, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
