"""finetune.records: which record a model directory holds, and which training run an average ends with."""

import json

from finetune.records import last_trained, read_record


def test_a_run_record_is_read_before_an_average_record_and_none_when_neither(tmp_path):
    assert read_record(tmp_path) is None
    (tmp_path / "averaged_from.json").write_text(json.dumps({"averaged": []}))
    assert read_record(tmp_path) == {"averaged": []}
    (tmp_path / "training_run.json").write_text(json.dumps({"train": {"seed": 2}}))
    assert read_record(tmp_path) == {"train": {"seed": 2}}


def test_the_last_trained_run_of_an_average_is_its_last_model_with_a_record_even_when_nested():
    a, b = {"train": {"seed": 0}}, {"train": {"seed": 1}}
    assert last_trained(a) is a
    assert last_trained({"averaged": [{"path": "a", "run": a}, {"path": "x", "run": None}]}) is a
    inner = {"averaged": [{"path": "a", "run": a}, {"path": "b", "run": b}]}
    assert last_trained({"averaged": [{"path": "a", "run": a}, {"path": "in", "run": inner}]}) is b
    assert last_trained({"averaged": [{"path": "x", "run": None}]}) is None
