"""Evaluation: the metrics on hand-made scores, the MFCC baseline end to end, the one-command table."""

import json

import numpy as np
import pytest

from finetune.evaluation.baselines import AstArguments, MfccArguments, MfccBaseline, fit_mfcc, make_ast
from finetune.evaluation.evaluate import main as evaluate_main
from finetune.metrics import family_accuracy, mean_average_precision, multi_hot, part_metrics, topk_accuracy
from finetune.model_card import CARD_END, CARD_START
from finetune.scoring import score_clips
from instrusense.taxonomy import LABEL_INDEX, LABELS
from conftest import label_scores


def test_metrics_on_a_hand_made_example():
    y = multi_hot([["violin"], ["flute"], ["trumpet"], ["drums"]])
    scores = label_scores([
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
    assert topk_accuracy(label_scores([{"flute": 0.9, "oboe": 0.5}]), mix, 1) == 1.0


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
    assert evaluate_main(["--dataset", eval_dataset, "--model", f"mfcc={mfcc_dir}", "--model", f"ast={ast}",
                          "--model", f"whisper={tiny_whisper}", "--model", f"whisper_int8={tiny_whisper}:int8",
                          "--out", str(out), "--card", str(card)]) == 0
    md = (out / "results.md").read_text()
    titles = ("MFCC statistics + logistic regression", "small AST from scratch", "fine-tuned Whisper-base",
              "fine-tuned Whisper-base, int8 (the app's default on CPUs)")
    for title in titles:
        for part in ("validation solo", "validation mixtures", "real (all)", "real-eval only"):
            assert f"| {title} | {part} |" in md
    assert [md.index(f"| {t} | validation solo |") for t in titles] == sorted(md.index(f"| {t} | validation solo |")
                                                                         for t in titles)  # in --model order
    assert "beats MFCC statistics" in md and "beats small AST" in md and "beats fine-tuned" not in md
    assert "Per-label F1" in md and "| flute |" in md and "python -m finetune.evaluation.evaluate" in md
    results = json.loads((out / "results.json").read_text())
    assert list(results["models"]) == ["mfcc", "ast", "whisper", "whisper_int8"]
    assert results["models"]["whisper_int8"]["parameters"] < results["models"]["whisper"]["parameters"]  # int8 packed
    rows = results["models"]["whisper"]["rows"]
    assert rows["validation solo"]["clips"] == 4 and rows["validation mixtures"]["clips"] == 1
    assert rows["real (all)"]["clips"] == 4 and rows["real-eval only"]["clips"] == 2
    assert set(rows["validation solo"]["per_label_f1"]) == {"flute", "cello", "piano", "tuba"}
    assert results["machine"]["torch"]
    text = card.read_text()
    assert "STALE TABLE" not in text and "after" in text and text.count(CARD_START) == 1
    assert "| fine-tuned Whisper-base |" in text

    # a missing model is skipped with a note, not an error
    assert evaluate_main(["--dataset", eval_dataset, "--model", f"mfcc={mfcc_dir}", "ast=",
                          f"whisper={tmp_path / 'nope'}", "--out", str(tmp_path / "r2"), "--limit", "3"]) == 0
    md2 = (tmp_path / "r2" / "results.md").read_text()
    assert "Not evaluated" in md2 and "| fine-tuned Whisper-base |" not in md2


def test_models_are_named_on_the_command_line_and_their_kind_read_from_the_path(mfcc_dir, tiny_whisper, tmp_path):
    from finetune.evaluation.evaluate import ModelSpec, gather_models, model_kind, model_specs

    assert gather_models(["--model", "a=x", "--out", "o", "--model", "b=y:int8", "c=", "--model=d=z"]) == [
        "--out", "o", "--model", "a=x", "b=y:int8", "c=", "d=z"]
    assert gather_models(["--out", "o"]) == ["--out", "o"]
    assert model_specs(["a=x", "b=y:int8", "c="]) == [ModelSpec("a", "x"), ModelSpec("b", "y", True), ModelSpec("c", "")]
    for bad in (["x"], ["=x"], ["a=x", "a=y"]):
        with pytest.raises(ValueError):
            model_specs(bad)
    assert model_kind(mfcc_dir) == "mfcc" and model_kind(tiny_whisper) == "transformers"
    assert model_kind("openai/whisper-base") == "hub" and model_kind(str(tmp_path / "nope")) is None
    assert model_kind(str(tmp_path)) is None  # a folder with neither marker
    with pytest.raises(ValueError, match="int8"):
        evaluate_main(["--model", f"m={mfcc_dir}:int8", "--dataset", str(tmp_path / "none"), "--out", str(tmp_path)])


def test_the_tuned_model_is_chosen_by_name(eval_dataset, tiny_whisper, mfcc_dir, tmp_path):
    out = tmp_path / "results"
    assert evaluate_main(["--dataset", eval_dataset, "--model", f"mfcc={mfcc_dir}", f"candidate={tiny_whisper}",
                          "--tuned", "candidate", "--out", str(out)]) == 0
    md = (out / "results.md").read_text()
    assert "| candidate | validation solo |" in md and "### Per-label F1 (candidate," in md
    assert "validation solo: top1 beats MFCC statistics + logistic regression" in md


def test_carry_over_keeps_a_missing_models_rows_only_when_scored_on_the_same_clips(eval_dataset, mfcc_dir, tmp_path):
    out = tmp_path / "results"
    base = ["--dataset", eval_dataset, "--out", str(out)]

    def run(*extra: str) -> dict:
        assert evaluate_main(base + list(extra)) == 0
        return json.loads((out / "results.json").read_text())

    first = run("--model", f"mfcc={mfcc_dir}")
    carried = run("--model", f"mfcc={tmp_path / 'gone'}", "--carry_over")
    assert carried["models"]["mfcc"]["rows"] == first["models"]["mfcc"]["rows"]
    assert carried["models"]["mfcc"]["carried_over_from"] == first["date"]
    md = (out / "results.md").read_text()
    assert "| MFCC statistics + logistic regression | validation solo |" in md
    assert "Carried over unchanged" in md and first["date"] in md
    assert run("--model", "mfcc=", "--carry_over")["models"]["mfcc"]["carried_over_from"] == first["date"]  # kept

    # a file written before fingerprints: matched on dataset, subset and clip counts
    legacy = {k: v for k, v in first.items() if k not in ("clips_sha1", "clips_sha1_by_split")}
    (out / "results.json").write_text(json.dumps(legacy))
    assert "mfcc" in run("--model", "mfcc=", "--carry_over")["models"]
    (out / "results.json").write_text(json.dumps(legacy))
    assert "mfcc" not in run("--model", "mfcc=", "--carry_over", "--limit", "3")["models"]

    # other clips, or no flag: nothing is carried
    run("--model", f"mfcc={mfcc_dir}")
    other = run("--model", "mfcc=", "--carry_over", "--limit", "3")
    assert "mfcc" not in other["models"] and "mfcc" in other["skipped"]
    run("--model", f"mfcc={mfcc_dir}")
    assert "mfcc" not in run("--model", "mfcc=")["models"]


def test_carry_over_keeps_rows_of_the_splits_a_newer_build_shares(eval_dataset, mfcc_dir, tmp_path):
    import datasets

    out = tmp_path / "results"
    assert evaluate_main(["--dataset", eval_dataset, "--model", f"mfcc={mfcc_dir}", "--out", str(out)]) == 0
    first = json.loads((out / "results.json").read_text())
    newer = datasets.load_from_disk(eval_dataset)
    newer["real_heldout"] = newer["validation"].select(range(2))  # a split the first run did not have
    newer.save_to_disk(str(tmp_path / "newer"))
    assert evaluate_main(["--dataset", str(tmp_path / "newer"), "--model", "mfcc=", "--out", str(out),
                          "--carry_over"]) == 0
    carried = json.loads((out / "results.json").read_text())["models"]["mfcc"]
    assert carried["rows"] == first["models"]["mfcc"]["rows"] and carried["carried_over_from"] == first["date"]


def test_carry_over_survives_a_second_build_that_changes_a_split_the_carried_model_never_scored(
        eval_dataset, mfcc_dir, tmp_path):
    import datasets

    out = tmp_path / "results"
    base = ["--out", str(out)]
    assert evaluate_main(["--dataset", eval_dataset, "--model", f"mfcc={mfcc_dir}"] + base) == 0
    first = json.loads((out / "results.json").read_text())
    for n, name in ((2, "b1"), (3, "b2")):  # two builds in turn, each with another real_heldout
        build = datasets.load_from_disk(eval_dataset)
        build["real_heldout"] = build["validation"].select(range(n))
        build.save_to_disk(str(tmp_path / name))
        assert evaluate_main(["--dataset", str(tmp_path / name), "--model", "mfcc=", "--carry_over"] + base) == 0
        result = json.loads((out / "results.json").read_text())
        assert result["models"]["mfcc"]["rows"] == first["models"]["mfcc"]["rows"], name
        assert result["models"]["mfcc"]["carried_over_from"] == first["date"]
    changed = datasets.load_from_disk(eval_dataset)
    changed["validation"] = changed["validation"].select(range(len(changed["validation"]) - 1))  # one it scored
    changed.save_to_disk(str(tmp_path / "b3"))
    assert evaluate_main(["--dataset", str(tmp_path / "b3"), "--model", "mfcc=", "--carry_over"] + base) == 0
    assert "mfcc" not in json.loads((out / "results.json").read_text())["models"]
