"""finetune.average: a uniform weight average of same-architecture models, refused for anything else."""

import json

import pytest
import torch
from safetensors.torch import load_file

from finetune.average import average, main
from tiny_model import make_tiny_ast, make_tiny_whisper


def test_average_is_the_mean_of_the_weights_and_loads_as_a_pipeline(tmp_path):
    a = make_tiny_whisper(tmp_path / "a", seed=0)
    b = make_tiny_whisper(tmp_path / "b", seed=1)
    (b / "training_run.json").write_text(json.dumps({"train": {"seed": 1}}))
    out = average([a, b], tmp_path / "soup")
    wa, wb, w = (load_file(str(p / "model.safetensors")) for p in (a, b, out))
    key = "classifier.weight"
    assert not torch.equal(wa[key], wb[key])
    torch.testing.assert_close(w[key], (wa[key] + wb[key]) / 2)
    assert w[key].dtype == wa[key].dtype and w.keys() == wa.keys()
    written = json.loads((out / "averaged_from.json").read_text())
    record = written["averaged"]
    assert written["out"] == str(tmp_path / "soup")
    assert [r["path"] for r in record] == [str(a), str(b)] and record[0]["run"] is None
    assert record[1]["run"] == {"train": {"seed": 1}}

    from transformers import pipeline

    clf = pipeline("audio-classification", model=str(out))
    assert len(clf(torch.zeros(16000).numpy(), top_k=None)) == clf.model.config.num_labels


def test_other_architectures_or_labels_are_refused(tmp_path):
    a = make_tiny_whisper(tmp_path / "a", window_seconds=3)
    shorter = make_tiny_whisper(tmp_path / "short", window_seconds=2)
    with pytest.raises(ValueError, match="architecture"):
        average([a, shorter], tmp_path / "x")
    other = make_tiny_ast(tmp_path / "ast", ["yes", "no"])
    with pytest.raises(ValueError, match="labels"):
        average([a, other], tmp_path / "y")
    with pytest.raises(ValueError, match="two"):
        average([a], tmp_path / "z")
    assert main(["--out", str(tmp_path / "cli"), "--models", str(a), str(shorter)]) == 2
    assert not (tmp_path / "cli" / "model.safetensors").exists()


def test_an_average_of_averages_keeps_the_inner_records(tmp_path):
    a = make_tiny_whisper(tmp_path / "a", seed=0)
    b = make_tiny_whisper(tmp_path / "b", seed=1)
    (a / "training_run.json").write_text(json.dumps({"train": {"seed": 0}}))
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "training_run.json").write_text("{}")  # a run saved there before
    inner = average([a, b], tmp_path / "inner")
    assert not (inner / "training_run.json").exists()
    outer = json.loads((average([inner, a], tmp_path / "outer") / "averaged_from.json").read_text())
    assert outer["averaged"][0]["run"]["averaged"][0]["run"] == {"train": {"seed": 0}}
