"""Evaluation metrics: the validation score during training, the evaluation table, the baselines and the
selection rule all compute them here (a library module: it imports no command)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, f1_score

from instrusense.taxonomy import FAMILY_OF, LABEL_INDEX, LABELS


def multi_hot(label_lists: list[list[str]]) -> np.ndarray:
    y = np.zeros((len(label_lists), len(LABELS)), dtype=np.float32)
    for i, labels in enumerate(label_lists):
        for label in labels:
            y[i, LABEL_INDEX[label]] = 1.0
    return y


def solo_mask(y: np.ndarray) -> np.ndarray:
    return y.sum(axis=1) == 1


def topk_accuracy(scores: np.ndarray, y: np.ndarray, k: int) -> float:
    """Share of clips whose top-k predictions include a true label (solo clips: the true label)."""
    if len(y) == 0:
        return float("nan")
    top = np.argsort(-scores, axis=1)[:, :k]
    return float(np.mean([y[i, top[i]].any() for i in range(len(y))]))


def family_hits(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per clip: whether its top prediction is in the family of a true label."""
    pred_fam = [FAMILY_OF[LABELS[j]] for j in scores.argmax(axis=1)]
    return np.asarray([pred_fam[i] in {FAMILY_OF[LABELS[j]] for j in np.flatnonzero(y[i])} for i in range(len(y))],
                      dtype=bool)


def family_accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    """Share of clips whose top prediction is in the family of a true label."""
    return float(family_hits(scores, y).mean()) if len(y) else float("nan")


def mean_average_precision(scores: np.ndarray, y: np.ndarray) -> float:
    """Macro mAP over the labels that occur in `y` (others have no defined AP)."""
    present = y.sum(axis=0) > 0
    if not present.any():
        return float("nan")
    return float(average_precision_score(y[:, present], scores[:, present], average="macro"))


def per_label_f1(scores: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    present = y.sum(axis=0) > 0
    f1 = f1_score(y, scores >= threshold, average=None, zero_division=0)
    return {LABELS[j]: float(f1[j]) for j in range(len(LABELS)) if present[j]}


def per_label_top1(scores: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Per label, the share of its single-label clips whose top prediction is that label ("3 of 24")."""
    solo = solo_mask(y)
    top = scores.argmax(axis=1)
    return {LABELS[j]: float(np.mean(top[solo & (y[:, j] == 1)] == j))
            for j in range(len(LABELS)) if (solo & (y[:, j] == 1)).any()}


def per_label_clips(y: np.ndarray) -> dict[str, int]:
    solo = solo_mask(y)
    return {LABELS[j]: int((solo & (y[:, j] == 1)).sum()) for j in range(len(LABELS)) if (solo & (y[:, j] == 1)).any()}


def summary(scores: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The evaluation table's columns for one split (solo metrics on single-label clips)."""
    solo = solo_mask(y)
    mix = ~solo
    return {
        "clips": int(len(y)),
        "top1": topk_accuracy(scores[solo], y[solo], 1),
        "top3": topk_accuracy(scores[solo], y[solo], 3),
        "family": family_accuracy(scores[solo], y[solo]),
        "mAP": mean_average_precision(scores, y),
        "mixture_mAP": mean_average_precision(scores[mix], y[mix]) if mix.any() else float("nan"),
        "macro_f1": float(np.mean(list(per_label_f1(scores, y).values()))) if len(y) else float("nan"),
    }


def part_metrics(scores: np.ndarray, y: np.ndarray) -> dict:
    """One row of the evaluation table: every metric on one group of clips (solo clips or mixtures).

    On mixtures, top-k and family accuracy count a hit when the top prediction(s) name one of the
    instruments present; mAP and F1 score every label present in the group.
    """
    f1 = per_label_f1(scores, y) if len(y) else {}
    return {
        "clips": int(len(y)),
        "top1": topk_accuracy(scores, y, 1),
        "top3": topk_accuracy(scores, y, 3),
        "family": family_accuracy(scores, y),
        "mAP": mean_average_precision(scores, y),
        "macro_f1": float(np.mean(list(f1.values()))) if f1 else float("nan"),
        "per_label_f1": f1,
        "per_label_top1": per_label_top1(scores, y) if len(y) else {},
        "per_label_clips": per_label_clips(y) if len(y) else {},
    }
