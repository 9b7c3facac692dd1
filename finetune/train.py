"""Fine-tune a pretrained audio transformer into the InstruSense instrument classifier.

    python -m finetune.train --base cache/whisper-base --dataset data/instruments \
        --output_dir models/instrusense --run_dir runs/whisper-l3 --max_steps 1200

Reads like the recipe it is: typed arguments → data in memory → classifier on the pretrained base
(`finetune.modeling`) → a plain torch loop with on-the-fly augmentation (`finetune.augment`),
multi-label BCE, a higher learning rate for the new head than for the pretrained encoder, periodic
evaluation on the held-out-library split, resumable checkpoints → the best checkpoint saved in
Hugging Face format (float16 safetensors, `id2label` = taxonomy keys, preprocessor config).
Any `--base` works: a converted Whisper directory or a Hub id (`openai/whisper-base`,
`MIT/ast-finetuned-audioset-10-10-0.4593`, wav2vec2/HuBERT bases) where the Hub is reachable.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm
from transformers import HfArgumentParser

from finetune.augment import AMPLIFIED_LABELS, AMPLIFIED_NAMES, augment, filter_gains, spec_mask, varispeed
from finetune.clips import Clips, clip_scores, load_clips
from finetune.metrics import multi_hot, summary
from finetune.model_card import write_model_card
from finetune.modeling import build_classifier
from finetune.records import AVERAGE_RECORD, RUN_RECORD, read_record
from finetune.schema import SAMPLE_RATE
from instrusense.logs import configure_logging
from instrusense.model import resolve_device, to_device
from instrusense.taxonomy import FAMILIES, LABEL_INDEX, LABELS

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
    dataset: str = field(default="data/instruments", metadata={"help": "DatasetDict from `python -m finetune.data`"})
    train_split: str = field(default="train", metadata={"help": "split to train on"})
    eval_splits: str = field(default="validation,real", metadata={"help": "comma-separated splits to report"})
    select_on: str = field(default="validation", metadata={"help": "split whose mAP picks the best checkpoint"})
    augment: bool = field(default=True, metadata={"help": "random recording effects on every training example"})
    short_fraction: float = field(default=0.25, metadata={
        "help": "share of examples cut to 0.5–3 s and zero-padded, as the app pads short recordings"})
    mix_fraction: float = field(default=0.0, metadata={
        "help": "share of examples that get 1-2 crops of other training clips mixed in (labels: the union)"})
    spec_augment: bool = field(default=False, metadata={
        "help": "SpecAugment: mask 2 frequency bands and 2 time spans of every training spectrogram"})
    pitch_shift: float = field(default=0.0, metadata={
        "help": "play every training clip up to this many semitones faster or slower (varispeed; 0: off)"})
    pitch_shift_drums: bool = field(default=True, metadata={
        "help": "with --pitch_shift: shift clips with drums too (false: pitched clips only)"})
    amp: float = field(default=0.0, metadata={
        "help": f"chance that an example holding only electric instruments ({AMPLIFIED_NAMES}) goes through a "
                "random amplifier and speaker cabinet (0: off)"})
    filter_augment: float = field(default=0.0, metadata={
        "help": "chance that a training spectrogram gets a random 3-6 band filter of up to ±6 dB over its whole "
                "spectrum (FilterAugment; 0: off)"})
    eval_limit: int | None = field(default=None, metadata={"help": "evaluate on at most N clips per split"})


@dataclass
class TrainArguments:
    output_dir: str = field(default="models/instrusense", metadata={"help": "where the final model goes"})
    run_dir: str = field(default="runs/instrusense", metadata={"help": "checkpoints and logs (resumable)"})
    max_steps: int = field(default=1200, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=16)
    head_lr: float = field(default=1e-3, metadata={"help": "learning rate of the new head"})
    encoder_lr: float = field(default=5e-5, metadata={"help": "learning rate of the pretrained encoder (0 freezes it)"})
    encoder_lr_decay: float = field(default=1.0, metadata={
        "help": "layer-wise decay: each encoder block gets this factor of the learning rate of the block above "
                "(the embeddings one more); 1 gives every block encoder_lr"})
    weight_decay: float = field(default=0.01)
    warmup_fraction: float = field(default=0.05)
    eval_every: int = field(default=200, metadata={"help": "evaluate and checkpoint every N steps"})
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
    ema_decay: float = field(default=0.0, metadata={
        "help": "evaluate, select and save an exponential moving average of the weights (e.g. 0.998; 0: off)"})
    base_decay: float = field(default=0.0, metadata={
        "help": "decay the encoder toward its pretrained --base weights instead of only toward zero (L2-SP in "
                "AdamW's decoupled form): every step moves each encoder weight lr×this of the way back; 0: off"})
    family_loss: float = field(default=0.0, metadata={
        "help": "weight of a second BCE on the eight families (a family's logit: logsumexp of its labels' logits), "
                "so that a mistake across families costs more than one inside a family; 0: off"})


def crop(wave: np.ndarray, length: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A random window of `length` samples (zero-padded at a random offset when the clip is shorter)."""
    if len(wave) >= length:
        start = int(rng.integers(0, len(wave) - length + 1))
        return wave[start:start + length], start
    out = np.zeros(length, np.float32)
    offset = int(rng.integers(0, length - len(wave) + 1))
    out[offset:offset + len(wave)] = wave
    return out, 0


