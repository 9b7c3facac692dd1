"""Evaluation: the metrics on hand-made scores, the MFCC baseline end to end, the one-command table."""

import json

import numpy as np
import pytest

from finetune.evaluation.baselines import AstArguments, MfccArguments, MfccBaseline, fit_mfcc, make_ast
from finetune.evaluation.evaluate import main as evaluate_main
from finetune.evaluation.scoring import score_clips
from finetune.model_card import CARD_END, CARD_START
from finetune.evaluation.metrics import family_accuracy, mean_average_precision, multi_hot, part_metrics, topk_accuracy
from instrusense.taxonomy import LABEL_INDEX, LABELS


def _scores(rows: list[dict[str, float]]) -> np.ndarray:
    s = np.zeros((len(rows), len(LABELS)), np.float32)
    for i, r in enumerate(rows):
        for label, v in r.items():
            s[i, LABEL_INDEX[label]] = v
    return s


def test_metrics_on_a_hand_made_example():
    y = multi_hot([["violin"], ["flute"], ["trumpet"], ["drums"]])
    scores = _scores([
        {"violin": 0.9, "cello": 0.5},  # top-1 right
        {"oboe": 0.8, "clarinet": 0.7, "flute": 0.6},  # third, right family
        {"violin": 0.9, "piano": 0.8, "organ": 0.7, "trumpet": 0.1},  # not in top-3, wrong family
        {"drums": 0.4},  # right
    ])
    assert topk_accuracy(scores, y, 1) == pytest.approx(0.5)
    assert topk_accuracy(scores, y, 3) == pytest.approx(0.75)
    assert family_accuracy(scores, y) == pytest.approx(0.75)
    # AP per present label: violin: positive ranked 1st of 2 scored 0.9 -> ties count against: 0.5;
    # flute 1.0 (only positive, highest flute score); trumpet 1.0; drums 1.0
    assert mean_average_precision(scores, y) == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    row = part_metrics(scores, y)
    assert row["clips"] == 4 and set(row["per_label_f1"]) == {"violin", "flute", "trumpet", "drums"}
    assert row["per_label_f1"]["violin"] == pytest.approx(2 / 3)  # 1 TP, 1 FP
    assert row["per_label_f1"]["trumpet"] == 0.0
    # a mixture counts as a top-1 hit when the top prediction is any instrument present
    mix = multi_hot([["cello", "flute"]])
    assert topk_accuracy(_scores([{"flute": 0.9, "oboe": 0.5}]), mix, 1) == 1.0


@pytest.fixture(scope="module")
def mfcc_dir(eval_dataset, tmp_path_factory):
    model, record = fit_mfcc(MfccArguments(dataset=eval_dataset, threads=0))
    return str(model.save(tmp_path_factory.mktemp("mfcc"), record))


def test_mfcc_baseline_end_to_end(mfcc_dir, eval_dataset):
    from finetune.data.clips import load_clips

    model = MfccBaseline.load(mfcc_dir)
    with np.load(f"{mfcc_dir}/model.npz", allow_pickle=False) as z:  # no pickle anywhere
        assert z["coef"].shape == (len(LABELS), 160)
    clips = load_clips(eval_dataset, "validation")
    scores = score_clips(model, clips.waves)  # scored by the library's analysis, as every model
    assert scores.shape == (len(clips), len(LABELS)) and np.all((scores >= 0) & (scores <= 1))
    y = multi_hot(clips.labels)
    solo = y.sum(axis=1) == 1
    assert topk_accuracy(scores[solo], y[solo], 1) >= 0.75  # four distinct tones are easy
    assert topk_accuracy(scores[solo], y[solo], 3) == 1.0
    assert scores[:, LABEL_INDEX["violin"]].max() < 0.01  # never seen in training


def test_evaluate_writes_one_table_for_every_model(eval_dataset, tiny_whisper, mfcc_dir, tmp_path):
    ast = make_ast(tmp_path / "ast", AstArguments(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                  intermediate_size=32, num_mel_bins=32))
    card = tmp_path / "README.md"
    card.write_text(f"# model\n\n{CARD_START}\nSTALE TABLE\n{CARD_END}\n\nafter\n")
    out = tmp_path / "results"
    assert evaluate_main(["--dataset", eval_dataset, "--whisper", tiny_whisper, "--ast", str(ast),
                          "--mfcc", mfcc_dir, "--out", str(out), "--card", str(card)]) == 0
    md = (out / "results.md").read_text()
    for title in ("MFCC statistics + logistic regression", "small AST from scratch", "fine-tuned Whisper-base"):
        for part in ("validation solo", "validation mixtures", "real (all)", "real-eval only"):
            assert f"| {title} | {part} |" in md
    assert "Per-label F1" in md and "| flute |" in md and "python -m finetune.evaluation.evaluate" in md
    results = json.loads((out / "results.json").read_text())
    rows = results["models"]["whisper"]["rows"]
    assert rows["validation solo"]["clips"] == 4 and rows["validation mixtures"]["clips"] == 1
    assert rows["real (all)"]["clips"] == 4 and rows["real-eval only"]["clips"] == 2
    assert set(rows["validation solo"]["per_label_f1"]) == {"flute", "cello", "piano", "tuba"}
    assert results["machine"]["torch"]
    text = card.read_text()
    assert "STALE TABLE" not in text and "after" in text and text.count(CARD_START) == 1
    assert "| fine-tuned Whisper-base |" in text

    # a missing model is skipped with a note, not an error
    assert evaluate_main(["--dataset", eval_dataset, "--whisper", str(tmp_path / "nope"), "--ast", "",
                          "--mfcc", mfcc_dir, "--out", str(tmp_path / "r2"), "--limit", "3"]) == 0
    md2 = (tmp_path / "r2" / "results.md").read_text()
    assert "Not evaluated" in md2 and "| fine-tuned Whisper-base |" not in md2


