"""Extract a webaudiofont bank (GeneralUser GS) once, into FLAC samples and JSON zones its engine plays.

`surikov/webaudiofontdata` converts SoundFonts to one JS file per preset: ``sound/PPPV_<bank>.js``
(GM program ``PPP``, variant ``V``: the bank's other presets on that program) and, where the bank has
drums, ``sound/128KK_V_<bank>.js`` (GM drum key ``KK``). Each holds zones (key range, original pitch
in cents, coarse/fine tune, loop points in samples at ``sampleRate``, an envelope flag or list, and
the audio as base64: ``file`` compressed (mp3), or ``sample`` 16-bit PCM).

``python -m finetune.data.webaudiofont extract --mirror DIR --out cache/generaluser-gs`` decodes one
bank into a folder (per preset a JSON of zones + FLAC samples at their native rate, the licence
beside them, ``bank.json`` written last as the mark of a finished extraction) that the engine
``finetune.data.engines.webaudiofont`` plays like a SoundFont.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

BANK_INDEX = "bank.json"
LICENSE_NAME = "LICENSE.txt"
GENERALUSER_GS = "GeneralUserGS_sf2_file"
GENERALUSER_GS_LICENSE = "sf2/GeneralUserGS_LICENSE.txt"

_PRESET_FILE = re.compile(r"^(?:128(?P<key>\d+)_(?P<kit>\d+)|(?P<prog>\d{3})(?P<var>\d+))_(?P<bank>.+)\.js$")
# Token by token, strings kept whole: first comments are dropped, then keys and '' strings double-quoted.
_JS_STRING = r"'(?P<sq>[^'\\]*)'|\"(?:[^\"\\]|\\.)*\""
_JS_COMMENT = re.compile(_JS_STRING + r"|(?P<comment>//[^\n]*|/\*.*?\*/)", re.S)
_JS_KEY = re.compile(_JS_STRING + r"|(?P<pre>[{,]\s*)(?P<key>[A-Za-z_$][\w$]*)\s*:")


# ------------------------------------------------------------------------------------- parsing
def preset_id(file_name: str, bank: str = GENERALUSER_GS) -> tuple[str, int, int] | None:
    """("program", program, variant) or ("drum", key, kit variant) for a webaudiofont file name of ``bank``."""
    m = _PRESET_FILE.match(file_name)
    if not m or m["bank"] != bank:
        return None
    if m["key"] is not None:
        return "drum", int(m["key"]), int(m["kit"])
    return "program", int(m["prog"]), int(m["var"])


def parse_preset(js: str) -> dict:
    """The preset object of a webaudiofont JS file (``var _tone_X={zones:[...]};``) as a dict.

    JS object literal -> JSON: comments dropped, keys and single-quoted strings double-quoted,
    trailing commas removed. Raises ValueError with the reason when the text is not such a file.
    """
    start, end = js.find("{"), js.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no object literal found")

    def quote(m: re.Match) -> str:
        if m["sq"] is not None:
            return json.dumps(m["sq"])
        return f'{m["pre"]}"{m["key"]}":' if m["key"] is not None else m.group(0)

    text = _JS_COMMENT.sub(lambda m: "" if m["comment"] else m.group(0), js[start:end + 1])
    text = _JS_KEY.sub(quote, text)
    text = re.sub(r",\s*([}\]])", r"\1", text)
    try:
        preset = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not a webaudiofont preset: {e}") from None
    if not isinstance(preset.get("zones"), list) or not preset["zones"]:
        raise ValueError("the preset has no zones")
    return preset


def decode_audio(zone: dict) -> tuple[np.ndarray, int]:
    """A zone's samples (float32 mono) and their rate: ``sample`` is 16-bit PCM, ``file`` a compressed file."""
    if zone.get("sample"):
        pcm = np.frombuffer(base64.b64decode(zone["sample"]), "<i2")
        return (pcm / 32768.0).astype(np.float32), int(zone["sampleRate"])
    if zone.get("file"):
        import soundfile as sf

        audio, rate = sf.read(io.BytesIO(base64.b64decode(zone["file"])), dtype="float32", always_2d=True)
        return audio.mean(axis=1), int(rate)
    raise ValueError("zone has neither 'sample' nor 'file'")


