"""webaudiofont wavetables: parsing the JS presets, extracting a bank, and playing it like a SoundFont."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from finetune.data import webaudiofont as waf
from finetune.data.engines import available, make_renderer
from finetune.data.engines import webaudiofont as player
from finetune.data.music import Note, Part
from finetune.data.rows.rendered import probe_programs
from finetune.data.sources import SOURCES, Program

MIRROR = Path("/work/.mirror/surikov+webaudiofontdata/repo")
SR = 16000
PIANO = Program(0, 0, "Acoustic Grand Piano", "piano", 21, 108, True, False)
VIOLIN = Program(0, 40, "Violin", "violin", 55, 100, False, True)
TRUMPET = Program(0, 56, "Trumpet", "trumpet", 54, 86, False, True)
KIT = Program(128, 0, "Standard Kit", "drums", 35, 81, True, False)


def _wav_b64(audio: np.ndarray, rate: int) -> str:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode()


def _tone(freq: float, seconds: float, rate: int = 22050, saw: bool = False) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 2 * ((freq * t) % 1.0) - 1 if saw else np.sin(2 * np.pi * freq * t)
    return (0.5 * wave).astype(np.float32)


def _js(var: str, zones: list[dict]) -> str:
    """A preset file written the way webaudiofontdata writes them (unquoted keys, '' strings, comments)."""
    body = []
    for z in zones:
        fields = "\n\t\t\t,".join(f"{k}:'{v}'" if isinstance(v, str) else f"{k}:{str(v).lower()}" for k, v in z.items())
        body.append(f"\t\t{{\n\t\t\t{fields}\n\t\t\t//_tone.{var}\n\t\t}}")
    return f"console.log('load {var}');\nvar {var}={{\n\tzones:[\n" + "\n\t\t,".join(body) + "\n\t]\n};\n"


def _zone(audio: np.ndarray, rate: int = 22050, pitch: float = 6900, loop: tuple[int, int] = (0, 0),
          ahdsr: bool = False, pcm: bool = False, low: int = 0, high: int = 127) -> dict:
    z = {"midi": 0, "originalPitch": pitch, "keyRangeLow": low, "keyRangeHigh": high, "loopStart": loop[0],
         "loopEnd": loop[1], "coarseTune": 0, "fineTune": 0, "sampleRate": rate, "ahdsr": ahdsr}
    if pcm:
        z["sample"] = base64.b64encode((audio * 32767).astype("<i2").tobytes()).decode()
    else:
        z["file"] = _wav_b64(audio, rate)
    return z


def _bank(tmp_path: Path, presets: dict[str, list[dict]]) -> Path:
    """A checked-out webaudiofontdata folder holding ``presets`` (file stem -> zones) and the licence."""
    root = tmp_path / "webaudiofontdata"
    (root / "sound").mkdir(parents=True)
    (root / "sf2").mkdir()
    (root / waf.GENERALUSER_GS_LICENSE).write_text("GeneralUser GS licence: any use\n")
    for stem, zones in presets.items():
        name = f"{stem}_{waf.GENERALUSER_GS}"
        (root / "sound" / f"{name}.js").write_text(_js(f"_tone_{name}", zones))
    return root


def _renderer(tmp_path: Path, presets: dict[str, list[dict]]) -> player.WebAudioFontRenderer:
    out = tmp_path / "extracted"
    waf.extract(_bank(tmp_path, presets), out)
    return make_renderer(dataclasses.replace(SOURCES["generaluser_gs"], path=str(out)))


def _pitch(audio: np.ndarray, start: float = 0.1, seconds: float = 0.5) -> float:
    x = audio[int(start * SR):int((start + seconds) * SR)] * np.hanning(int(seconds * SR))
    spec = np.abs(np.fft.rfft(x, 1 << 16))
    return float(np.fft.rfftfreq(1 << 16, 1 / SR)[np.argmax(spec)])


def _rms(audio: np.ndarray, a: float, b: float) -> float:
    return float(np.sqrt(np.mean(audio[int(a * SR):int(b * SR)] ** 2)))


def test_parse_keeps_base64_slashes_and_drops_comments():
    audio = _tone(441, 0.2)
    js = _js("_tone_x", [_zone(audio), _zone(audio, pcm=True, low=60)])
    preset = waf.parse_preset(js)
    assert [z["keyRangeLow"] for z in preset["zones"]] == [0, 60]
    assert preset["zones"][0]["ahdsr"] is False
    decoded, rate = waf.decode_audio(preset["zones"][0])
    assert rate == 22050 and np.allclose(decoded, audio, atol=1e-3)
    pcm, rate = waf.decode_audio(preset["zones"][1])
    assert rate == 22050 and np.allclose(pcm, audio, atol=1e-3)


def test_parse_handles_slashes_in_strings_envelope_lists_and_trailing_commas():
    js = ("var _tone_y={zones:[{midi:1 /* block */,originalPitch:6000,file:'ab//cd/+e=', // a comment\n"
          "ahdsr:[{duration:0.1,volume:1},{duration:1,volume:0.5},],},]};")
    zone = waf.parse_preset(js)["zones"][0]
    assert zone["file"] == "ab//cd/+e=" and zone["originalPitch"] == 6000
    assert player._envelope(zone["ahdsr"]) == ((0.1, 1.0), (1.1, 0.5))


@pytest.mark.parametrize("text", ["", "var x = 3;", "var x={zones:[]};", "var x={zones:[{a:1,}"])
def test_parse_rejects_what_is_not_a_preset(text):
    with pytest.raises(ValueError):
        waf.parse_preset(text)


def test_preset_file_names_map_to_programs_and_drum_keys():
    assert waf.preset_id("0560_GeneralUserGS_sf2_file.js") == ("program", 56, 0)
    assert waf.preset_id("04812_GeneralUserGS_sf2_file.js") == ("program", 48, 12)
    assert waf.preset_id("12838_0_GeneralUserGS_sf2_file.js") == ("drum", 38, 0)
    assert waf.preset_id("0560_FluidR3_GM_sf2_file.js") is None


def test_extract_copies_the_licence_and_is_idempotent(tmp_path):
    root = _bank(tmp_path, {"0000": [_zone(_tone(441, 0.3))]})
    out = tmp_path / "out"
    index = waf.extract(root, out)
    assert (out / waf.LICENSE_NAME).read_text().startswith("GeneralUser GS")
    assert [e["number"] for e in index["presets"].values()] == [0]
    stamp = (out / "program_000_0_z00.flac").stat().st_mtime_ns
    assert waf.extract(root, out) == index
    assert (out / "program_000_0_z00.flac").stat().st_mtime_ns == stamp


def test_extract_refuses_a_mirror_without_the_licence(tmp_path):
    root = _bank(tmp_path, {"0000": [_zone(_tone(441, 0.3))]})
    (root / waf.GENERALUSER_GS_LICENSE).unlink()
    with pytest.raises(FileNotFoundError, match="licence"):
        waf.extract(root, tmp_path / "out")


def test_note_has_its_pitch_and_stops_after_release(tmp_path):
    r = _renderer(tmp_path, {"0000": [_zone(_tone(441, 1.0), loop=(2205, 19845))]})
    a = r.render(Part(PIANO, [Note(0.05, 0.6, 69, 127)]), 1.5)
    assert a.dtype == np.float32 and len(a) == int(1.5 * SR)
    assert _pitch(a) == pytest.approx(441, rel=0.01)
    octave_up = r.render(Part(PIANO, [Note(0.05, 0.6, 81, 127)]), 1.5)
    assert _pitch(octave_up) == pytest.approx(882, rel=0.01)
    assert _rms(a, 0.0, 0.04) < 1e-4 and _rms(a, 0.2, 0.6) > 0.2
    assert _rms(a, 0.05 + 0.6 + player.RELEASE_SECONDS + 0.01, 1.5) < 1e-4


def test_looped_note_sustains_beyond_its_sample(tmp_path):
    r = _renderer(tmp_path, {"0000": [_zone(_tone(441, 0.5), loop=(2205, 8820))]})
    a = r.render(Part(PIANO, [Note(0.0, 2.5, 69, 127)]), 3.0)
    assert _rms(a, 2.0, 2.4) > 0.8 * _rms(a, 0.1, 0.4)
    assert _pitch(a, start=1.5) == pytest.approx(441, rel=0.01)


def test_unlooped_note_ends_with_its_sample(tmp_path):
    r = _renderer(tmp_path, {"0000": [_zone(_tone(441, 0.5))]})
    a = r.render(Part(PIANO, [Note(0.0, 2.5, 69, 127)]), 3.0)
    assert _rms(a, 0.1, 0.4) > 0.2 and _rms(a, 0.55, 3.0) < 1e-4


def test_zone_is_picked_by_key_and_notes_sum(tmp_path):
    low, high = _zone(_tone(441, 1.0), low=0, high=64), _zone(_tone(441, 1.0, saw=True), low=65, high=127)
    r = _renderer(tmp_path, {"0000": [low, high]})
    chord = r.render(Part(PIANO, [Note(0.0, 0.8, 57, 127), Note(0.0, 0.8, 69, 127)]), 1.0)
    single = r.render(Part(PIANO, [Note(0.0, 0.8, 57, 127)]), 1.0)
    assert _pitch(single) == pytest.approx(220.5, rel=0.01)
    spec = np.abs(np.fft.rfft(chord[1600:9600] - single[1600:9600]))
    assert np.sum(spec > spec.max() * 0.05) > 3  # the sawtooth zone played key 69: many harmonics


def test_envelope_decays_when_the_zone_has_one(tmp_path):
    r = _renderer(tmp_path, {"0000": [_zone(_tone(441, 0.5), loop=(2205, 8820), ahdsr=True)]})
    a = r.render(Part(PIANO, [Note(0.0, 4.0, 69, 127)]), 4.0)
    assert _rms(a, 3.0, 3.5) < 0.7 * _rms(a, 0.1, 0.4)


def test_stated_root_an_octave_off_is_corrected(tmp_path):
    # The zone claims A5 (880 Hz) but its sample sounds A4 (441 Hz), like GeneralUser GS's trumpet.
    r = _renderer(tmp_path, {"0000": [_zone(_tone(441, 1.0), pitch=8100, loop=(2205, 19845))]})
    assert json.loads((Path(r.folder) / "program_000_0.json").read_text())["octave_fix"] == -1200
    assert _pitch(r.render(Part(PIANO, [Note(0.0, 0.8, 69, 127)]), 1.0)) == pytest.approx(441, rel=0.01)


def test_drums_play_by_key(tmp_path):
    rng = np.random.default_rng(0)
    hit = (rng.standard_normal(4000) * np.exp(-np.arange(4000) / 800) * 0.5).astype(np.float32)
    r = _renderer(tmp_path, {"0000": [_zone(_tone(441, 0.5))], "12838_0": [_zone(hit, pitch=3800)]})
    assert r.has_preset(KIT) and not r.has_preset(dataclasses.replace(KIT, program=8))
    a = r.render(Part(KIT, [Note(0.1, 0.05, 38, 127), Note(0.5, 0.05, 36, 127)]), 1.0)
    assert _rms(a, 0.1, 0.2) > 0.05  # rings past its short note-off
    assert _rms(a, 0.5, 1.0) < 1e-4  # key 36 is not in the bank


def test_registered_source_probe_and_availability(tmp_path):
    src = SOURCES["generaluser_gs"]
    assert src.engine == "webaudiofont"
    assert not available(dataclasses.replace(src, path=str(tmp_path)))
    r = _renderer(tmp_path, {"0000": [_zone(_tone(441, 1.0), loop=(2205, 19845))],
                             "0400": [_zone(_tone(441, 1.0, saw=True), loop=(2205, 19845))]})
    assert available(dataclasses.replace(src, path=str(r.folder)))
    usable, missing = probe_programs(r, (VIOLIN, TRUMPET, KIT))
    assert usable == [VIOLIN]
    assert missing == {"Trumpet": "not in library", "Standard Kit": "not in library"}
    with pytest.raises(ValueError, match="lacks Trumpet"):
        r.render(Part(TRUMPET, [Note(0.0, 0.5, 60, 100)]), 1.0)


def test_missing_bank_gets_a_clear_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="extract"):
        make_renderer(dataclasses.replace(SOURCES["generaluser_gs"], path=str(tmp_path)))


@pytest.mark.skipif(not MIRROR.is_dir(), reason="webaudiofontdata mirror not fetched")
def test_real_generaluser_trumpet_from_the_mirror(tmp_path):
    js = subprocess.run(["git", "--git-dir", str(MIRROR), "show", f"HEAD:sound/0560_{waf.GENERALUSER_GS}.js"],
                        check=True, capture_output=True).stdout.decode()
    preset = waf.write_preset(js, "program_056_0", tmp_path)
    (tmp_path / "program_056_0.json").write_text(json.dumps(preset))
    (tmp_path / waf.BANK_INDEX).write_text(json.dumps({"presets": {"program_056_0": {
        "kind": "program", "number": 56, "variant": 0, "file": "program_056_0.json"}}}))
    r = make_renderer(dataclasses.replace(SOURCES["generaluser_gs"], path=str(tmp_path)))
    a = r.render(Part(TRUMPET, [Note(0.0, 1.0, 69, 110)]), 1.2)
    f0 = _pitch(a, 0.2, 0.6)
    assert min(abs(f0 / 440 - k) for k in (1, 2, 3)) < 0.02  # A4's harmonics: in tune, not an octave down
    assert waf.yin_pitch(a[3200:8000], SR) == pytest.approx(440, rel=0.02)


def test_the_build_opens_the_bank_like_any_other_library(tmp_path):
    from finetune.data.rows.rendered import open_library

    out = tmp_path / "extracted"
    waf.extract(_bank(tmp_path, {"0000": [_zone(_tone(441, 1.0), loop=(2205, 19845))]}), out)
    lib = open_library("generaluser_gs", dataclasses.replace(SOURCES["generaluser_gs"], path=str(out)))
    assert sorted(lib.by_label) == ["piano"]
