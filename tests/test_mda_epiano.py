"""mda ePiano's packed Rhodes samples: unpacked from a tiny generated copy of the plugin's two source files
(the real ones are 2 MB and come from a mirror), mapped, played by the sampler and scored file by file."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")

from finetune.data import mda_epiano  # noqa: E402
from finetune.data.libraries import library_sources  # noqa: E402
from finetune.data.music import Note, Part  # noqa: E402
from finetune.data.sources import LibrarySpec  # noqa: E402
from finetune.evaluation.heldout_files import heldout_folders, library_files  # noqa: E402

SR = 16000
ROOTS = (57, 69)  # A3 and A4: two pitches, three layers each; A4's first layer is a "ghost" of its second
PERIODS = {57: 32000 / 220.0, 69: 32000 / 440.0}
ATTACK, LOOP = 3200, 1600  # samples at 32 kHz: an attack, then the last LOOP samples repeat


def _table() -> tuple[list[int], list[tuple[int, int, int, int]]]:
    """Sample values and (k, pos, end, loop) of every keygroup, laid out as the plugin's table is."""
    samples: list[int] = []
    groups = []
    for k in range(6):
        root = ROOTS[k // 3]
        if k == 3:  # ghost: the same data as the next keygroup, as mdaEPiano.cpp's top pitches
            groups.append((k, None, None, LOOP))
            continue
        pos = len(samples)
        n = np.arange(ATTACK)
        wave = (8000 + 2000 * (k % 3)) * np.sin(2 * np.pi * n / PERIODS[root])
        samples += [int(v) for v in wave]
        groups.append((k, pos, len(samples), LOOP))
        samples.append(0)  # the plugin's table leaves one sample between keygroups
    ghost = groups[4]
    groups[3] = (3, ghost[1], ghost[2], LOOP)
    return samples, groups


def make_plugin(root: Path) -> Path:
    """A checkout holding the two files the unpacker reads, in the plugin's own syntax."""
    samples, groups = _table()
    (root / "plugins").mkdir(parents=True, exist_ok=True)
    body = ",\n".join(",".join(str(v) for v in samples[i:i + 20]) for i in range(0, len(samples), 20))
    (root / mda_epiano.DATA_FILE).write_text(f"short epianoData[] = {{\n{body},\n}};\n")
    lines = ["  waves = epianoData;",
             f"  kgrp[ 0].root = {ROOTS[0]};  kgrp[ 0].high = 62; //A2",
             f"  kgrp[ 3].root = {ROOTS[1]};  kgrp[ 3].high =999; //A3"]
    lines += [f"  kgrp[{k}].pos = {p};  kgrp[{k}].end = {e};  kgrp[{k}].loop = {lp};" for k, p, e, lp in groups]
    (root / mda_epiano.CODE_FILE).write_text("mdaEPiano::mdaEPiano()\n{\n" + "\n".join(lines) + "\n}\n")
    return root


def _f0(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), 1 << 16))
    return float(np.argmax(spectrum) * rate / (1 << 16))


def test_keygroup_table_and_samples_are_read_as_the_plugin_lays_them_out(tmp_path):
    checkout = make_plugin(tmp_path)
    groups = mda_epiano.parse_keygroups((checkout / mda_epiano.CODE_FILE).read_text())
    assert [(g.root, g.high) for g in groups] == [(57, 62)] * 3 + [(69, 127)] * 3
    assert groups[3] == groups[4] and groups[0].loop == LOOP
    waves = mda_epiano.parse_samples((checkout / mda_epiano.DATA_FILE).read_text())
    assert waves.dtype == np.int16 and len(waves) == 5 * (ATTACK + 1)
    with pytest.raises(ValueError, match="keygroup"):
        mda_epiano.parse_keygroups("kgrp[0].root = 36;")


