"""finetune.model_card: the card describes the recipe the run actually used, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.model_card import render_card

SHIPPED_RUN = Path(__file__).parents[1] / "models" / "instrusense" / "training_run.json"


def _run(**data_extra) -> dict:
    run = json.loads(SHIPPED_RUN.read_text())
    run["data"] = {**run["data"], **data_extra}
    return run


HISTORY = [{"step": 500, "loss": 0.2, "elapsed_s": 600.0, "validation": {"top1": 0.5, "mAP": 0.5},
            "real": {"top1": 0.4, "mAP": 0.4}}]


@pytest.mark.parametrize("option, value, phrase", [
    ("pitch_shift", 2.0, "up to 2 semitones faster or slower"),
    ("spec_augment", True, "SpecAugment"),
])
def test_optional_augmentations_are_described_only_when_used(option, value, phrase):
    off = render_card(_run(**{option: 0.0 if option == "pitch_shift" else False}), 500, HISTORY, "cmd")
    on = render_card(_run(**{option: value}), 500, HISTORY, "cmd")
    assert phrase not in off and phrase in on


def test_varispeed_sentence_says_whether_drums_were_shifted():
    pitched = render_card(_run(pitch_shift=2.0, pitch_shift_drums=False), 500, HISTORY, "cmd")
    assert "every example without drums is played" in pitched
    every = render_card(_run(pitch_shift=2.0, pitch_shift_drums=True), 500, HISTORY, "cmd")
    assert "every example is played" in every


def test_shipped_card_recipe_matches_its_run():
    run = json.loads(SHIPPED_RUN.read_text())
    card = render_card(run, run.get("step"), HISTORY, "python -m finetune.train " + " ".join(run["argv"]))
    assert f"{run['train']['max_steps']} steps" in card and "--mix_fraction" in card
    assert ("mixed in" in card) == bool(run["data"].get("mix_fraction"))
