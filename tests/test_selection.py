"""finetune.evaluation.selection: the README's rule for replacing the shipped model, and that real-eval plays no part."""

import numpy as np

from finetune.data.clips import Clips
from finetune.evaluation.selection import (NEGATIVES, RARE, REAL, UNREAL, VALIDATION, group_macro, held_out_hits,
                                           judge, paired_standard_error, rule_metrics)
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


VAL = [["piano"], ["violin"], ["drums"], ["flute", "drums"], ["oboe"], ["oboe"]]
REAL_CLIPS = [["piano"], ["drums"], ["drums"], ["saxophone"]]
SOURCES = ["real-eval", "lmms", "sonic-pi", "real-eval"]
HELD = [["saxophone"], ["banjo"]]
NEG = [[], []]
SPLITS = {"validation": _clips(VAL, ["csound"] * 6), "real": _clips(REAL_CLIPS, SOURCES),
          "real_heldout": _clips(HELD, ["bear-sax", "ganjo"]), "negatives": _clips(NEG, ["fsdd", "tone"])}
REAL_LABELS = frozenset({"saxophone", "banjo", "piano", "drums"})


def _metrics(val_wrong=(), real_wrong=(), held_wrong=(), negatives_firing=0):
    neg = np.full((2, len(LABELS)), 0.1)
    neg[:negatives_firing, 0] = 0.9
    return rule_metrics({"validation": _scores(VAL, set(val_wrong)), "real": _scores(REAL_CLIPS, set(real_wrong)),
                         "real_heldout": _scores(HELD, set(held_wrong)), "negatives": neg}, SPLITS, REAL_LABELS)


def test_real_eval_clips_do_not_change_the_numbers_the_rule_compares():
    assert _metrics() == _metrics(real_wrong=[0, 3])  # both real-eval clips wrong
    # held-out real clips (drums from lmms/sonic-pi, saxophone, banjo): every label has under 10, so one pool
    assert _metrics(real_wrong=[1])[REAL] == 0.75
    assert not any("real-eval" in k and "outside" not in k for k in _metrics())


def test_a_label_with_ten_held_out_clips_counts_alone_and_rarer_labels_count_as_one_pool():
    held = [["drums"]] * 10 + [["saxophone"], ["banjo"]]
    splits = {"real": _clips([["piano"]], ["real-eval"]), "real_heldout": _clips(held, ["kit"] * 10 + ["sax", "ganjo"])}
    scores = {"real": _scores([["piano"]]), "real_heldout": _scores(held, {0, 11})}  # one drum clip, the banjo clip wrong
    hits, groups = held_out_hits(scores, splits)
    assert list(groups) == ["drums"] * 10 + [RARE] * 2 and hits.sum() == 10
    assert group_macro(hits, groups) == np.mean([0.9, 0.5])


def test_the_paired_standard_error_is_zero_for_equal_hits_and_grows_with_disagreement():
    groups = np.asarray(["drums"] * 20 + [RARE] * 10, dtype=object)
    shipped = np.arange(30) % 2 == 0
    assert paired_standard_error(shipped, shipped, groups) == 0.0
    one, many = shipped.copy(), shipped.copy()
    one[1] = True
    many[1:20:2] = True
    assert 0.0 < paired_standard_error(one, shipped, groups) < paired_standard_error(many, shipped, groups)
    assert paired_standard_error(many, shipped, groups) == paired_standard_error(many, shipped, groups)  # seeded


def test_real_held_out_must_not_fall_beyond_its_noise_and_rendered_validation_may_dip_a_little():
    shipped = _metrics(held_wrong=[0])
    assert all(ok for _, ok in judge(_metrics(), shipped))
    worse_real = _metrics(held_wrong=[0, 1])  # 3/4 → 2/4 on the pooled real held-out clips
    real_check = f"{REAL} not lower by more than one standard error"
    assert not dict(judge(worse_real, shipped, real_se=0.2))[f"{real_check} (0.200)"]
    assert dict(judge(worse_real, shipped, real_se=0.3))[f"{real_check} (0.300)"]
    worse_val = dict(judge(_metrics(val_wrong=[0]), shipped))  # better on real, far worse on validation
    assert not worse_val[f"{VALIDATION} not lower by more than 0.01"] and worse_val[f"{real_check} (0.000)"]


def test_a_candidate_must_be_better_on_real_held_out_or_negatives():
    shipped = _metrics(held_wrong=[0], negatives_firing=1)
    better = f"better on {REAL} or {NEGATIVES}"
    assert not dict(judge(shipped, shipped))[better]
    assert dict(judge(_metrics(held_wrong=[0]), shipped))[better]  # level on real, cleaner on negatives
    assert dict(judge(_metrics(negatives_firing=1), shipped))[better]  # better on real


