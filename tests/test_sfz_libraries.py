"""Real sample libraries: the manifest, fetching at a pinned commit, and the sfizz renderer on a tiny
generated library (sine WAVs), so that no mirror is needed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

soundfile = pytest.importorskip("soundfile")

from finetune.data import libraries  # noqa: E402
from finetune.data.libraries import LibrarySpec, fetch, library_sources, load_manifest  # noqa: E402
from finetune.data.music import Note, Part  # noqa: E402
from instrusense.taxonomy import LABEL_INDEX  # noqa: E402
from conftest import git, write_sine  # noqa: E402

SR = 16000
DATA_SOURCES = Path(__file__).resolve().parents[1].parent / "shared" / "DATA-SOURCES.md"
# validation sources of DATA-SOURCES.md (behind real-eval) and excluded ones: never in the manifest
FORBIDDEN = ("weresax", "jlearman", "cp80", "peastman/sso", "jrhodes", "discord", "virtual playing orchestra")
HELDOUT = {"bear_sax", "ganjo", "pastabass", "black_and_green_guitars", "headroom_piano", "sneakybass", "sams_sonor",
           "belofilms_strums", "iowa_vibraphone", "iowa_tuba", "vcsl_pipe_organ",
           "mtg_violin", "mtg_cello", "mtg_trumpet", "mda_epiano_rhodes"}


def test_manifest_is_valid():
    specs = load_manifest()
    assert specs, "empty manifest"
    for s in specs:
        assert s.label in LABEL_INDEX and s.role in ("train", "heldout")
        assert s.licence and (s.debian_package or (len(s.commit) == 40 and "/" in s.repo)) and s.commit
        text = json.dumps([s.repo, s.sfz, s.include, s.folder]).lower()  # what gets fetched and played
        assert not any(f in text for f in FORBIDDEN), f"{s.name} names a validation or excluded source"
    assert {s.name for s in specs if s.role == "heldout"} == HELDOUT
    roles = {}
    for s in specs:
        roles.setdefault(s.lineage, set()).add(s.role)
    assert all(len(r) == 1 for r in roles.values()), "an instrument is both trained on and held out"
    epianos = next(s for s in specs if s.label == "electric_piano")
    assert epianos.include and not any("cp80" in p.lower() for p in epianos.include)


def test_manifest_rejects_unknown_label(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"libraries": [{"name": "x", "repo": "a/b", "commit": "0" * 40, "licence": "CC0",
                                              "label": "kazoo", "role": "train", "lineage": "x", "sfz": ["x.sfz"]}]}))
    with pytest.raises(ValueError, match="kazoo"):
        load_manifest(bad)
    bad.write_text(json.dumps({"libraries": [{"name": "x", "repo": "a/b", "commit": "0" * 40, "licence": "CC0",
                                              "label": "flute", "role": "train", "lineage": "x",
                                              "folder": {"path": "wavs", "glob": "*.wav"}}]}))
    with pytest.raises(ValueError, match="note_regex or chord_regex"):
        load_manifest(bad)


def make_library(root: Path, name: str = "fixture", label: str = "flute", role: str = "train",
                 drums: bool = False) -> LibrarySpec:
    """A library checkout under ``root``: one sine sample at A4 and one at A5, or two drum keys."""
    folder = root / f"owner+{name}"
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    if drums:
        write_sine(folder / "samples" / "kick.wav", 60.0, 0.5)
        write_sine(folder / "samples" / "snare.wav", 200.0, 0.5)
        text = "<region> key=40 sample=samples/kick.wav\n<region> key=41 sample=samples/snare.wav\n"
    else:
        write_sine(folder / "samples" / "a4.wav", 440.0)
        write_sine(folder / "samples" / "a5.wav", 880.0)
        text = ("<region> lokey=55 hikey=74 pitch_keycenter=69 sample=samples/a4.wav\n"
                "<region> lokey=75 hikey=86 pitch_keycenter=81 sample=samples/a5.wav\n")
    (folder / "inst.sfz").write_text(text)
    return LibrarySpec(name=name, repo=f"owner/{name}", commit="0" * 40, licence="CC0", label=label, role=role,
                       lineage=name, sfz=("inst.sfz",), drum_map={36: 40, 38: 41} if drums else {})


def _f0(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), 1 << 16))
    return float(np.argmax(spectrum) * SR / (1 << 16))


@pytest.fixture
def renderer_for(tmp_path):
    pytest.importorskip("pysfizz")
    from finetune.data.engines.sfz import SfzRenderer

    def make(spec):
        return SfzRenderer(library_sources(tmp_path, (spec,))[spec.name])
    return make


def test_rendered_note_has_the_requested_pitch(tmp_path, renderer_for):
    r = renderer_for(make_library(tmp_path))
    (prog,) = r.programs
    assert (prog.low, prog.high) == (60, 86)  # the flute's GM range clamped to the mapped keys 55-86
    for key in (60, 69, 72, 84):
        audio = r.render(Part(prog, [Note(0.05, 1.0, key, 100)]), 1.5)
        assert audio.dtype == np.float32 and audio.shape == (24000,)
        want = 440 * 2 ** ((key - 69) / 12)
        assert abs(1200 * np.log2(_f0(audio[1600:17600]) / want)) < 20, key


def test_note_outside_the_mapped_keys_moves_by_octaves(tmp_path, renderer_for):
    r = renderer_for(make_library(tmp_path))
    (prog,) = r.programs
    assert r.key_for(prog, 45) == 57 and r.key_for(prog, 98) == 86 and r.key_for(prog, 60) == 60


def test_phrase_plays_every_note_then_stops(tmp_path, renderer_for):
    r = renderer_for(make_library(tmp_path))
    (prog,) = r.programs
    audio = r.render(Part(prog, [Note(0.0, 0.5, 69, 100), Note(0.5, 0.5, 76, 100)]), 2.0)
    first, second = _f0(audio[800:7200]), _f0(audio[8800:15200])
    assert abs(first - 440) < 5 and abs(second - 440 * 2 ** (7 / 12)) < 5
    assert np.abs(audio[-3200:]).max() < 1e-3, "notes went on after their note-off"
    again = r.render(Part(prog, [Note(0.5, 0.5, 69, 100)]), 1.0)
    assert np.abs(again[:4000]).max() < 1e-4, "the previous clip bled into the next"


def test_drum_kit_plays_gm_keys_through_its_map(tmp_path, renderer_for):
    r = renderer_for(make_library(tmp_path, "kit", "drums", drums=True))
    (prog,) = r.programs
    assert prog.is_drums
    assert r.key_for(prog, 36) == 40 and r.key_for(prog, 38) == 41 and r.key_for(prog, 42) is None
    kick = r.render(Part(prog, [Note(0.0, 0.2, 36, 110)]), 0.5)
    assert abs(_f0(kick[:4000]) - 60) < 5
    assert np.abs(r.render(Part(prog, [Note(0.0, 0.2, 42, 110)]), 0.5)).max() == 0


def test_plain_folder_library_maps_keys_from_file_names(tmp_path, renderer_for):
    folder = tmp_path / "owner+violins" / "wavs"
    folder.mkdir(parents=True)
    write_sine(folder / "Violin.arco.A4.wav", 440.0)
    write_sine(folder / "Violin.arco.C5.wav", 440 * 2 ** (3 / 12))
    spec = LibrarySpec(name="violins", repo="owner/violins", commit="0" * 40, licence="CC0", label="violin",
                       role="train", lineage="violins",
                       folder={"path": "wavs", "glob": "*.wav", "note_regex": r"\.([A-G]b?[0-9])\.wav$"})
    r = renderer_for(spec)
    (prog,) = r.programs
    audio = r.render(Part(prog, [Note(0.0, 1.0, 72, 100)]), 1.0)
    assert abs(_f0(audio[1600:14400]) - 440 * 2 ** (3 / 12)) < 5


def test_chord_folder_library_plays_one_recorded_strum_per_note_untransposed(tmp_path, renderer_for):
    folder = tmp_path / "debian+strums" / "kit"
    folder.mkdir(parents=True)
    write_sine(folder / "Amajor_00.wav", 440.0)
    write_sine(folder / "Asharp minor_DOWN_00.wav", 300.0)
    write_sine(folder / "Bflat major_UP_01.wav", 300.0)  # the same root spelt flat
    write_sine(folder / "Cmajor_00.wav", 523.25)
    write_sine(folder / "drumkit.xml.wav", 100.0)  # no chord root: not mapped
    spec = LibrarySpec(name="strums", repo="debian:strums", commit="1.0-1", licence="CC-BY 3.0",
                       label="acoustic_guitar", role="heldout", lineage="strums",
                       folder={"path": "kit", "glob": "*.wav", "chord_regex": r"^([A-G](?:sharp|flat)?)"})
    r = renderer_for(spec)
    (prog,) = r.programs
    assert not prog.poly, "chords of strums would stack several recorded chords"
    assert list(r.keys[prog.gm_name]) == [48, 57, 58]
    for key in (57, 69, 45):  # any A plays the A major strum as recorded, at 440 Hz
        audio = r.render(Part(prog, [Note(0.0, 1.0, key, 100)]), 1.0)
        assert abs(_f0(audio[1600:14400]) - 440) < 5, key
    audio = r.render(Part(prog, [Note(0.0, 1.0, 70, 100)]), 1.0)
    assert abs(_f0(audio[1600:14400]) - 300) < 5
    from finetune.data.engines.sfz import chord_sfz
    with pytest.raises(ValueError, match="chord root"):
        chord_sfz(folder, "*.flac", spec.folder["chord_regex"])


def test_sfz_with_undefined_variable_loads_through_the_manifest_header(tmp_path, renderer_for):
    spec = make_library(tmp_path)
    folder = tmp_path / "owner+fixture"
    (folder / "inst.sfz").write_text("<control> default_path=$sample_dir/\n"
                                     "<region> lokey=55 hikey=86 pitch_keycenter=69 sample=a4.wav\n")
    assert renderer_for(spec).programs == []  # as it is: no region loads, so no program
    fixed = LibrarySpec(**{**spec.__dict__, "header": "#define $sample_dir samples\n"})
    assert len(renderer_for(fixed).programs) == 1


def test_fetch_extracts_the_pinned_commit_once(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", cwd=work)
    (work / "keep").mkdir()
    (work / "keep" / "a.sfz").write_text("<region> sample=x.wav\n")
    (work / "skip.txt").write_text("not wanted")
    git("add", ".", cwd=work)
    git("commit", "-qm", "one", cwd=work)
    commit = git("rev-parse", "HEAD", cwd=work)
    (work / "keep" / "a.sfz").write_text("changed later")
    git("commit", "-qam", "two", cwd=work)
    mirrors = tmp_path / "mirrors"
    git("clone", "-q", "--bare", str(work), str(mirrors / "owner+lib" / "repo"))
    spec = LibrarySpec(name="lib", repo="owner/lib", commit=commit, licence="CC0", label="flute", role="train",
                       lineage="lib", sfz=("keep/a.sfz",), include=("keep",))
    out = tmp_path / "libs"
    assert fetch((spec,), out, mirrors) == {"owner/lib": "extracted"}
    assert (out / "owner+lib" / "keep" / "a.sfz").read_text() == "<region> sample=x.wav\n"
    assert not (out / "owner+lib" / "skip.txt").exists()
    assert fetch((spec,), out, mirrors) == {"owner/lib": "present"}
    missing = LibrarySpec(**{**spec.__dict__, "repo": "owner/absent"})
    assert fetch((missing,), out, mirrors) == {"owner/absent": "no mirror"}
    git("clone", "-q", str(work), str(mirrors / "owner+clone" / "repo"))  # a snapshot with a work tree
    cloned = LibrarySpec(**{**spec.__dict__, "repo": "owner/clone"})
    assert fetch((cloned,), out, mirrors) == {"owner/clone": "extracted"}
    assert (out / "owner+clone" / "keep" / "a.sfz").read_text() == "<region> sample=x.wav\n"


def _deb(root: Path) -> Path:
    """A tiny Debian package holding a kit folder and a file beside it."""
    pkg = root / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text("Package: kits\nVersion: 1.0-1\nArchitecture: all\n"
                                             "Maintainer: t <t@t>\nDescription: test kits\n")
    (pkg / "usr" / "share" / "kits" / "strums").mkdir(parents=True)
    (pkg / "usr" / "share" / "kits" / "strums" / "Amajor_00.flac").write_bytes(b"audio")
    (pkg / "usr" / "share" / "kits" / "other.txt").write_text("not wanted")
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(pkg), str(root / "kits_1.0-1_all.deb")],
                   check=True, capture_output=True)
    return root / "kits_1.0-1_all.deb"


def test_fetch_unpacks_a_debian_package_at_its_version_once(tmp_path, monkeypatch):
    if subprocess.run(["which", "dpkg-deb"], capture_output=True).returncode:
        pytest.skip("dpkg-deb is not installed")
    deb = _deb(tmp_path)
    downloads = []
    real_run = subprocess.run

    def run(cmd, *args, **kwargs):
        if cmd[0] == "apt-get":  # no network in tests: "download" the package built above
            downloads.append(cmd)
            (Path(kwargs["cwd"]) / deb.name).write_bytes(deb.read_bytes())
            return subprocess.CompletedProcess(cmd, 0, b"", b"")
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(libraries.subprocess, "run", run)
    spec = LibrarySpec(name="strums", repo="debian:kits", commit="1.0-1", licence="CC-BY 3.0",
                       label="acoustic_guitar", role="heldout", lineage="strums",
                       folder={"path": "usr/share/kits/strums", "glob": "*.flac", "chord_regex": "^([A-G])"},
                       include=("usr/share/kits/strums",))
    assert spec.debian_package == "kits" and spec.checkout == "debian+kits"
    out = tmp_path / "libs"
    assert fetch((spec,), out) == {"debian:kits": "extracted"}
    assert downloads == [["apt-get", "download", "kits=1.0-1"]]
    assert (out / "debian+kits" / "usr/share/kits/strums/Amajor_00.flac").read_bytes() == b"audio"
    assert not (out / "debian+kits" / "usr/share/kits/other.txt").exists()
    assert fetch((spec,), out) == {"debian:kits": "present"} and len(downloads) == 1


@pytest.mark.slow
def test_real_libraries_build_real_heldout_and_origin(tmp_path, monkeypatch):
    pytest.importorskip("pysfizz")
    pytest.importorskip("fluidsynth")
    datasets = pytest.importorskip("datasets")
    from finetune.data.build import build
    from finetune.data.config import BuildConfig
    from finetune.data.engines import available
    from finetune.data.rows.rendered import REAL_HELDOUT_PER_LIBRARY
    from finetune.data.sources import SOURCES

    small = ("timgm6mb", "sf_gmbank")
    if not all(available(SOURCES[s]) for s in small):
        pytest.skip("timgm6mb / csound SoundFonts not installed")
    root = tmp_path / "libs"
    specs = [make_library(root, "realflute", "flute", "train"), make_library(root, "realsax", "saxophone", "heldout")]
    manifest = tmp_path / "libraries.json"
    manifest.write_text(json.dumps({"libraries": [{**s.__dict__, "sfz": list(s.sfz)} for s in specs]}))
    monkeypatch.setattr(libraries, "MANIFEST", manifest)
    out = tmp_path / "ds"
    build(BuildConfig(out=str(out), hours=40 * 1.0 / 3600, seed=0, clip_seconds=1.0, holdout=["sf_gmbank"],
                      sources=list(small), val_fraction=0.1, no_real=True, quiet=True, libraries=str(root)))
    dd = datasets.load_from_disk(str(out))
    assert set(dd) == {"train", "validation", "real_heldout"}
    held = dd["real_heldout"]
    assert len(held) == REAL_HELDOUT_PER_LIBRARY
    assert set(held["source"]) == {"realsax"} and set(held["origin"]) == {"real"}
    assert {l for ls in held["labels"] for l in ls} == {"saxophone"}
    assert "realsax" not in set(dd["train"]["source"])
    for split in ("train", "validation"):
        for src, origin in zip(dd[split]["source"], dd[split]["origin"]):
            assert origin == ("real" if src == "realflute" else "rendered")
    card = (out / "README.md").read_text()
    assert "| realsax | owner/realsax | 000000000000 | CC0 | saxophone | heldout | 0 | 40 |" in card
    assert "realflute" in card


def test_load_clips_infers_origin_for_datasets_without_the_column(tmp_path):
    datasets = pytest.importorskip("datasets")
    from finetune.data.clips import load_clips
    from finetune.data.schema import features

    old = datasets.Features({k: v for k, v in features().items() if k != "origin"})
    wave = np.zeros(16000, np.float32)
    rows = {"audio": [{"array": wave, "sampling_rate": SR}] * 2, "labels": [["flute"], ["piano"]],
            "source": ["fluidr3", "real-eval"], "kind": ["note", "real"], "activity": [[[1.0] * 10]] * 2}
    datasets.DatasetDict({"real": datasets.Dataset.from_dict(rows, features=old)}).save_to_disk(str(tmp_path / "ds"))
    assert load_clips(tmp_path / "ds", "real").origins == ["rendered", "real"]


def test_a_label_with_real_libraries_gets_half_its_solo_clips_from_them_whatever_their_number():
    from types import SimpleNamespace

    from finetune.data.rows.rendered import Library, plan_clip
    from finetune.data.sources import load_programs

    flute = next(p for p in load_programs() if p.label == "flute")

    def lib(name: str, origin: str) -> Library:
        return Library(name, SimpleNamespace(source=SimpleNamespace(origin=origin)), {"flute": [flute]}, {})

    libs = {n: lib(n, "rendered") for n in ("a", "b", "c", "d")} | {"real": lib("real", "real")}
    picks = [plan_clip(np.random.default_rng(i), libs, 4.0)[0] for i in range(400)]
    assert 0.4 < picks.count("real") / 400 < 0.6  # not 1 in 5
    only_rendered = {n: libs[n] for n in "abcd"}
    assert {plan_clip(np.random.default_rng(i), only_rendered, 4.0)[0] for i in range(40)} == set("abcd")
