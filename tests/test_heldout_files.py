"""finetune.evaluation.heldout_files: every file of a held-out folder library, analysed as the CLI does."""

from dataclasses import replace

import numpy as np
import pytest
from conftest import write_sine

from finetune.data.sources import LibrarySpec
from finetune.evaluation import heldout_files
from finetune.evaluation.heldout_files import heldout_folders, library_files, library_rows, main

SR = 16000


def spec(name: str = "cellos", role: str = "heldout", **folder) -> LibrarySpec:
    folder = folder or {"path": "notes", "glob": "*.wav", "note_regex": r"-([a-g][0-9])\.wav$", "min_seconds": 0.3}
    return LibrarySpec(name=name, repo=f"owner/{name}", commit="0" * 40, licence="CC-BY 3.0", label="cello",
                       role=role, lineage=name, folder=folder)


def test_files_are_those_the_build_maps_every_take_not_only_the_first_per_key(tmp_path):
    notes = tmp_path / "owner+cellos" / "notes"
    notes.mkdir(parents=True)
    for name, seconds in [("1__cello-c2.wav", 1.0), ("2__cello-c2.wav", 1.0), ("3__cello-d2.wav", 0.1),
                          ("4__overall-quality.wav", 1.0)]:
        write_sine(notes / name, 65.4, seconds, SR)
    (notes / "readme.txt").write_text("licence")
    files = library_files(spec(), tmp_path)
    assert [f.name for f in files] == ["1__cello-c2.wav", "2__cello-c2.wav"]  # too short and unnamed left out


def test_samples_the_sampler_cannot_read_are_copied_to_flac_as_the_build_does(tmp_path):
    notes = tmp_path / "owner+cellos" / "notes"
    notes.mkdir(parents=True)
    write_sine(notes / "1__cello-c2.aif", 65.4, 1.0, SR, format="AIFF")
    folder = {"path": "notes", "glob": "*.flac", "note_regex": r"-([a-g][0-9])\.flac$"}
    cellos = replace(spec(**folder), transcode=".aif")
    assert [f.name for f in library_files(cellos, tmp_path)] == ["1__cello-c2.flac"]


def test_only_held_out_folder_libraries_are_chosen_and_unknown_names_are_refused():
    specs = (spec("a"), spec("b", role="train"), LibrarySpec(name="c", repo="o/c", commit="0" * 40, licence="CC0",
                                                            label="cello", role="heldout", lineage="c", sfz=("x.sfz",)))
    assert [s.name for s in heldout_folders(specs)] == ["a"]
    with pytest.raises(ValueError, match="not a held-out folder library"):
        heldout_folders(specs, ["b"])


def test_rows_count_right_answers_what_is_named_instead_and_the_paired_difference():
    tops = {"before": ["cello", "cello", "viola", "cello"], "after": ["cello", "viola", "viola", None]}
    rows = library_rows("cello", tops)
    assert rows["before"]["top1"] == 3 and rows["before"]["instead"] == {"viola": 1}
    assert rows["after"]["top1"] == 1 and rows["after"]["instead"] == {"viola": 2, "(error)": 1}
    assert rows["after"]["difference"] == pytest.approx(-2.0) and rows["after"]["se"] > 0
    assert rows["before"]["difference"] == 0 and rows["before"]["se"] == 0


def test_command_scores_each_file_with_each_model_and_keeps_going_past_a_broken_one(
        tmp_path, tiny_whisper, monkeypatch, capsys):
    notes = tmp_path / "owner+cellos" / "notes"
    notes.mkdir(parents=True)
    for i, freq in enumerate([65.4, 98.0, 130.8]):
        write_sine(notes / f"{i}__cello-c{i + 2}.wav", freq, 1.0, SR)
    (notes / "9__cello-g2.wav").write_bytes(b"RIFF....WAVEjunk" + bytes(np.arange(200, dtype=np.uint8)))
    # no min_seconds here: the broken file is taken, as a file that decodes badly only at analysis would be
    folder = {"path": "notes", "glob": "*.wav", "note_regex": r"-([a-g][0-9])\.wav$"}
    monkeypatch.setattr(heldout_files, "load_manifest", lambda: (spec(**folder),))
    args = ["--libraries", str(tmp_path), "--model", f"fp32={tiny_whisper}", "--model", f"int8={tiny_whisper}:int8"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("| cellos | cello |") == 2 and "| 4 |" in out  # 4 files, one row per model
    assert "(error) 1" in out  # the broken file is counted, not fatal
    assert main([*args, "--names", "violins"]) == 2
    monkeypatch.setattr(heldout_files, "load_manifest", lambda: (spec(**folder), spec("violins", **folder)))
    assert main(args) == 0 and capsys.readouterr().out.count("| violins |") == 0  # not fetched: left out
    assert main(["--libraries", str(tmp_path / "none"), "--model", f"fp32={tiny_whisper}"]) == 2
