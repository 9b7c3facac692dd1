"""Which Whisper encoder layers carry instrument identity that transfers to real recordings?

Frozen encoder, time-mean of every hidden state on one 3 s crop per clip (training clips augmented),
a logistic-regression probe per layer; prints top-1 / family accuracy on the held-out library and
on real recordings. Used to choose how many encoder blocks the classifier keeps.

    python -m finetune.evaluation.probe_layers --dataset data/instruments-v9 --train-limit 800
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
import logging

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm
from transformers import HfArgumentParser

from finetune.augment import augment
from finetune.data.clips import Clips, crop, load_clips
from finetune.data.schema import DEFAULT_DATASET, SAMPLE_RATE
from finetune.metrics import family_accuracy, multi_hot, solo_mask, topk_accuracy
from finetune.modeling import build_classifier
from instrusense.logs import configure_logging
from instrusense.taxonomy import LABEL_INDEX

log = logging.getLogger("finetune.evaluation.probe_layers")


@torch.inference_mode()
def layer_features(model, extractor, clips: Clips, window: int, do_augment: bool, seed: int) -> np.ndarray:
    """(clips, layers+1, 2·d) mean and std over time of each hidden state."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    feats = []
    for s in tqdm(range(0, len(clips), 16), desc="features", unit="batch"):
        waves = []
        for wave in clips.waves[s:s + 16]:
            w, _ = crop(wave, window, rng)
            waves.append(augment(torch.from_numpy(w.copy()), SAMPLE_RATE, gen).numpy() if do_augment else w)
        inputs = extractor(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        hs = torch.stack(model.encoder(inputs["input_features"], output_hidden_states=True).hidden_states, 1)
        feats.append(torch.cat([hs.mean(2), hs.std(2)], -1).numpy())
    return np.concatenate(feats)


@dataclass
class ProbeArguments:
    dataset: str = field(default=DEFAULT_DATASET, metadata={"help": "DatasetDict with train, validation, real"})
    base: str = field(default="cache/whisper-base", metadata={"help": "the pretrained Whisper checkpoint"})
    train_limit: int = field(default=800, metadata={"help": "training clips the probes see"})
    seed: int = field(default=0)


def main(argv: list[str] | None = None) -> None:
    configure_logging("INFO")
    (args,) = HfArgumentParser(ProbeArguments).parse_args_into_dataclasses(args=argv)
    model, extractor = build_classifier(args.base, window_seconds=3.0)
    model.eval()
    window = 3 * SAMPLE_RATE
    train = load_clips(args.dataset, "train", args.train_limit, args.seed)
    keep = [i for i in range(len(train)) if len(train.labels[i]) == 1]
    y_train = [train.labels[i][0] for i in keep]
    x_train = layer_features(model, extractor, train, window, True, args.seed)[keep]
    results = {}
    for split in ("validation", "real"):
        clips = load_clips(args.dataset, split)
        x = layer_features(model, extractor, clips, window, False, args.seed)
        y = multi_hot(clips.labels)
        solo = solo_mask(y)
        for layer in range(x.shape[1]):
            scaler = StandardScaler().fit(x_train[:, layer])
            clf = LogisticRegression(max_iter=2000, C=0.5).fit(scaler.transform(x_train[:, layer]), y_train)
            proba = clf.predict_proba(scaler.transform(x[solo, layer]))
            scores = np.zeros((solo.sum(), y.shape[1]))
            for j, label in enumerate(clf.classes_):
                scores[:, LABEL_INDEX[label]] = proba[:, j]
            results.setdefault(f"layer{layer}", {})[split] = {
                "top1": round(topk_accuracy(scores, y[solo], 1), 3),
                "top3": round(topk_accuracy(scores, y[solo], 3), 3),
                "family": round(family_accuracy(scores, y[solo]), 3)}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
