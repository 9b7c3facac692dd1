"""The two baselines the fine-tuned model is measured against, trained on the same data.

    python -m finetune.evaluation.baselines mfcc [--dataset data/instruments-v9] --out runs/baselines/mfcc
    python -m finetune.evaluation.baselines ast [--dataset data/instruments-v9] --max_steps 3000 \
        --run_dir runs/baselines/ast --output_dir runs/baselines/ast/model --threads 2

* ``mfcc`` — the classic baseline: MFCC statistics (40 coefficients and their deltas, mean and std
  over time) per clip, standardised, one logistic regression per label (one-vs-rest, multi-label).
  Trained on every training clip twice: clean, and as one random 3 s crop through the same recording
  augmentation the neural models see. Saved without pickle: ``model.npz`` (scaler mean/scale,
  coefficients, intercepts, label keys) and ``config.json`` (feature settings, training record).
  Scored like the app scores a recording: 3 s windows, hop 1.5 s, max over windows.
* ``ast`` — a small Audio Spectrogram Transformer initialised at random (no pretraining), written as
  a Hugging Face checkpoint and trained by ``finetune.train.train``: same loop, data, augmentation,
  loss and batch size as the Whisper model (the training defaults); only the learning rate of the body
  differs (a body trained from scratch needs a larger one than a pretrained encoder being adapted).
  The AST rows of the evaluation table predate the varispeed and the family loss: the command that made
  them is in finetune/README.md ("Baselines").
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import HfArgumentParser

from finetune.augment import augment
from finetune.data.clips import Clips, crop, load_clips
from finetune.data.schema import DEFAULT_DATASET, SAMPLE_RATE
from finetune.train import DataArguments, ModelArguments, TrainArguments, train
from instrusense.logs import configure_logging
from instrusense.taxonomy import LABEL_INDEX, LABELS

log = logging.getLogger("finetune.evaluation.baselines")

# ----------------------------------------------------------------------------------------------- MFCC


@dataclass
class MfccArguments:
    dataset: str = field(default=DEFAULT_DATASET, metadata={"help": "DatasetDict from `python -m finetune.data`"})
    out: str = field(default="runs/baselines/mfcc", metadata={"help": "folder for model.npz and config.json"})
    train_split: str = field(default="train", metadata={"help": "split to train on"})
    limit: int | None = field(default=None, metadata={"help": "train on at most N clips (quick runs)"})
    n_mfcc: int = field(default=40, metadata={"help": "MFCC coefficients (deltas double them)"})
    n_mels: int = field(default=64, metadata={"help": "mel bands under the MFCC"})
    window_seconds: float = field(default=3.0, metadata={"help": "crop length in training, window at inference"})
    C: float = field(default=1.0, metadata={"help": "inverse L2 strength of each logistic regression"})
    seed: int = field(default=0)
    threads: int = field(default=1, metadata={"help": "torch threads for feature extraction (0: torch default)"})


def _mfcc_transform(n_mfcc: int, n_mels: int) -> torch.nn.Module:
    import torchaudio

    return torchaudio.transforms.MFCC(sample_rate=SAMPLE_RATE, n_mfcc=n_mfcc,
                                      melkwargs={"n_fft": 512, "hop_length": 160, "n_mels": n_mels})


def mfcc_statistics(waves: list[np.ndarray], n_mfcc: int = 40, n_mels: int = 64, batch_size: int = 256) -> np.ndarray:
    """(n, 4·n_mfcc) per waveform: mean and std over time of the MFCCs and of their deltas."""
    import torchaudio.functional as AF

    transform = _mfcc_transform(n_mfcc, n_mels)
    out = np.zeros((len(waves), 4 * n_mfcc), np.float32)
    by_length: dict[int, list[int]] = {}
    for i, w in enumerate(waves):
        by_length.setdefault(len(w), []).append(i)
    with torch.inference_mode():
        for idx in by_length.values():  # equal lengths batch together
            for s in range(0, len(idx), batch_size):
                part = idx[s:s + batch_size]
                x = torch.from_numpy(np.stack([waves[i] for i in part]).astype(np.float32))
                m = transform(x)  # (b, n_mfcc, frames)
                f = torch.cat([m, AF.compute_deltas(m)], dim=1)
                out[part] = torch.cat([f.mean(dim=2), f.std(dim=2)], dim=1).numpy()
    return out


@dataclass
class MfccBaseline:
    """Standardised MFCC statistics → one logistic regression per label (sigmoid scores)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (labels, features)
    intercept: np.ndarray  # (labels,)
    n_mfcc: int = 40
    n_mels: int = 64
    window_seconds: float = 3.0

    def score_features(self, feats: np.ndarray) -> np.ndarray:
        z = (feats - self.mean) / self.scale
        return (1.0 / (1.0 + np.exp(-(z @ self.coef.T + self.intercept)))).astype(np.float32)

    # What `instrusense.analysis.analyze_recording` asks of a tagger, so the baseline is scored by the same
    # analysis as the fine-tuned models (finetune.scoring).
    sampling_rate = SAMPLE_RATE

    @property
    def native_window_seconds(self) -> float:
        return self.window_seconds

    def predict(self, windows: np.ndarray, batch_size: int = 256, should_stop=None) -> np.ndarray:
        """(n_windows, len(LABELS)) confidences for equal-length windows (`Tagger.predict`'s signature)."""
        return self.score_features(mfcc_statistics(list(windows), self.n_mfcc, self.n_mels, batch_size))

    def save(self, out: str | Path, record: dict | None = None) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / "model.npz", mean=self.mean, scale=self.scale, coef=self.coef, intercept=self.intercept,
                 labels=np.array(LABELS))
        config = {"kind": "mfcc-logreg", "n_mfcc": self.n_mfcc, "n_mels": self.n_mels,
                  "window_seconds": self.window_seconds, "labels": list(LABELS), **(record or {})}
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, path: str | Path) -> MfccBaseline:
        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        with np.load(path / "model.npz", allow_pickle=False) as z:
            if tuple(str(s) for s in z["labels"]) != LABELS:
                raise ValueError(f"{path}: labels differ from the taxonomy")
            return cls(mean=z["mean"], scale=z["scale"], coef=z["coef"], intercept=z["intercept"],
                       n_mfcc=config["n_mfcc"], n_mels=config["n_mels"], window_seconds=config["window_seconds"])


