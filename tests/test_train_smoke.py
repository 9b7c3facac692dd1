"""Training (finetune.train): tiny base, tiny data, a few steps, a loadable model out; recipes, losses, groups."""

import json
import re
from pathlib import Path

import datasets
import numpy as np
import pytest

from conftest import tone
from finetune.data.schema import features
from finetune.train import (DataArguments, ModelArguments, TrainArguments, family_logits, family_targets,
                            recipe_args, train)
from instrusense.taxonomy import FAMILIES, LABEL_INDEX, LABELS


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-data")
    rows = {"audio": [], "labels": [], "source": [], "kind": [], "activity": [], "origin": []}
    for i, (label, freq) in enumerate([("flute", 880.0), ("cello", 110.0), ("piano", 440.0), ("tuba", 55.0)] * 3):
        rows["audio"].append({"array": tone(4.0, 16000, freq=freq)[:, 0], "sampling_rate": 16000})
        rows["labels"].append([label])
        rows["source"].append("synthetic")
        rows["kind"].append("note")
        rows["activity"].append([[1.0] * 40])
        rows["origin"].append("rendered")
    ds = datasets.Dataset.from_dict(rows, features=features())
    datasets.DatasetDict({"train": ds, "validation": ds.select(range(4))}).save_to_disk(str(out))
    return str(out)


@pytest.mark.slow
def test_training_writes_a_pipeline_loadable_model(tiny_whisper, tiny_dataset, tmp_path):
    out = tmp_path / "model"
    result = train(ModelArguments(base=tiny_whisper, window_seconds=3.0, projector_size=8),
                   DataArguments(dataset=tiny_dataset, eval_splits="validation"),
                   TrainArguments(output_dir=str(out), run_dir=str(tmp_path / "run"), max_steps=4, batch_size=4,
                                  eval_every=2))
    assert [h["step"] for h in result["history"]] == [2, 4]
    assert np.isfinite(result["history"][-1]["loss"])
    config = json.loads((out / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(LABELS))] == list(LABELS)
    assert config["problem_type"] == "multi_label_classification"
    assert (out / "preprocessor_config.json").is_file() and (out / "model.safetensors").is_file()

    from transformers import pipeline
    classify = pipeline("audio-classification", model=str(out))
    top = classify(tone(3.0, 16000)[:, 0], top_k=3)
    assert len(top) == 3 and {t["label"] for t in top} <= set(LABELS)

    # resuming a finished run does no further steps
    again = train(ModelArguments(base=tiny_whisper, window_seconds=3.0, projector_size=8),
                  DataArguments(dataset=tiny_dataset, eval_splits="validation"),
                  TrainArguments(output_dir=str(out), run_dir=str(tmp_path / "run"), max_steps=4, batch_size=4,
                                 eval_every=2))
    assert len(again["history"]) == 2


@pytest.mark.slow
def test_a_resumed_run_reports_wall_time_for_the_whole_run(tiny_whisper, tiny_dataset, tmp_path):
    import torch

    def run(max_steps):
        return train(ModelArguments(base=tiny_whisper, window_seconds=3.0, projector_size=8),
                     DataArguments(dataset=tiny_dataset, eval_splits="validation"),
                     TrainArguments(output_dir=str(tmp_path / "model"), run_dir=str(tmp_path / "run"),
                                    max_steps=max_steps, batch_size=4, eval_every=2))

    run(2)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    state["history"][-1]["elapsed_s"] = 10_000.0  # as if the first part had taken hours
    torch.save(state, ckpt)
    history = run(4)["history"]
    assert [h["step"] for h in history] == [2, 4]
    assert history[-1]["elapsed_s"] > 10_000.0
    card = (tmp_path / "model" / "README.md").read_text()
    assert int(re.search(r"Wall time: (\d+) min", card).group(1)) >= 167


@pytest.mark.slow
def test_init_from_starts_from_a_saved_models_weights_and_refuses_another_architecture(tiny_whisper, tiny_dataset,
                                                                                       tmp_path):
    from safetensors.torch import load_file

    def run(name, projector_size=8, **kw):
        train(ModelArguments(base=tiny_whisper, window_seconds=3.0, projector_size=projector_size, **kw),
              DataArguments(dataset=tiny_dataset, eval_splits="validation"),
              TrainArguments(output_dir=str(tmp_path / name), run_dir=str(tmp_path / f"run-{name}"), max_steps=2,
                             batch_size=4, eval_every=2, **({"head_lr": 0.0, "encoder_lr": 0.0} if kw else {})))
        return load_file(str(tmp_path / name / "model.safetensors"))

    first = run("first")
    # at zero learning rates the continued model is the one it started from, head included;
    # a fresh head would have been re-initialised from data
    again = run("again", init_from=str(tmp_path / "first"))
    assert set(again) == set(first)
    assert all(np.allclose(again[k].float().numpy(), first[k].float().numpy(), atol=1e-3) for k in first)
    record = json.loads((tmp_path / "again" / "training_run.json").read_text())
    assert record["parent"]["step"] == 2 and record["parent"]["elapsed_s"] > 0  # the card lists both stages
    assert "Stage 2 of 2" in (tmp_path / "again" / "README.md").read_text()
    with pytest.raises(ValueError, match="does not match"):
        run("other", projector_size=4, init_from=str(tmp_path / "first"))
    # a restart from a weight average records the averaged runs as its parent
    from finetune.average import average

    average([tmp_path / "first", tmp_path / "again"], tmp_path / "soup")
    run("from-soup", init_from=str(tmp_path / "soup"))
    record = json.loads((tmp_path / "from-soup" / "training_run.json").read_text())
    assert [a["run"]["step"] for a in record["parent"]["averaged"]] == [2, 2]
    assert "python -m finetune.average" in (tmp_path / "from-soup" / "README.md").read_text()
    # trained over the average it started from (as over models/instrusense): only the new record remains
    run("soup", init_from=str(tmp_path / "soup"))
    assert not (tmp_path / "soup" / "averaged_from.json").exists()
    assert "averaged" in json.loads((tmp_path / "soup" / "training_run.json").read_text())["parent"]