def test_carry_over_keeps_a_missing_models_rows_only_when_scored_on_the_same_clips(eval_dataset, mfcc_dir, tmp_path):
    out = tmp_path / "results"
    base = ["--dataset", eval_dataset, "--whisper", "", "--ast", "", "--out", str(out)]

    def run(*extra: str) -> dict:
        assert evaluate_main(base + list(extra)) == 0
        return json.loads((out / "results.json").read_text())

    first = run("--mfcc", mfcc_dir)
    carried = run("--mfcc", str(tmp_path / "gone"), "--carry_over")
    assert carried["models"]["mfcc"]["rows"] == first["models"]["mfcc"]["rows"]
    assert carried["models"]["mfcc"]["carried_over_from"] == first["date"]
    md = (out / "results.md").read_text()
    assert "| MFCC statistics + logistic regression | validation solo |" in md
    assert "Carried over unchanged" in md and first["date"] in md
    assert run("--mfcc", "", "--carry_over")["models"]["mfcc"]["carried_over_from"] == first["date"]  # kept

    # a file written before fingerprints: matched on dataset, subset and clip counts
    legacy = {k: v for k, v in first.items() if k not in ("clips_sha1", "clips_sha1_by_split")}
    (out / "results.json").write_text(json.dumps(legacy))
    assert "mfcc" in run("--mfcc", "", "--carry_over")["models"]
    (out / "results.json").write_text(json.dumps(legacy))
    assert "mfcc" not in run("--mfcc", "", "--carry_over", "--limit", "3")["models"]

    # other clips, or no flag: nothing is carried
    run("--mfcc", mfcc_dir)
    other = run("--mfcc", "", "--carry_over", "--limit", "3")
    assert "mfcc" not in other["models"] and "mfcc" in other["skipped"]
    run("--mfcc", mfcc_dir)
    assert "mfcc" not in run("--mfcc", "")["models"]


def test_carry_over_keeps_rows_of_the_splits_a_newer_build_shares(eval_dataset, mfcc_dir, tmp_path):
    import datasets

    out = tmp_path / "results"
    assert evaluate_main(["--dataset", eval_dataset, "--whisper", "", "--ast", "", "--mfcc", mfcc_dir,
                          "--out", str(out)]) == 0
    first = json.loads((out / "results.json").read_text())
    newer = datasets.load_from_disk(eval_dataset)
    newer["real_heldout"] = newer["validation"].select(range(2))  # a split the first run did not have
    newer.save_to_disk(str(tmp_path / "newer"))
    assert evaluate_main(["--dataset", str(tmp_path / "newer"), "--whisper", "", "--ast", "", "--mfcc", "",
                          "--out", str(out), "--carry_over"]) == 0
    carried = json.loads((out / "results.json").read_text())["models"]["mfcc"]
    assert carried["rows"] == first["models"]["mfcc"]["rows"] and carried["carried_over_from"] == first["date"]


def test_carry_over_survives_a_second_build_that_changes_a_split_the_carried_model_never_scored(
        eval_dataset, mfcc_dir, tmp_path):
    import datasets

    out = tmp_path / "results"
    base = ["--whisper", "", "--ast", "", "--out", str(out)]
    assert evaluate_main(["--dataset", eval_dataset, "--mfcc", mfcc_dir] + base) == 0
    first = json.loads((out / "results.json").read_text())
    for n, name in ((2, "b1"), (3, "b2")):  # two builds in turn, each with another real_heldout
        build = datasets.load_from_disk(eval_dataset)
        build["real_heldout"] = build["validation"].select(range(n))
        build.save_to_disk(str(tmp_path / name))
        assert evaluate_main(["--dataset", str(tmp_path / name), "--mfcc", "", "--carry_over"] + base) == 0
        result = json.loads((out / "results.json").read_text())
        assert result["models"]["mfcc"]["rows"] == first["models"]["mfcc"]["rows"], name
        assert result["models"]["mfcc"]["carried_over_from"] == first["date"]
    changed = datasets.load_from_disk(eval_dataset)
    changed["validation"] = changed["validation"].select(range(len(changed["validation"]) - 1))  # one it scored
    changed.save_to_disk(str(tmp_path / "b3"))
    assert evaluate_main(["--dataset", str(tmp_path / "b3"), "--mfcc", "", "--carry_over"] + base) == 0
    assert "mfcc" not in json.loads((out / "results.json").read_text())["models"]