# ----------------------------------------------------------------------------------- extraction
def yin_pitch(x: np.ndarray, rate: int, fmin: float = 20.0, fmax: float = 4200.0,
              threshold: float = 0.1) -> float | None:
    """The fundamental (Hz) of a periodic excerpt by YIN (de Cheveigné & Kawahara 2002); None if not periodic."""
    max_lag = int(rate / fmin)
    width = len(x) - max_lag
    if width < max_lag:
        return None
    x = x.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(x) + width)))
    corr = np.fft.irfft(np.fft.rfft(x, n) * np.conj(np.fft.rfft(x[:width], n)), n)[:max_lag + 1]
    energy = np.concatenate([[0.0], np.cumsum(x ** 2)])
    lags = np.arange(max_lag + 1)
    diff = energy[width] + energy[lags + width] - energy[lags] - 2 * corr
    cmnd = np.ones_like(diff)
    cmnd[1:] = diff[1:] * lags[1:] / np.maximum(np.cumsum(diff[1:]), 1e-12)
    lo = max(2, int(rate / fmax))
    below = np.flatnonzero(cmnd[lo:] < threshold)
    if below.size == 0:
        return None
    t = lo + int(below[0])
    while t + 1 < len(cmnd) and cmnd[t + 1] < cmnd[t]:
        t += 1
    return rate / t