class TrainBatches:
    """Endless, seeded stream of augmented training batches."""

    def __init__(self, clips: Clips, extractor, window: int, batch_size: int, do_augment: bool, seed: int,
                 short_fraction: float = 0.0, mix_fraction: float = 0.0, spec_augment: bool = False,
                 pitch_shift: float = 0.0, pitch_shift_drums: bool = True, amp: float = 0.0,
                 filter_augment: float = 0.0):
        self.clips, self.extractor, self.window = clips, extractor, window
        self.batch_size, self.do_augment, self.seed = batch_size, do_augment, seed
        self.short_fraction, self.mix_fraction, self.spec_augment = short_fraction, mix_fraction, spec_augment
        self.pitch_shift, self.pitch_shift_drums, self.amp = pitch_shift, pitch_shift_drums, amp
        self.filter_augment = filter_augment

    def batch(self, step: int) -> tuple[dict, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        idx = rng.integers(0, len(self.clips), self.batch_size)
        waves, targets = [], np.zeros((self.batch_size, len(LABELS)), np.float32)
        for b, i in enumerate(idx):
            wave, start, span = self._source_window(int(i), rng)
            length = self.window
            if rng.random() < self.short_fraction:  # a short recording, padded at the end like the app does
                length = int(rng.integers(SAMPLE_RATE // 2, self.window))
            labels = set(self.clips.labels_in(int(i), start, round(length * span / self.window)))
            if self.mix_fraction and rng.random() < self.mix_fraction:
                wave, extra = self._mix_in(wave, length, rng)
                labels |= extra
            if length < self.window:
                wave = np.concatenate([wave[:length], np.zeros(self.window - length, np.float32)])
            for label in labels:
                targets[b, LABEL_INDEX[label]] = 1.0
            if self.do_augment:
                amp = self.amp if labels and labels <= AMPLIFIED_LABELS else 0.0
                wave = augment(torch.from_numpy(wave.copy()), SAMPLE_RATE, gen, amp).numpy()
            waves.append(wave)
        inputs = dict(self.extractor(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt"))
        if self.spec_augment:  # drawn after every waveform draw: the audio stream is the same with or without
            inputs = _mask_spectrograms(inputs, gen)
        if self.filter_augment:  # drawn last, for the same reason
            inputs = _filter_spectrograms(inputs, self.extractor, gen, self.filter_augment)
        return inputs, torch.from_numpy(targets)

    def _source_window(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
        """A window of the clip, played faster or slower when `pitch_shift` is on: the window, where it
        starts in the clip and how many clip samples it spans. Without a shift no extra draw is made,
        so the stream is the same as before the option existed."""
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
        """Add 1-2 crops of other random clips, as `finetune.render.assemble` mixes parts.

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
    """Batch `step` of a `TrainBatches` stream, so that a DataLoader's workers can prepare batches ahead.
    Each batch depends only on the seed and the step, so the stream does not depend on the workers (up to
    float rounding: a worker computes with one thread, and sums over more threads round differently)."""

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


_FAMILY_COLUMNS = [[LABEL_INDEX[label] for label in labels] for labels in FAMILIES.values()]


def family_logits(logits: torch.Tensor) -> torch.Tensor:
    """(batch, labels) -> (batch, families): a smooth maximum (logsumexp) over each family's labels."""
    return torch.stack([logits[:, cols].logsumexp(dim=1) for cols in _FAMILY_COLUMNS], dim=1)


def family_targets(targets: torch.Tensor) -> torch.Tensor:
    """(batch, labels) multi-hot -> (batch, families): 1 where any label of the family is present."""
    return torch.stack([targets[:, cols].amax(dim=1) for cols in _FAMILY_COLUMNS], dim=1)


def _on_spectrograms(inputs: dict, transform, option: str) -> dict:
    """`transform` a feature extractor's output as (batch, bins, frames): Whisper's `input_features` as they are,
    AST's `input_values` (batch, frames, bins) transposed and back. Raw-waveform bases are refused."""
    if "input_features" in inputs:
        return {**inputs, "input_features": transform(inputs["input_features"])}
    values = inputs.get("input_values")
    if values is not None and values.dim() == 3:
        return {**inputs, "input_values": transform(values.transpose(1, 2)).transpose(1, 2).contiguous()}
    raise ValueError(f"{option} needs a spectrogram model (Whisper, AST); this base takes raw waveforms")


def _mask_spectrograms(inputs: dict, gen: torch.Generator) -> dict:
    return _on_spectrograms(inputs, lambda x: spec_mask(x, gen), "--spec_augment")


def _filter_spectrograms(inputs: dict, extractor, gen: torch.Generator, chance: float) -> dict:
    """`filter_gains` with its dB in the extractor's units: Whisper's log10 power over 4 (1/40 per dB); AST's
    natural-log fbank, normalised by twice its `std`."""
    std = getattr(extractor, "std", None) if getattr(extractor, "do_normalize", False) else None
    units = 1 / 40 if "input_features" in inputs else math.log(10) / 10 / (2 * float(std) if std is not None else 1.0)
    return _on_spectrograms(inputs, lambda x: filter_gains(x, gen, units_per_db=units, chance=chance),
                            "--filter_augment")


@torch.inference_mode()
def predict_clips(model, extractor, clips: Clips, window: int, hop: int, batch_size: int = 32) -> np.ndarray:
    """Clip scores the way the app computes them: windows over the clip, sigmoid, max over windows."""
    model.eval()
    device = next(model.parameters()).device

    def score_windows(windows: np.ndarray) -> np.ndarray:
        probs = np.zeros((len(windows), len(LABELS)), np.float32)
        for s in range(0, len(windows), batch_size):
            inputs = extractor(list(windows[s:s + batch_size]), sampling_rate=SAMPLE_RATE, return_tensors="pt")
            probs[s:s + batch_size] = torch.sigmoid(model(**to_device(inputs, device)).logits.float()).cpu().numpy()
        return probs

    return clip_scores(clips.waves, window, hop, score_windows)


def evaluate_splits(model, extractor, evals: dict[str, Clips], window: int) -> dict[str, dict]:
    return {name: summary(predict_clips(model, extractor, clips, window, window // 2), multi_hot(clips.labels))
            for name, clips in evals.items()}


def _output_layer(model) -> torch.nn.Linear:
    """The last linear layer producing one logit per label (any audio-classification head)."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == model.config.num_labels]
    return layers[-1]


@torch.no_grad()
def _fit_projector(projector: torch.nn.Linear, x: torch.Tensor) -> None:
    """Set `projector` to standardise `x` (windows × features) and project it on its principal axes."""
    mu, sigma = x.mean(0), x.std(0).clamp_min(1e-3)
    z = (x - mu) / sigma
    _, s, vt = torch.linalg.svd(z - z.mean(0), full_matrices=False)
    out_dim = projector.out_features
    k = min(out_dim, vt.shape[0])
    comp = vt[:k] / (s[:k, None] / math.sqrt(len(z))).clamp_min(1e-3)  # unit variance per component
    weight = torch.zeros(out_dim, x.shape[1], dtype=torch.float64)
    weight[:k] = comp / sigma[None, :]
    projector.weight.copy_(weight.float())
    projector.bias.copy_((-weight @ mu).float())
    log.info("projector initialised from %d windows (%d principal axes)", len(x), k)


@torch.no_grad()
def init_head_from_data(model, batches: TrainBatches, n_batches: int) -> None:
    """Data-dependent head init: label-prior biases, and for Whisper a standardising projector.

    With a zero bias every sigmoid starts at 0.5 and the optimizer spends thousands of steps only
    learning that most instruments are absent, so each label starts at its base rate instead.
    Whisper's residual stream also carries a few huge, nearly constant dimensions; a randomly
    initialised linear projector passes them on and the classifier sees almost the same pooled vector
    for every clip. Because the projector is linear and pooling is a mean, fitting it (standardised
    principal axes) on time-averaged hidden states is exact. The model classes stay standard.
    """
    model.eval()
    device = next(model.parameters()).device
    whisper = getattr(model.config, "use_weighted_layer_sum", False) and hasattr(model, "projector")
    pooled, targets = [], []
    for step in range(n_batches):
        inputs, target = batches.batch(10**9 + step)  # steps the training loop never draws
        targets.append(target)
        if whisper:
            features = inputs["input_features"].to(device)
            hidden = torch.stack(model.encoder(features, output_hidden_states=True).hidden_states, 1)
            weights = torch.softmax(model.layer_weights, dim=-1).view(1, -1, 1, 1)
            pooled.append((hidden * weights).sum(1).mean(1).cpu())
    if whisper:
        _fit_projector(model.projector, torch.cat(pooled).double())
    head = _output_layer(model)
    prior = torch.cat(targets).mean(0).clamp(1e-3, 0.5)
    head.bias.copy_(torch.log(prior / (1 - prior)).to(head.bias.device))
    head.weight.mul_(0.1)
    log.info("classifier bias at the label priors of %d examples", sum(len(t) for t in targets))


ENCODER_PREFIXES = {"encoder", "model", "audio_spectrogram_transformer", "wav2vec2", "hubert"}
_BLOCK = re.compile(r"\.layers?\.(\d+)\.")


def _is_encoder(name: str) -> bool:
    """Whether a parameter belongs to the pretrained encoder (anything else is the new head)."""
    return name.split(".")[0] in ENCODER_PREFIXES


def _block_depths(names: list[str]) -> dict[str, int]:
    """Depth of each encoder parameter: block i is i + 1, embeddings and front-end 0, anything after the
    blocks (the final layer norm) the top block's."""
    blocks = {n: int(m.group(1)) + 1 for n in names if (m := _BLOCK.search(n))}
    top = max(blocks.values(), default=0)
    return {n: blocks.get(n, 0 if re.search(r"embed|conv|feature_|patch", n) else top) for n in names}


def _param_groups(model, head_lr: float, encoder_lr: float, weight_decay: float,
                  encoder_lr_decay: float = 1.0) -> list[dict]:
    """The new head at `head_lr`; the pretrained encoder at `encoder_lr`, scaled per block by the
    layer-wise decay (lower blocks move less and keep more of what pretraining learned)."""
    head, body = [], {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if _is_encoder(name):
            body[name] = p
        else:
            head.append(p)
    if encoder_lr <= 0:
        for p in body.values():
            p.requires_grad_(False)
        body = {}
    groups = [{"params": head, "lr": head_lr, "weight_decay": weight_decay}]
    depths = _block_depths(list(body))
    top = max(depths.values(), default=0)
    by_lr: dict[float, list] = {}
    for name, p in body.items():
        by_lr.setdefault(encoder_lr * encoder_lr_decay ** (top - depths[name]), []).append(p)
    groups += [{"params": params, "lr": lr, "weight_decay": weight_decay} for lr, params in by_lr.items()]
    return groups


def encoder_anchors(model) -> dict[int, torch.Tensor]:
    """A copy of the encoder's weights as built from --base (pretrained), keyed by parameter id."""
    return {id(p): p.detach().clone() for name, p in model.named_parameters() if _is_encoder(name)}


@torch.no_grad()
def decay_toward_anchors(optimizer: torch.optim.Optimizer, anchors: dict[int, torch.Tensor], strength: float) -> None:
    """Move each anchored parameter lr×strength of the way back to its anchor (its group's current lr).

    Pretrained layers hold what transfers to real recordings; fine-tuning on rendered audio pulls them
    away. Decoupled from the gradient as AdamW's weight decay is, so the pull does not depend on Adam's
    per-weight scaling.
    """
    for group in optimizer.param_groups:
        weight = min(1.0, group["lr"] * strength)
        for p in group["params"]:
            if id(p) in anchors:
                p.lerp_(anchors[id(p)], weight)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def load_weights(model, path: Path) -> None:
    """Copy a saved model's weights into `model` (cast to its dtype); refuse a model whose labels or
    parameters differ, since a partial copy would train a different model than asked for."""
    from safetensors.torch import load_file

    saved = json.loads((path / "config.json").read_text()).get("id2label", {})
    if {int(i): label for i, label in saved.items()} != model.config.id2label:
        raise ValueError(f"{path} has labels {list(saved.values())}, not this taxonomy's "
                         f"{list(model.config.id2label.values())}")
    try:  # strict: missing, unexpected and reshaped tensors are all errors
        model.load_state_dict(load_file(str(path / "model.safetensors")))
    except RuntimeError as err:
        raise ValueError(f"{path} does not match the model built from --base: {err}") from err
    log.info("weights from %s", path)


def save_model(model, extractor, out: Path, dtype: str, extra: dict) -> None:
    """Hugging Face format, loadable by `pipeline("audio-classification", model=out)`."""
    out.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(getattr(torch, dtype)) if v.is_floating_point() else v).cpu()
             for k, v in model.state_dict().items()}
    model.save_pretrained(out, state_dict=state, safe_serialization=True)
    extractor.save_pretrained(out)
    (out / RUN_RECORD).write_text(json.dumps(extra, indent=2) + "\n")


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
    anchors = encoder_anchors(model) if t.base_decay else {}  # before --init_from or a resume replaces them
    log.info("training on %s%s", device, " (bfloat16 autocast)" if device.type == "cuda" else "")
    window = round(m.window_seconds * SAMPLE_RATE)
    started = time.time()
    clips = load_clips(d.dataset, d.train_split)
    evals = {s: load_clips(d.dataset, s, d.eval_limit, t.seed) for s in d.eval_splits.split(",") if s}
    log.info("data: %d training clips, eval %s (%.0f s)", len(clips), {k: len(v) for k, v in evals.items()},
             time.time() - started)
    batches = TrainBatches(clips, extractor, window, t.batch_size, d.augment, t.seed, d.short_fraction,
                           d.mix_fraction, d.spec_augment, d.pitch_shift, d.pitch_shift_drums, d.amp,
                           d.filter_augment)
    optimizer = torch.optim.AdamW(_param_groups(model, t.head_lr, t.encoder_lr, t.weight_decay, t.encoder_lr_decay))
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    loss_fn = torch.nn.BCEWithLogitsLoss()

    step, history, best = 0, [], {"score": -1.0, "step": None}
    ckpt = run / "checkpoint.pt"
    if ckpt.is_file():  # resume: our own file, written by this script
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history, best = state["step"], state["history"], state["best"]
        if history:  # wall time counts the whole run, not just the part since the resume
            started -= history[-1]["elapsed_s"]
        log.info("resumed from %s at step %d", ckpt, step)
    else:
        state = {}
        if m.init_from:
            load_weights(model, Path(m.init_from))
        else:
            init_head_from_data(model, batches, n_batches=t.init_batches)
    ema = None
    if t.ema_decay:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(t.ema_decay), use_buffers=True)
        if "ema" in state:
            ema.load_state_dict(state["ema"])
    scored = ema.module if ema is not None else model  # the weights that are evaluated and saved
    warmup = max(1, int(t.warmup_fraction * t.max_steps))
    args_record = {"model": asdict(m), "data": asdict(d), "train": asdict(t), "argv": argv}
    # the card tells every stage: the run it continues, or the weight average (finetune.average) it starts from
    parent = read_record(m.init_from) if m.init_from else None
    if parent:
        args_record["parent"] = parent

    bar = tqdm(total=t.max_steps, initial=step, desc="training", unit="step", file=sys.stderr)
    running = None
    stream = batch_stream(batches, step, t.max_steps, t.workers)
    since, since_step = time.time(), step  # training speed between evaluations (data waits included)
    while step < t.max_steps:
        model.train()
        inputs, targets = next(stream)
        inputs, targets = to_device(inputs, device), targets.to(device)
        for g, lr in zip(optimizer.param_groups, base_lrs):
            g["lr"] = lr * _lr_factor(step, t.max_steps, warmup)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(**inputs).logits.float()
        loss = loss_fn(logits, targets)
        if t.family_loss:
            loss = loss + t.family_loss * loss_fn(family_logits(logits), family_targets(targets))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if anchors:
            decay_toward_anchors(optimizer, anchors, t.base_decay)
        if ema is not None:
            ema.update_parameters(model)
        step += 1
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}")
        if step % t.eval_every == 0 or step == t.max_steps:
            steps_per_s = (step - since_step) / (time.time() - since)
            results = evaluate_splits(scored, extractor, evals, window)
            history.append({"step": step, "loss": running, "elapsed_s": time.time() - started,
                            "steps_per_s": steps_per_s, **results})
            log.info("step %d loss %.4f %s", step, running, json.dumps(results))
            score = results.get(d.select_on, {}).get("mAP", -running)
            if score > best["score"]:
                best = {"score": score, "step": step}
                save_model(scored, extractor, run / "best", t.save_dtype,
                           {**args_record, "step": step, "elapsed_s": history[-1]["elapsed_s"], "eval": results})
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                        "history": history, "best": best, **({"ema": ema.state_dict()} if ema is not None else {})}, ckpt)
            (run / "history.json").write_text(json.dumps(history, indent=2) + "\n")
            since, since_step = time.time(), step
    bar.close()
    final = Path(t.output_dir)
    if (run / "best").is_dir():
        import shutil

        shutil.copytree(run / "best", final, dirs_exist_ok=True)
        (final / AVERAGE_RECORD).unlink(missing_ok=True)  # saved over an average: its record is not these weights
        write_model_card(final, args_record, best["step"], history, argv or [])
    log.info("best step %s (%s mAP %.4f) saved to %s", best["step"], d.select_on, best["score"], final)
    return {"best": best, "history": history}


def main(argv: list[str] | None = None) -> int:
    configure_logging("INFO")
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainArguments))
    if argv is None:
        argv = sys.argv[1:]
    if len(argv) == 1 and argv[0].endswith(".json"):
        m, d, t = parser.parse_json_file(argv[0])
    else:
        m, d, t = parser.parse_args_into_dataclasses(args=argv)
    train(m, d, t, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
