"""finetune.model_card: the card describes the recipe the run actually used, its lineage and its metrics."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from finetune.model_card import CARD_END, CARD_START, render_card, update_card, write_model_card
from finetune.records import last_trained, read_record

SHIPPED = Path(__file__).parents[1] / "models" / "instrusense"


def _run(**data_extra) -> dict:
    """The arguments of the shipped model's (last) training run, as one single-stage run."""
    run = copy.deepcopy(last_trained(read_record(SHIPPED)))
    run.pop("parent", None)
    run["data"] = {**run["data"], **data_extra}
    return run


HISTORY = [{"step": 500, "loss": 0.2, "elapsed_s": 600.0, "validation": {"top1": 0.5, "mAP": 0.5},
            "real": {"top1": 0.4, "mAP": 0.4}}]


@pytest.mark.parametrize("option, value, phrase", [
    ("pitch_shift", 2.0, "up to 2 semitones faster or slower"),
    ("mix_fraction", 0.5, "50% get crops of 1–2 other training clips mixed in"),
])
def test_optional_augmentations_are_described_only_when_used(option, value, phrase):
    off = render_card(_run(**{option: 0.0}), 500, HISTORY, "cmd")
    on = render_card(_run(**{option: value}), 500, HISTORY, "cmd")
    assert phrase not in off and phrase in on


def test_family_loss_is_described_only_when_used():
    run = _run()
    run["train"] = {**run["train"], "family_loss": 0.0}
    off = render_card(run, 500, HISTORY, "cmd")
    run["train"] = {**run["train"], "family_loss": 0.5}
    on = render_card(run, 500, HISTORY, "cmd")
    assert "BCE over the" not in off and "plus 0.5× a BCE over the 8 families" in on
    assert "family term" not in off and "the loss includes the family term" in on


def test_varispeed_sentence_says_whether_drums_were_shifted():
    pitched = render_card(_run(pitch_shift=2.0, pitch_shift_drums=False), 500, HISTORY, "cmd")
    assert "every example without drums is played" in pitched
    every = render_card(_run(pitch_shift=2.0, pitch_shift_drums=True), 500, HISTORY, "cmd")
    assert "every example is played" in every


def test_shipped_card_recipe_matches_its_run():
    record = read_record(SHIPPED)
    run = last_trained(record)
    card = render_card(record, run.get("step"), HISTORY, "python -m finetune.train " + " ".join(run["argv"]))
    assert f"{run['train']['max_steps']} steps, seed {run['train']['seed']}" in card and "--mix_fraction" in card
    assert ("mixed in" in card) == bool(run["data"].get("mix_fraction"))
    assert f"`{run['data']['dataset']}`, built by" in card
    assert ModelCard(card).data.base_model == "openai/whisper-base"
    if "averaged" in record:  # the lineage points at the record beside the card, and the average is the last command
        assert "averaged_from.json" in card
        commands = card[card.index("```bash"):card.index("```", card.index("```bash") + 3)]
        paths = [a["path"] for a in record["averaged"]]
        assert commands.rstrip().endswith(f"python -m finetune.average --out {record['out']} --models " + " ".join(paths))


def test_a_continued_run_lists_every_stages_command_and_the_total_wall_time():
    first = {**_run(), "step": 6000, "elapsed_s": 7200.0, "argv": ["--max_steps", "6000"]}
    first["train"] = {**first["train"], "max_steps": 6000, "seed": 0}
    second = {**_run(), "parent": first, "argv": ["--init_from", "models/instrusense"]}
    second["train"] = {**second["train"], "max_steps": 2000, "seed": 1}
    card = render_card(second, 2000, HISTORY, "python -m finetune.train --init_from models/instrusense")
    assert "Stage 2 of 2" in card
    assert "python -m finetune.train --max_steps 6000\npython -m finetune.train --init_from" in card
    assert "10 min for this stage (130 min with every stage behind it)" in card
    single = render_card(first, 6000, HISTORY, "cmd")
    assert "Stage" not in single and "10 min for this stage," in single and "average" not in single