def octave_gap(audio: np.ndarray, rate: int, loop_start: float, base_cents: float) -> int | None:
    """Whole octaves (in cents) by which a zone's stated pitch is off from its sample's measured pitch.

    Measured on the sustained part (short samples loop at their very end: the last 0.15 s then);
    None unless the sample is clearly periodic; 0 unless the gap is within 50 cents of whole octaves.
    """
    width = int(0.15 * rate)
    start = max(0, min(int(loop_start * rate) if loop_start > 0 else len(audio) // 5, len(audio) - width))
    f0 = yin_pitch(audio[start:start + width], rate)
    if f0 is None:
        return None
    dev = 1200 * np.log2(f0 / (440.0 * 2 ** ((base_cents / 100 - 69) / 12)))
    octaves = int(np.round(dev / 1200))
    return 1200 * octaves if octaves and abs(dev - 1200 * octaves) < 50 else 0


def preset_octave_fix(gaps: list[int | None]) -> int:
    """The octave correction (cents) of a whole preset: the gap that more than half of its zones show.

    Some presets of the webaudiofont conversion state roots an octave or two away from their
    samples (GeneralUser GS: trumpet, electric basses, piccolo), which would play every note octaves
    off with shifted formants. One zone alone is not trusted (ensembles, bells mislead a pitch
    tracker), and the whole preset moves together, so that its zones stay in tune with each other.
    """
    found = [g for g in gaps if g]
    if not found:
        return 0
    best = max(set(found), key=found.count)
    return best if found.count(best) * 2 > len(gaps) else 0


def _zone_record(zone: dict, audio: np.ndarray, rate: int, audio_name: str) -> dict:
    zone_rate = float(zone.get("sampleRate") or rate)
    record = {
        "key_low": int(zone.get("keyRangeLow", 0)), "key_high": int(zone.get("keyRangeHigh", 127)),
        "original_pitch": float(zone["originalPitch"]), "coarse_tune": float(zone.get("coarseTune", 0)),
        "fine_tune": float(zone.get("fineTune", 0)), "ahdsr": zone.get("ahdsr", False),
        # Loop points are samples at the zone's rate; in seconds they hold for any decoded rate.
        "loop_start": float(zone.get("loopStart", 0)) / zone_rate,
        "loop_end": float(zone.get("loopEnd", 0)) / zone_rate, "audio": audio_name}
    base = record["original_pitch"] - 100 * record["coarse_tune"] - record["fine_tune"]
    record["octave_gap"] = octave_gap(audio, rate, record["loop_start"], base)
    return record


def write_preset(js: str, stem: str, out: Path) -> dict:
    """Decode one JS preset into ``out/stem.json`` + ``out/stem_zNN.flac``; returns the JSON's content."""
    import soundfile as sf

    zones = []
    for i, zone in enumerate(parse_preset(js)["zones"]):
        try:
            audio, rate = decode_audio(zone)
        except Exception as e:  # one broken zone must not lose the preset
            log.warning("%s zone %d: cannot decode (%s); skipped", stem, i, e)
            continue
        name = f"{stem}_z{i:02d}.flac"
        peak = np.abs(audio).max() if audio.size else 0.0
        sf.write(out / name, audio / peak * 0.99 if peak > 1 else audio, rate, subtype="PCM_16")
        zones.append(_zone_record(zone, audio, rate, name))
    if not zones:
        raise ValueError("no zone could be decoded")
    return {"octave_fix": preset_octave_fix([z["octave_gap"] for z in zones]), "zones": zones}


class _Tree:
    """The files of a bank in a bare git mirror or a checked-out folder."""

    def __init__(self, root: Path):
        self.root = root
        self.git = not (root / "sound").is_dir()

    def names(self) -> list[str]:
        if not self.git:
            return sorted(str(p.relative_to(self.root)) for p in (self.root / "sound").glob("*.js"))
        out = subprocess.run(["git", "--git-dir", str(self.root), "ls-tree", "-r", "--name-only", "HEAD", "sound/"],
                             check=True, capture_output=True, text=True).stdout
        return out.split()

    def read(self, name: str) -> bytes | None:
        if not self.git:
            path = self.root / name
            return path.read_bytes() if path.is_file() else None
        r = subprocess.run(["git", "--git-dir", str(self.root), "show", f"HEAD:{name}"], capture_output=True)
        return r.stdout if r.returncode == 0 else None

    def commit(self) -> str | None:
        if not self.git:
            return None
        r = subprocess.run(["git", "--git-dir", str(self.root), "rev-parse", "HEAD"], capture_output=True, text=True)
        return r.stdout.strip() or None


def extract(mirror: Path, out: Path, bank: str = GENERALUSER_GS,
            license_path: str = GENERALUSER_GS_LICENSE) -> dict:
    """Decode every preset of ``bank`` from a webaudiofontdata mirror (bare git or folder) into ``out``.

    Idempotent: a finished extraction (``bank.json`` present) is returned as is; presets already
    written by an interrupted run are kept. Files the mirror lists but lacks are skipped with a warning.
    """
    index_path = out / BANK_INDEX
    if index_path.is_file():
        log.info("%s already extracted", out)
        return json.loads(index_path.read_text())
    tree = _Tree(Path(mirror))
    if not tree.root.exists():
        raise FileNotFoundError(f"no webaudiofontdata mirror or folder at {mirror}")
    licence = tree.read(license_path)
    if licence is None:
        raise FileNotFoundError(f"{mirror} lacks the bank's licence {license_path}: not extracting without it")
    out.mkdir(parents=True, exist_ok=True)
    (out / LICENSE_NAME).write_bytes(licence)
    presets: dict[str, dict] = {}
    for name in tree.names():
        pid = preset_id(Path(name).name, bank)
        if pid is None:
            continue
        kind, num, variant = pid
        stem = f"{'drum' if kind == 'drum' else 'program'}_{num:03d}_{variant}"
        entry = {"kind": kind, "number": num, "variant": variant, "file": f"{stem}.json", "origin": name}
        if not (out / entry["file"]).is_file():
            js = tree.read(name)
            if js is None:
                log.warning("%s is listed but absent from the mirror; skipped", name)
                continue
            try:
                preset = write_preset(js.decode("utf-8", "replace"), stem, out)
            except ValueError as e:
                log.warning("%s: %s; skipped", name, e)
                continue
            (out / entry["file"]).write_text(json.dumps(preset, indent=1))
        presets[stem] = entry
    index = {"bank": bank, "commit": tree.commit(), "licence": LICENSE_NAME, "presets": presets}
    index_path.write_text(json.dumps(index, indent=1))
    return index


# ------------------------------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.data.webaudiofont", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("extract", help="decode the GeneralUser GS presets into a folder, once")
    ex.add_argument("--mirror", type=Path, required=True,
                    help="webaudiofontdata: a bare git mirror or a checked-out folder (clone of "
                         "github.com/surikov/webaudiofontdata)")
    ex.add_argument("--out", type=Path, required=True, help="the extracted bank's folder, e.g. cache/generaluser-gs")
    args = parser.parse_args(argv)
    from instrusense.logs import configure_logging

    configure_logging("INFO")
    t0 = time.perf_counter()
    try:
        index = extract(args.mirror, args.out)
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    kinds = [e["kind"] for e in index["presets"].values()]
    size = sum(p.stat().st_size for p in args.out.iterdir())
    log.info("%s: %d program presets, %d drum presets, %.1f MB, %.1f s", args.out, kinds.count("program"),
             kinds.count("drum"), size / 1e6, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
