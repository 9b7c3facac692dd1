"""The dataset build end to end on a tiny render: DatasetDict, columns, disjoint sources, card."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fluidsynth")
datasets = pytest.importorskip("datasets")

from finetune.data.build import build  # noqa: E402
from finetune.data.config import BuildConfig  # noqa: E402
from finetune.data.sources import SOURCES  # noqa: E402
from instrusense.taxonomy import LABEL_INDEX  # noqa: E402

SMALL = ("timgm6mb", "sf_gmbank")
pytestmark = pytest.mark.skipif(not all(Path(SOURCES[s].path).is_file() for s in SMALL),
                                reason="timgm6mb / csound SoundFonts not installed")
REAL_EVAL = Path(__file__).resolve().parents[1].parent / "shared" / "real-eval"
CLIP = 2.0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("instruments")
    build(BuildConfig(out=str(out), hours=60 * CLIP / 3600, seed=0, clip_seconds=CLIP, holdout=["sf_gmbank"],
                      sources=list(SMALL), val_fraction=0.2, no_real=True, quiet=True))
    return out


def _decode(value) -> tuple[np.ndarray, int]:
    samples = value.get_all_samples()
    return samples.data.numpy(), samples.sample_rate


@pytest.mark.slow
def test_saved_dataset_opens_with_splits_and_columns(built):
    dd = datasets.load_from_disk(str(built))
    assert set(dd) == {"train", "validation"}
    assert len(dd["train"]) + len(dd["validation"]) == 60
    for split in dd.values():
        assert set(split.column_names) == {"audio", "labels", "source", "kind", "activity", "origin"}
        assert split.features["audio"].sampling_rate == 16000


@pytest.mark.slow
def test_clips_have_length_level_labels_and_activity(built):
    dd = datasets.load_from_disk(str(built))
    for split in dd.values():
        for row in split:
            x, sr = _decode(row["audio"])
            assert sr == 16000 and x.shape == (1, int(CLIP * sr))
            peak = np.abs(x).max()
            assert 0.05 < peak < 1.0, "silent or clipped"
            assert row["labels"] and all(l in LABEL_INDEX for l in row["labels"])
            assert len(row["labels"]) == len(set(row["labels"]))
            assert row["kind"] in {"note", "phrase", "chord", "drums", "hits", "mixture"}
            assert (len(row["labels"]) >= 2) == (row["kind"] == "mixture")
            assert len(row["activity"]) == len(row["labels"])
            for act in row["activity"]:
                assert len(act) == int(CLIP * 10) and set(act) <= {0.0, 1.0} and sum(act) > 0


@pytest.mark.slow
def test_splits_are_disjoint_by_source(built):
    dd = datasets.load_from_disk(str(built))
    assert set(dd["train"]["source"]) == {"timgm6mb"}
    assert set(dd["validation"]["source"]) == {"sf_gmbank"}


@pytest.mark.slow
def test_build_is_deterministic(built, tmp_path):
    again = tmp_path / "again"
    build(BuildConfig(out=str(again), hours=60 * CLIP / 3600, seed=0, clip_seconds=CLIP, holdout=["sf_gmbank"],
                      sources=list(SMALL), val_fraction=0.2, no_real=True, quiet=True))
    a, b = datasets.load_from_disk(str(built)), datasets.load_from_disk(str(again))
    for split in a:
        assert a[split]["labels"] == b[split]["labels"]
        for i in (0, len(a[split]) - 1):
            np.testing.assert_array_equal(_decode(a[split][i]["audio"])[0], _decode(b[split][i]["audio"])[0])


@pytest.mark.slow
def test_extra_one_shots_follow_the_same_clips(built, tmp_path):
    more = tmp_path / "one-shots"
    build(BuildConfig(out=str(more), hours=60 * CLIP / 3600, seed=0, clip_seconds=CLIP, holdout=["sf_gmbank"],
                      sources=list(SMALL), val_fraction=0.2, no_real=True, quiet=True, one_shots=5))
    a, b = datasets.load_from_disk(str(built)), datasets.load_from_disk(str(more))
    n = len(a["train"])
    assert len(b["train"]) == n + 5 and len(b["validation"]) == len(a["validation"])
    assert b["train"]["labels"][:n] == a["train"]["labels"] and b["validation"]["labels"] == a["validation"]["labels"]
    for split, i in (("train", 0), ("train", n - 1), ("validation", 0)):
        np.testing.assert_array_equal(_decode(a[split][i]["audio"])[0], _decode(b[split][i]["audio"])[0])
    extra = b["train"].select(range(n, n + 5))
    assert extra["kind"] == ["hits"] * 5 and extra["labels"] == [["drums"]] * 5
    assert set(extra["source"]) == {"timgm6mb"}
    for row in extra:
        assert np.abs(_decode(row["audio"])[0]).max() > 0.05


def test_one_shots_must_not_be_negative(tmp_path):
    with pytest.raises(ValueError, match="one_shots"):
        build(BuildConfig(out=str(tmp_path), hours=0.001, sources=list(SMALL), holdout=["sf_gmbank"], no_real=True,
                          quiet=True, one_shots=-1))


@pytest.mark.slow
def test_card_reports_measurements(built):
    card = (built / "README.md").read_text()
    for needle in ("real time", "size per hour", "Clips per label and split", "Held-out library",
                   "independent training sources", "timgm6mb", "sf_gmbank"):
        assert needle in card, needle


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_negatives_join_train_and_make_a_held_out_split(tmp_path):
    from finetune.data.__main__ import main
    from test_data_negatives import write_tiny_fsdd

    out = tmp_path / "neg"
    assert main(["--out", str(out), "--hours", "0.001", "--clip-seconds", str(CLIP), "--sources", *SMALL,
                 "--holdout", "sf_gmbank", "--no-real", "--quiet", "--negatives", "3", "--negatives-heldout", "4",
                 "--fsdd", str(write_tiny_fsdd(tmp_path / "fsdd"))]) == 0
    dd = datasets.load_from_disk(str(out))
    assert set(dd) == {"train", "validation", "negatives"} and len(dd["negatives"]) == 4
    assert dd["train"]["kind"][-3:] == ["negative"] * 3 and "negative" not in dd["train"]["kind"][:-3]
    assert dd["negatives"]["labels"] == [[]] * 4 and set(dd["negatives"]["kind"]) == {"negative"}
    assert set(dd["negatives"]["origin"]) <= {"real", "rendered"}
    card = (out / "README.md").read_text()
    assert "Non-instrument negatives" in card and "CC-BY-SA 4.0" in card and "theo, yweweler" in card


def test_holdout_must_leave_training_sources(tmp_path):
    with pytest.raises(ValueError, match="held-out"):
        build(BuildConfig(out=str(tmp_path), hours=0.001, sources=["timgm6mb"], holdout=["timgm6mb"], no_real=True,
                          quiet=True))


@pytest.mark.skipif(not (REAL_EVAL / "labels.csv").is_file(), reason="shared/real-eval not beside the clone")
def test_real_split_loads_real_eval():
    from finetune.data.rows.real import real_eval_rows
    from finetune.data.schema import features

    rows = list(real_eval_rows(REAL_EVAL))
    assert len(rows) == 159
    ds = datasets.Dataset.from_list(rows, features=features())
    assert set(ds["source"]) == {"real-eval"} and set(ds["kind"]) == {"real"}
    assert len({l for ls in ds["labels"] for l in ls}) == 7
    x, sr = _decode(ds[0]["audio"])
    assert sr == 16000 and x.shape[0] == 1 and 0 < np.abs(x).max() <= 1.0
    assert len(ds[0]["activity"][0]) == int(np.ceil(x.shape[1] / sr * 10 - 1e-6))
    assert all(set(a) == {1.0} for acts in ds["activity"] for a in acts)


@pytest.mark.slow
def test_cli_writes_a_loadable_dataset(tmp_path):
    from finetune.data.__main__ import main

    out = tmp_path / "cli"
    assert main(["--out", str(out), "--hours", str(10 * CLIP / 3600), "--clip-seconds", str(CLIP), "--seed", "1",
                 "--sources", *SMALL, "--holdout", "sf_gmbank", "--no-real", "--quiet"]) == 0
    dd = datasets.load_from_disk(str(out))
    assert len(dd["train"]) + len(dd["validation"]) == 10
    assert (out / "README.md").is_file()
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no build leftovers