def test_a_restart_from_a_weight_average_lists_the_averaged_runs_commands_once():
    base = {**_run(), "step": 6000, "elapsed_s": 7200.0, "argv": ["--max_steps", "6000"]}
    base["train"] = {**base["train"], "max_steps": 6000, "seed": 0}
    a = {**_run(), "parent": base, "step": 2000, "argv": ["--seed", "4", "--init_from", "models/instrusense"]}
    a["train"] = {**a["train"], "max_steps": 2000, "seed": 4}
    b = {**a, "argv": ["--seed", "4", "--dataset", "other", "--init_from", "models/instrusense"]}
    last = {**_run(), "parent": {"averaged": [{"path": "runs/a", "run": a}, {"path": "runs/b", "run": b}]},
            "argv": ["--init_from", "runs/soup"]}
    last["model"] = {**last["model"], "init_from": "runs/soup"}
    card = render_card(last, 2000, HISTORY, "python -m finetune.train --init_from runs/soup")
    assert "Stage 2 of 2" in card
    commands = card[card.index("```bash"):]
    assert commands.count("--max_steps 6000") == 1  # the shared first stage once
    # the average was not told where it went, so its directory is where the restart read it
    assert "python -m finetune.average --out runs/soup --models runs/a runs/b\npython -m finetune.train --init_from runs/soup" in commands


def test_a_shipped_average_describes_its_last_model_and_ends_with_the_average():
    first = {**_run(), "step": 6000, "elapsed_s": 7200.0, "argv": ["--max_steps", "6000"]}
    first["train"] = {**first["train"], "max_steps": 6000, "seed": 0}
    restart = {**_run(), "parent": first, "step": 2000, "elapsed_s": 1800.0, "argv": ["--seed", "7"]}
    restart["train"] = {**restart["train"], "max_steps": 2000, "seed": 7}
    record = {"out": "runs/avg", "averaged": [{"path": "models/instrusense", "run": first},
                                              {"path": "runs/r/model", "run": restart}]}
    card = render_card(record, 2000, HISTORY, "ignored: the average's commands come from its record")
    assert "2000 steps, seed 7" in card and "uniform average of 2 fine-tuned models" in card
    commands = card[card.index("```bash"):]
    assert commands.count("--max_steps 6000") == 1 and "ignored" not in commands
    assert "--seed 7\npython -m finetune.average --out runs/avg --models models/instrusense runs/r/model\n```" in commands
    assert "(`finetune.average`):\n`models/instrusense` and `runs/r/model`, each with its own records" in card
    # written elsewhere and copied into the model folder: the commands end with the copy
    shipped = render_card(record, 2000, HISTORY, "cmd", model_dir="models/instrusense")
    assert "--models models/instrusense runs/r/model\ncp runs/avg/* models/instrusense/\n```" in shipped
    assert "cp runs/avg" not in render_card(record, 2000, HISTORY, "cmd", model_dir="runs/avg")
    # an average of averages says how many each input holds
    nested = {"out": "runs/half", "averaged": [{"path": "models/instrusense", "run": first},
                                               {"path": "runs/avg", "run": record}]}
    assert "`models/instrusense` and `runs/avg` (itself an average of 2)" in render_card(nested, 2000, HISTORY, "cmd")
    # wall time: this stage (10 min of HISTORY) plus every other averaged stage once (120 min)
    assert "10 min for this stage (130 min with every stage behind the average)" in card
    # the last averaged model also stands in another's lineage (as a copy): its time is counted once
    inner = {"averaged": [{"path": "runs/r/model", "run": restart}, {"path": "first", "run": copy.deepcopy(first)}]}
    assert "(40 min with every stage behind the average)" in render_card(inner, 6000, HISTORY, "cmd")
    with pytest.raises(ValueError, match="training record"):
        render_card({"averaged": [{"path": "a", "run": None}]}, 1, HISTORY, "cmd")


RESULTS = {"models": {"whisper": {"rows": {"real-eval only": {"top1": 0.62346, "mAP": 0.75}}}}}


def test_an_evaluation_fills_the_section_and_the_model_index_and_a_new_card_keeps_both(tmp_path):
    write_model_card(tmp_path, _run(), 500, HISTORY, ["--seed", "0"])
    assert update_card(tmp_path / "README.md", "## Evaluation\n\nTABLE", RESULTS)
    card = ModelCard.load(tmp_path / "README.md")
    assert f"{CARD_START}\n## Evaluation\n\nTABLE\n{CARD_END}" in card.text
    got = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert got == {("real-eval only", "accuracy"): 0.6235, ("real-eval only", "map"): 0.75}
    write_model_card(tmp_path, _run(), 1000, HISTORY, ["--seed", "1"])  # a new run over the same folder
    again = ModelCard.load(tmp_path / "README.md")
    assert "TABLE" in again.text and "--seed 1" in again.text
    assert len(again.data.eval_results) == 2
