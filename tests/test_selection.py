"""finetune.evaluation.selection: the README's rule for replacing the shipped model, and that real-eval plays no part."""

import numpy as np

from finetune.data.clips import Clips
from finetune.evaluation.selection import judge, rule_metrics
from instrusense.taxonomy import LABELS


def _clips(labels: list[list[str]], sources: list[str]) -> Clips:
    n = len(labels)
    return Clips(waves=[np.zeros(16000, np.float32)] * n, labels=labels, activity=[[]] * n, sources=sources,
                 kinds=["note"] * n)


def _scores(labels: list[list[str]], wrong: set[int] = frozenset()) -> np.ndarray:
    """Scores that rank each clip's labels first, except for the clips in ``wrong`` (ranked last)."""
    s = np.full((len(labels), len(LABELS)), 0.1)
    for i, labs in enumerate(labels):
        for lab in labs:
            s[i, LABELS.index(lab)] = 0.0 if i in wrong else 0.9
    return s


VAL = [["piano"], ["violin"], ["drums"], ["flute", "drums"]]
REAL = [["piano"], ["drums"], ["drums"], ["saxophone"]]
SOURCES = ["real-eval", "lmms", "sonic-pi", "real-eval"]
SPLITS = {"validation": _clips(VAL, ["csound"] * 4), "real": _clips(REAL, SOURCES)}


def _metrics(val_wrong=(), real_wrong=()):
    return rule_metrics({"validation": _scores(VAL, set(val_wrong)), "real": _scores(REAL, set(real_wrong))}, SPLITS)


def test_real_eval_clips_do_not_change_the_numbers_the_rule_compares():
    assert _metrics() == _metrics(real_wrong=[0, 3])  # both real-eval clips wrong
    assert _metrics(real_wrong=[1])["real outside real-eval: top-1"] == 0.5
    assert not any("real-eval" in k and "outside" not in k for k in _metrics())


def test_a_candidate_must_beat_validation_and_not_lose_outside_real_eval():
    shipped = _metrics(val_wrong=[0])
    assert all(ok for _, ok in judge(_metrics(), shipped))
    level = dict(judge(shipped, shipped))
    assert not level["validation mAP (all held-out clips) higher"]
    worse_real = dict(judge(_metrics(real_wrong=[2]), shipped))
    assert not worse_real["real outside real-eval: top-1 not lower"]
    assert worse_real["validation mAP (all held-out clips) higher"]


def test_a_bar_the_shipped_model_meets_must_stay_met_and_an_unmet_one_is_not_asked():
    shipped, candidate = _metrics(val_wrong=[0]), _metrics()
    shipped["validation solo: family"], candidate["validation solo: family"] = 0.952, 0.949
    checks = dict(judge(candidate, shipped))
    assert checks["validation solo: family ≥ 0.95 (met by the shipped model)"] is False
    shipped["validation solo: family"] = 0.944  # not met by the shipped model: no check
    assert not any("family" in c for c, _ in judge(candidate, shipped))


def test_selection_command_scores_both_models_and_refuses_a_model_no_better_than_itself(
        eval_dataset, tiny_whisper, tmp_path, capsys):
    from finetune.evaluation.selection import main as selection_main

    assert selection_main(["--candidate", tiny_whisper, "--shipped", tiny_whisper, "--dataset", eval_dataset,
                           "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "| validation mAP (all held-out clips) higher | **no** |" in out and "may not replace" in out
    assert selection_main(["--candidate", str(tmp_path / "missing"), "--shipped", tiny_whisper, "--dataset", eval_dataset]) == 2
