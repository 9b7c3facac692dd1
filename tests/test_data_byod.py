"""Bring-your-own-data: a folder-per-label collection loads into the dataset's columns."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("datasets")

from finetune.data.rows.byod import load_audiofolder  # noqa: E402


def _write(path, seconds, sr=44100, channels=2):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t)
    sf.write(path, np.stack([x] * channels, axis=1), sr)


def test_loads_folder_per_label_with_aliases(tmp_path):
    _write(tmp_path / "cello" / "a.wav", 1.5)
    _write(tmp_path / "Violin" / "b.flac", 9.0)  # spelling mapped by to_taxonomy; cut into pieces
    _write(tmp_path / "sax" / "c.wav", 0.5, sr=16000, channels=1)
    ds = load_audiofolder(tmp_path, clip_seconds=4.0)
    assert set(ds.column_names) == {"audio", "labels", "source", "kind", "activity", "origin"}
    assert set(ds["origin"]) == {"real"}
    labels = [l[0] for l in ds["labels"]]
    assert sorted(set(labels)) == ["cello", "saxophone", "violin"]
    assert labels.count("violin") == 2
    assert set(ds["source"]) == {"user"} and set(ds["kind"]) == {"real"}
    for row in ds:
        samples = row["audio"].get_all_samples()
        assert samples.sample_rate == 16000 and samples.data.shape[0] == 1
        n = samples.data.shape[1]
        assert n <= 4 * 16000
        assert len(row["activity"][0]) == int(np.ceil(n / 16000 * 10 - 1e-6))


def test_unknown_folder_lists_valid_keys(tmp_path):
    _write(tmp_path / "kazoo" / "a.wav", 0.5)
    with pytest.raises(ValueError, match="kazoo.*french_horn"):
        load_audiofolder(tmp_path)


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "piano").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        load_audiofolder(tmp_path)