def test_held_note_loops_the_end_of_the_sample_and_decays(tmp_path):
    checkout = make_plugin(tmp_path)
    groups = mda_epiano.parse_keygroups((checkout / mda_epiano.CODE_FILE).read_text())
    waves = np.arange(20000, dtype=np.float32)  # a ramp shows which sample is played when
    g = groups[0]
    note = mda_epiano.held_note(waves, g, seconds=0.5)
    env = np.exp(-math.exp(-1.0 + 0.03 * 57 - 1.0) * np.arange(len(note)) / mda_epiano.RATE)
    played = np.round(note / env).astype(int)
    assert list(played[:3]) == [g.pos, g.pos + 1, g.pos + 2]
    first_lap = g.end - g.pos
    assert played[first_lap - 1] == g.end - 1 and played[first_lap] == g.end - LOOP  # back by one loop
    assert played[first_lap + LOOP] == g.end - LOOP  # and again
    assert len(note) == int(0.5 * mda_epiano.RATE)
    level = mda_epiano.held_note(np.ones(20000, np.float32), g, seconds=0.5)
    assert level[0] == 1 and level[-1] < level[len(level) // 2] < level[1] and level[-1] == pytest.approx(env[-1])


def test_unpack_writes_one_file_per_recording_and_an_sfz_that_maps_keys_and_layers(tmp_path):
    checkout = make_plugin(tmp_path)
    sfz = mda_epiano.unpack(checkout)
    wavs = sorted(p.name for p in sfz.parent.glob("*.wav"))
    assert wavs == ["key057_layer1.wav", "key057_layer2.wav", "key057_layer3.wav", "key069_layer1.wav",
                    "key069_layer3.wav"]  # the ghost keygroup and its twin share one file
    info = sf.info(sfz.parent / "key057_layer1.wav")
    assert info.samplerate == 32000 and info.channels == 1
    regions = [dict(kv.split("=", 1) for kv in line.split()[1:]) for line in sfz.read_text().splitlines()
               if line.startswith("<region>")]
    assert [(r["lokey"], r["hikey"], r["lovel"], r["hivel"]) for r in regions] == [
        ("0", "62", "1", "48"), ("0", "62", "49", "80"), ("0", "62", "81", "127"),
        ("63", "127", "1", "48"), ("63", "127", "49", "80"), ("63", "127", "81", "127")]
    assert regions[3]["sample"] == regions[4]["sample"] == "key069_layer1.wav"
    audio, rate = sf.read(sfz.parent / "key069_layer3.wav")
    assert abs(_f0(audio[:8000], rate) - 440) < 3
    stamp = sfz.stat().st_mtime_ns
    assert mda_epiano.unpack(checkout) == sfz and sfz.stat().st_mtime_ns == stamp  # done once


def _spec(role: str = "train") -> LibrarySpec:
    return LibrarySpec(name="rhodes", repo="owner/rhodes", commit="0" * 40, licence="MIT", label="electric_piano",
                       role=role, lineage="rhodes", unpack="mda_epiano")


def test_sampler_plays_the_unpacked_library_at_the_requested_pitch(tmp_path):
    pytest.importorskip("pysfizz")
    from finetune.data.engines.sfz import SfzRenderer

    make_plugin(tmp_path / "owner+rhodes")
    renderer = SfzRenderer(library_sources(tmp_path, (_spec(),))["rhodes"])
    (prog,) = renderer.programs
    for key, velocity in ((57, 30), (64, 100), (74, 60)):
        audio = renderer.render(Part(prog, [Note(0.05, 1.0, key, velocity)]), 1.2)
        want = 440 * 2 ** ((key - 69) / 12)
        assert abs(1200 * np.log2(_f0(audio[1600:12800], SR) / want)) < 25, key


def test_unknown_unpack_is_refused(tmp_path):
    from finetune.data.engines.sfz import sfz_files

    with pytest.raises(ValueError, match="unknown unpack"):
        sfz_files(replace(_spec(), unpack="zip"), tmp_path)


def test_held_out_unpacked_library_is_scored_file_by_file(tmp_path):
    make_plugin(tmp_path / "owner+rhodes")
    (held,) = heldout_folders((_spec("heldout"), _spec("train")))
    files = library_files(held, tmp_path)
    assert [f.name for f in files][:2] == ["key057_layer1.wav", "key057_layer2.wav"] and len(files) == 5
    assert library_files(replace(held, repo="owner/absent"), tmp_path) == []


def test_a_table_shorter_than_its_keygroups_is_refused_before_anything_is_written(tmp_path):
    checkout = make_plugin(tmp_path)
    data = checkout / mda_epiano.DATA_FILE
    data.write_text("short epianoData[] = {\n1,2,3,\n};\n")
    with pytest.raises(ValueError, match="keygroups reach"):
        mda_epiano.unpack(checkout)
    assert not (checkout / mda_epiano.OUT_DIR).exists()