def test_a_model_whose_labels_without_real_data_fall_is_refused():
    shipped = _metrics(held_wrong=[0])
    assert _metrics()["validation top-1: oboe"] == 1.0 and "validation top-1: piano" not in _metrics()
    checks = dict(judge(_metrics(val_wrong=[4]), shipped))  # oboe (no real data) falls from 2/2 to 1/2
    assert not checks[f"{UNREAL} not lower by more than 0.01"]
    assert not checks["no label without real data falls by more than 10 points (fell: oboe)"]
    assert checks[f"{REAL} not lower by more than one standard error (0.000)"]


def test_negatives_must_stay_clean():
    shipped = _metrics(held_wrong=[0])
    assert _metrics(negatives_firing=1)[NEGATIVES] == 0.5
    assert not dict(judge(_metrics(negatives_firing=1), shipped))[f"{NEGATIVES} ≥ 0.9 or not lower"]


def test_a_bar_the_shipped_model_meets_must_stay_met_and_an_unmet_one_is_not_asked():
    shipped, candidate = _metrics(held_wrong=[0]), _metrics()
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
    assert f"| better on {REAL} or {NEGATIVES} | **no** |" in out and "may not replace" in out
    assert "real held-out, top-1 clips per label" in out and "| fell |" in out
    assert "difference +0, paired-bootstrap SE 0.0 (0 lost, 0 won)" in out  # the same model: no noise to read
    assert selection_main(["--candidate", tiny_whisper, "--shipped", tiny_whisper, "--dataset", eval_dataset,
                           "--int8"]) == 1  # as the CLI scores on a CPU
    assert "may not replace" in capsys.readouterr().out
    assert selection_main(["--candidate", str(tmp_path / "missing"), "--shipped", tiny_whisper, "--dataset", eval_dataset]) == 2


def test_a_label_falls_only_beyond_one_clip_or_its_bootstrap_error():
    from finetune.evaluation.selection import label_changes, label_report

    labels = np.asarray(["piano"] * 20 + ["saxophone"] * 20 + ["banjo"] * 5, dtype=object)
    shipped = np.ones(45, bool)
    candidate = shipped.copy()
    candidate[0] = False  # piano: one clip lost, inside the one-clip floor
    candidate[20:23] = False  # saxophone: three lost, beyond the floor and the bootstrap error (~1.6 clips)
    rows = {r["label"]: r for r in label_changes(candidate, shipped, labels)}
    assert list(rows) == sorted(rows, key=LABELS.index)  # taxonomy order
    assert (rows["piano"]["candidate"], rows["piano"]["shipped"], rows["piano"]["fell"]) == (19, 20, False)
    assert rows["saxophone"]["fell"] and 1.0 < rows["saxophone"]["tolerance"] < 3.0
    assert rows["banjo"] == {"label": "banjo", "clips": 5, "candidate": 5, "shipped": 5, "tolerance": 1.0,
                             "fell": False}
    # a gain is never a fall, however large
    assert not any(r["fell"] for r in label_changes(shipped, candidate, labels))
    assert "| saxophone | 20 | 17 | 20 |" in label_report("real held-out", list(rows.values()))


def test_real_eval_is_reported_per_label_apart_from_real_held_out():
    from finetune.evaluation.selection import real_hits

    scores = {"real": _scores(REAL_CLIPS, {0}), "real_heldout": _scores(HELD, {1})}
    parts = real_hits(scores, SPLITS)
    assert list(parts["real-eval"][1]) == ["piano", "saxophone"] and list(parts["real-eval"][0]) == [False, True]
    assert list(parts["real held-out"][1]) == ["drums", "drums", "saxophone", "banjo"]
    assert list(parts["real held-out"][0]) == [True, True, True, False]


def test_the_family_bar_is_reported_in_clips_with_the_noise_of_the_difference():
    from finetune.evaluation.selection import family_report
    from finetune.metrics import family_accuracy, family_hits, multi_hot

    solo = VAL[:3] + VAL[4:]  # the single-label clips
    y = multi_hot(solo)
    shipped = family_hits(_scores(solo), y)
    candidate = family_hits(_scores(solo, {1, 4}), y)  # violin and oboe ranked last: piano wins
    assert list(shipped) == [True] * 5 and family_accuracy(_scores(solo, {1, 4}), y) == 0.6
    line = family_report(candidate, shipped)
    assert "candidate 3, shipped 5 of 5; difference -2" in line and "(2 lost, 0 won)" in line
    se = float(line.split("SE ")[1].split(" ")[0])
    assert 0.5 < se < 2.0  # two of five clips disagree: a binomial spread of about 1.1 clips
    assert "SE 0.0 (0 lost, 0 won)" in family_report(shipped, shipped)