def test_family_scores_follow_the_taxonomy():
    import torch

    logits = torch.full((2, len(LABELS)), -20.0)
    logits[0, LABEL_INDEX["synthesizer"]] = 3.0
    logits[1, LABEL_INDEX["viola"]] = 1.0
    logits[1, LABEL_INDEX["cello"]] = 1.0  # two labels of one family: a higher family score than either
    fams = list(FAMILIES)
    scores = family_logits(logits)
    assert scores.shape == (2, len(FAMILIES))
    assert scores[0].argmax().item() == fams.index("electronic")
    assert scores[1, fams.index("bowed_string")].item() == pytest.approx(1.0 + np.log(2), abs=1e-5)
    targets = torch.zeros((1, len(LABELS)))
    targets[0, LABEL_INDEX["oboe"]] = targets[0, LABEL_INDEX["drums"]] = 1.0
    assert [fams[i] for i in np.flatnonzero(family_targets(targets)[0].numpy())] == ["woodwind", "percussion"]


@pytest.mark.slow
def test_family_loss_adds_to_the_label_loss(tiny_whisper, tiny_dataset, tmp_path):
    def first_loss(weight: float) -> float:
        run = tmp_path / f"run-{weight}"
        result = train(ModelArguments(base=tiny_whisper, window_seconds=3.0, projector_size=8),
                       DataArguments(dataset=tiny_dataset, eval_splits="validation"),
                       TrainArguments(output_dir=str(run / "model"), run_dir=str(run), max_steps=1, batch_size=4,
                                      eval_every=1, family_loss=weight))
        return result["history"][0]["loss"]

    plain, with_families = first_loss(0.0), first_loss(1.0)
    assert np.isfinite(with_families) and with_families > plain + 0.01  # same weights and batch, one more term




def test_head_and_encoder_learn_at_their_own_rates_and_a_zero_rate_freezes_the_encoder(tiny_whisper):
    from finetune.modeling import build_classifier, param_groups

    model, _ = build_classifier(tiny_whisper, window_seconds=3.0)
    names = {id(p): n for n, p in model.named_parameters()}
    rate = {names[id(p)]: g["lr"] for g in param_groups(model, 1e-3, 1e-4, 0.0) for p in g["params"]}
    assert rate["classifier.weight"] == 1e-3 and rate["encoder.layers.0.fc1.weight"] == 1e-4
    assert len(rate) == sum(p.requires_grad for p in model.parameters())
    frozen = param_groups(model, 1e-3, 0.0, 0.0)
    assert len(frozen) == 1 and not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("encoder."))


def test_a_recipe_file_sets_the_arguments_and_flags_after_it_override_them(tmp_path):
    from transformers import HfArgumentParser

    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"_about": "ignored", "base": "b", "mix_fraction": 0.5, "pitch_shift_drums": False,
                                  "max_steps": 10, "encoder_layers": None}))
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainArguments))
    m, d, t = parser.parse_args_into_dataclasses(args=recipe_args([str(recipe), "--max_steps", "3"]))
    assert (m.base, d.mix_fraction, d.pitch_shift_drums, t.max_steps, m.encoder_layers) == ("b", 0.5, False, 3, None)


@pytest.mark.parametrize("recipe", sorted((Path(__file__).parents[1] / "finetune" / "recipes").glob("*.json")),
                         ids=lambda p: p.name)
def test_the_shipped_recipes_name_only_arguments_the_training_command_has(recipe):
    from transformers import HfArgumentParser

    parser = HfArgumentParser((ModelArguments, DataArguments, TrainArguments))
    m, d, t = parser.parse_args_into_dataclasses(args=recipe_args([str(recipe)]))
    assert m.encoder_layers == 3 and d.mix_fraction == 0.5 and not d.pitch_shift_drums


def test_the_defaults_are_the_shipped_restart_recipe():
    """`python -m finetune.train` without flags trains as the shipped model's later stages did; the recipe adds
    only what is the caller's: the data, Whisper-base's depth, the evaluation subset and the threads."""
    from dataclasses import asdict

    from transformers import HfArgumentParser

    parser = HfArgumentParser((ModelArguments, DataArguments, TrainArguments))
    recipe = Path(__file__).parents[1] / "finetune" / "recipes" / "restart.json"
    from_recipe = parser.parse_args_into_dataclasses(args=recipe_args([str(recipe)]))
    defaults = (ModelArguments(), DataArguments(), TrainArguments())
    differ = {k for r, d in zip(from_recipe, defaults) for k, v in asdict(r).items() if asdict(d)[k] != v}
    assert differ == {"dataset", "encoder_layers", "eval_limit", "threads"}
    d, t = defaults[1], defaults[2]
    assert (d.mix_fraction, d.pitch_shift, d.pitch_shift_drums, t.family_loss) == (0.5, 2.0, False, 1.0)
