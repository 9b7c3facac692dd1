"""The University of Iowa MIS copies in the real-library manifest (issue 38), and what the loader needed for them:
keys named by MIDI number (``Horn.mf.60.m4a``), AAC (.m4a) and AIFF samples copied to FLAC, files a copy cropped
to a few milliseconds left out, and ``include`` patterns (files at a repository's root)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

soundfile = pytest.importorskip("soundfile")

from finetune.data.engines.sfz import folder_sfz, note_number, transcode_to_flac  # noqa: E402
from finetune.data.libraries import LibrarySpec, _included, fetch, load_manifest  # noqa: E402
from conftest import git, write_sine  # noqa: E402

SR = 16000
MIS_LICENCE = "University of Iowa MIS samples, any use"


def test_note_number_takes_midi_key_numbers_as_well_as_note_names():
    assert note_number("60") == 60 == note_number("C4")
    assert note_number("34") == note_number("Bb1")
    assert note_number("As1") == note_number("A#1") == note_number("Bb1")  # "s": a sharp, as web samplers name files
    assert note_number("asharp1") == note_number("Bb1") == note_number("bflat1")  # Freesound's MTG file names
    with pytest.raises(ValueError, match="MIDI key"):
        note_number("128")


def test_folder_keyed_by_midi_number_leaves_out_files_under_min_seconds(tmp_path):
    write_sine(tmp_path / "Horn.mf.45.flac", 110.0, 1.0, SR, format="FLAC")
    write_sine(tmp_path / "Horn.mf.57.flac", 220.0, 1.0, SR, format="FLAC")
    write_sine(tmp_path / "Horn.mf.50.flac", 147.0, 0.05, SR, format="FLAC")  # cropped to nothing
    text = folder_sfz(tmp_path, "Horn.mf.*.flac", r"\.([0-9]+)\.flac$", min_seconds=0.5)
    assert sorted(int(k) for k in re.findall(r"pitch_keycenter=(\d+)", text)) == [45, 57]
    assert "Horn.mf.50" not in text
    assert len(re.findall(r"pitch_keycenter", folder_sfz(tmp_path, "*.flac", r"\.([0-9]+)\.flac$"))) == 3


def test_freesound_names_map_spelled_sharps_and_the_first_file_of_a_repeated_name(tmp_path):
    # MTG's Freesound names spell sharps out (violin-asharp4); one copy renamed cello-c-2 (C#2) to cello-c2, so the
    # first file per name, the lower Freesound id, is the natural
    write_sine(tmp_path / "355828__mtg__violin-asharp4.wav", 466.2, 1.0, SR)
    write_sine(tmp_path / "357902__mtg__cello-c2.wav", 65.4, 1.0, SR)
    write_sine(tmp_path / "357903__mtg__cello-c2.wav", 69.3, 1.0, SR)
    violin = folder_sfz(tmp_path, "*__mtg__violin-*.wav", r"__mtg__violin-([a-g](?:sharp)?[0-9])\.wav$")
    assert re.findall(r"pitch_keycenter=(\d+)", violin) == ["70"]
    cello = folder_sfz(tmp_path, "*__mtg__cello-*.wav", r"__mtg__cello-([a-g][0-9])\.wav$")
    assert re.findall(r"pitch_keycenter=(\d+) sample=\S+/(\d+)__", cello) == [("36", "357902")]


def test_aiff_and_m4a_samples_get_flac_copies(tmp_path):
    write_sine(tmp_path / "Oboe.ff.A4.stereo.aif", 440.0, 1.0, 44100, format="AIFF", subtype="PCM_24")
    assert transcode_to_flac(tmp_path, ".aif") == 1
    audio, sr = soundfile.read(tmp_path / "Oboe.ff.A4.stereo.flac")
    assert sr == 44100 and len(audio) == 44100
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg is not installed")
    pytest.importorskip("torchcodec")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=1:sample_rate=44100", "-c:a", "aac", str(tmp_path / "Horn.mf.69.m4a")],
                   check=True)
    assert transcode_to_flac(tmp_path, ".m4a") == 1
    audio, sr = soundfile.read(tmp_path / "Horn.mf.69.flac")
    assert sr == 44100 and abs(len(audio) / sr - 1.0) < 0.1
    spectrum = np.abs(np.fft.rfft(audio[4410:39690] * np.hanning(35280)))
    assert abs(np.argmax(spectrum) * sr / 35280 - 440) < 3
    assert transcode_to_flac(tmp_path, ".m4a") == 0  # once only


def test_include_patterns_match_as_git_pathspecs():
    assert _included("Tuba.ff.C3.stereo.wav", "Tuba.ff.*")
    assert not _included("Viola.pizz.ff.sulA.A4.stereo.wav", "Viola.arco.ff.*")
    assert _included("data/oboe/Oboe.ff.A4.stereo.aif", "data/oboe")
    assert not _included("data/oboe2/x.aif", "data/oboe")


def test_fetch_takes_root_files_by_pattern(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", cwd=work)
    for name in ("Tuba.ff.C3.stereo.wav", "Viola.arco.ff.sulC.C3.stereo.wav", "Viola.pizz.ff.sulC.C3.stereo.wav"):
        (work / name).write_bytes(b"audio")
    git("add", ".", cwd=work)
    git("commit", "-qm", "one", cwd=work)
    commit = git("rev-parse", "HEAD", cwd=work)
    mirrors = tmp_path / "mirrors"
    git("clone", "-q", "--bare", str(work), str(mirrors / "owner+lib" / "repo"))
    spec = LibrarySpec(name="lib", repo="owner/lib", commit=commit, licence=MIS_LICENCE, label="viola", role="train",
                       lineage="lib", folder={"path": ".", "glob": "*.wav", "note_regex": "x"},
                       include=("Viola.arco.ff.*",))
    out = tmp_path / "libs"
    assert fetch((spec,), out, mirrors) == {"owner/lib": "extracted"}
    assert sorted(p.name for p in (out / "owner+lib").glob("*.wav")) == ["Viola.arco.ff.sulC.C3.stereo.wav"]


def test_mis_entries_one_lineage_per_instrument_and_heldout_only_beside_another_train_source():
    specs = load_manifest()
    mis = [s for s in specs if s.licence == MIS_LICENCE]
    assert {s.label for s in mis} >= {"violin", "clarinet", "trombone", "acoustic_guitar", "mallet_percussion", "oboe",
                                      "trumpet", "french_horn", "viola", "tuba"}
    by_label: dict[str, set[str]] = {}
    for s in mis:
        by_label.setdefault(s.label, set()).add(s.lineage)
        assert s.folder and s.include and s.description, s.name
        assert "philharmonia" not in (s.repo + s.description).lower()
    # copies of one MIS instrument (in one or several repositories) are one lineage, so one role
    assert all(len(lineages) == 1 for lineages in by_label.values()), by_label
    assert {s.repo for s in mis if s.label == "trumpet"} == {"sinasab/ML_Project", "Smcginn/MusikyoshiApp"}
    for s in mis:
        if s.role == "heldout":  # held out only where the label trains on another real instrument
            assert any(o.label == s.label and o.role == "train" and o.lineage != s.lineage for o in specs), s.name