def mfcc_training_set(clips: Clips, window: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Each clip clean (all its labels) plus one augmented random crop (the labels active in it)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    waves, targets = [], np.zeros((2 * len(clips), len(LABELS)), np.float32)
    for i, wave in enumerate(clips.waves):
        waves.append(wave)
        for label in clips.labels[i]:
            targets[2 * i, LABEL_INDEX[label]] = 1.0
        piece, start = crop(wave, window, rng)
        for label in clips.labels_in(i, start, window):
            targets[2 * i + 1, LABEL_INDEX[label]] = 1.0
        waves.append(augment(torch.from_numpy(piece.copy()), SAMPLE_RATE, gen).numpy())
    return waves, targets


def fit_mfcc(a: MfccArguments) -> tuple[MfccBaseline, dict]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if a.threads:
        torch.set_num_threads(a.threads)
    started = time.time()
    clips = load_clips(a.dataset, a.train_split, a.limit, a.seed)
    waves, y = mfcc_training_set(clips, round(a.window_seconds * SAMPLE_RATE), a.seed)
    feats = mfcc_statistics(waves, a.n_mfcc, a.n_mels)
    feature_s = time.time() - started
    log.info("mfcc: %d examples from %d clips, %d features (%.0f s)", len(feats), len(clips), feats.shape[1],
             feature_s)
    scaler = StandardScaler().fit(feats)
    z = scaler.transform(feats)
    coef = np.zeros((len(LABELS), feats.shape[1]), np.float64)
    intercept = np.zeros(len(LABELS), np.float64)
    constant = []
    for j, label in enumerate(LABELS):
        positives = int(y[:, j].sum())
        if positives in (0, len(y)):  # no decision to learn: a constant score
            intercept[j] = 20.0 if positives else -20.0
            constant.append(label)
            continue
        lr = LogisticRegression(C=a.C, max_iter=2000).fit(z, y[:, j])
        coef[j], intercept[j] = lr.coef_[0], lr.intercept_[0]
    if constant:
        log.warning("mfcc: constant score for labels without both classes in training: %s", ", ".join(constant))
    model = MfccBaseline(mean=scaler.mean_.astype(np.float64), scale=scaler.scale_.astype(np.float64),
                         coef=coef, intercept=intercept, n_mfcc=a.n_mfcc, n_mels=a.n_mels,
                         window_seconds=a.window_seconds)
    record = {"args": asdict(a), "training_clips": len(clips), "training_examples": len(feats),
              "feature_seconds": round(feature_s, 1), "total_seconds": round(time.time() - started, 1)}
    log.info("mfcc: trained in %.0f s", record["total_seconds"])
    return model, record


# ------------------------------------------------------------------------------------------------ AST


@dataclass
class AstArguments:
    hidden_size: int = field(default=192, metadata={"help": "transformer width"})
    num_hidden_layers: int = field(default=4)
    num_attention_heads: int = field(default=3)
    intermediate_size: int = field(default=768)
    num_mel_bins: int = field(default=128)
    window_seconds: float = field(default=3.0, metadata={"help": "input length (max_length = 100 frames/s)"})
    init_seed: int = field(default=0, metadata={"help": "seed of the random initialisation"})


@dataclass
class AstTrainArguments(TrainArguments):
    """`finetune.train` arguments with defaults that cannot overwrite the shipped model."""

    output_dir: str = field(default="runs/baselines/ast/model", metadata={"help": "where the final model goes"})
    run_dir: str = field(default="runs/baselines/ast", metadata={"help": "checkpoints and logs (resumable)"})
    encoder_lr: float = field(default=5e-4, metadata={"help": "learning rate of the transformer body "
                                                              "(trained from scratch, so not tiny)"})


def make_ast(out: str | Path, a: AstArguments) -> Path:
    """A randomly initialised multi-label AST over the taxonomy, saved with save_pretrained (safetensors)."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    from finetune.modeling import label_kwargs

    out = Path(out)
    max_length = round(a.window_seconds * 100)  # 10 ms frames
    torch.manual_seed(a.init_seed)
    config = ASTConfig(hidden_size=a.hidden_size, num_hidden_layers=a.num_hidden_layers,
                       num_attention_heads=a.num_attention_heads, intermediate_size=a.intermediate_size,
                       num_mel_bins=a.num_mel_bins, max_length=max_length, **label_kwargs())
    model = ASTForAudioClassification(config)
    model.save_pretrained(out, safe_serialization=True)
    ASTFeatureExtractor(num_mel_bins=a.num_mel_bins, max_length=max_length).save_pretrained(out)
    log.info("ast: random init (%.1f M parameters) written to %s",
             sum(p.numel() for p in model.parameters()) / 1e6, out)
    return out


def train_ast(a: AstArguments, d: DataArguments, t: TrainArguments) -> dict:
    init = Path(t.run_dir) / "init"
    if not (init / "config.json").is_file():  # a resumed run keeps its initialisation
        make_ast(init, a)
    m = ModelArguments(base=str(init), window_seconds=a.window_seconds)
    return train(m, d, t)


# ------------------------------------------------------------------------------------------------ CLI

USAGE = "usage: python -m finetune.evaluation.baselines {mfcc,ast} [--help] [arguments]"


def main(argv: list[str] | None = None) -> int:
    configure_logging("INFO")
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in {"mfcc", "ast"}:
        print(f"{USAGE}\nchoose a baseline: mfcc or ast (got {argv[0] if argv else 'nothing'})", file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "mfcc":
        (a,) = HfArgumentParser(MfccArguments).parse_args_into_dataclasses(args=rest)
        model, record = fit_mfcc(a)
        log.info("mfcc baseline saved to %s", model.save(a.out, record))
    else:
        a, d, t = HfArgumentParser((AstArguments, DataArguments, AstTrainArguments)).parse_args_into_dataclasses(
            args=rest)
        train_ast(a, d, t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
