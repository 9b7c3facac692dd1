"""mda ePiano's Rhodes recordings, unpacked from the plugin's C sources into held notes and an SFZ map.

Paul Kellett's mda ePiano (MIT; ``elk-audio/mda-vst2``) carries its Fender Rhodes samples as a C array
(``mdaEPianoData.h``: 16-bit, 32 kHz) and maps them in the plugin's constructor (``mdaEPiano.cpp``: per
keygroup a root key, highest key, start, end and loop length; eleven pitches C2–C7, three velocity layers
each). A sample is an attack and a loop that the plugin repeats under a decaying envelope. The sampler
here plays no C arrays, so :func:`unpack` does what the plugin does for a held note at the keygroup's
root (the same loop crossfade, loop and default-program decay) and writes each as a WAV file, with an
SFZ that maps them as the plugin does: key ranges by ``high``, layers split at velocities 48 and 80.
Tremolo, treble boost and overdrive are off in the plugin's default program and are left out.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DATA_FILE = "plugins/mdaEPianoData.h"
CODE_FILE = "plugins/mdaEPiano.cpp"
OUT_DIR = ".instrusense-mda"  # inside the checkout: the held notes and the SFZ
SFZ_NAME = "mda_epiano.sfz"
RATE = 32000  # the plugin steps 32000 / Fs samples per output sample at a keygroup's root
LAYER_VELOCITIES = ((1, 48), (49, 80), (81, 127))  # noteOn: velocity > 48 and > 80 pick layers 2 and 3
XFADE_GROUPS = 28  # the constructor crossfades the loops of keygroups 0-27 only
XFADE_STEP = 0.02
HELD_SECONDS = 8.0  # longest held note written (the shortest-decaying keys are silent well before)
SILENCE = 1e-4  # the plugin drops a voice whose envelope falls below this
DECAY_PARAM = 0.5  # "Envelope Decay" of the default program
RELEASE_SECONDS = 0.03  # the default program's release time constant is 10-20 ms


@dataclass(frozen=True)
class Keygroup:
    root: int  # MIDI key of the recording
    high: int  # highest key it plays (the last pitch group: every key above)
    pos: int  # first sample in the table
    end: int  # one past the last sample the plugin plays
    loop: int  # loop length, ending at ``end``


def parse_keygroups(code: str) -> list[Keygroup]:
    """The constructor's keygroup table; layers 2 and 3 of a pitch take its root and high from layer 1."""
    fields: dict[int, dict[str, int]] = {}
    for k, name, value in re.findall(r"kgrp\[\s*(\d+)\]\.(root|high|pos|end|loop)\s*=\s*(\d+)", code):
        fields.setdefault(int(k), {})[name] = int(value)
    if not fields or sorted(fields) != list(range(len(fields))) or len(fields) % 3:
        raise ValueError(f"{CODE_FILE}: no complete keygroup table (groups found: {sorted(fields)})")
    groups = []
    for k in sorted(fields):
        first = fields[k - k % 3]
        if not {"root", "high"} <= set(first) or not {"pos", "end", "loop"} <= set(fields[k]):
            raise ValueError(f"{CODE_FILE}: keygroup {k} is incomplete: {fields[k]}")
        groups.append(Keygroup(first["root"], min(first["high"], 127), fields[k]["pos"], fields[k]["end"],
                               fields[k]["loop"]))
    return groups


def parse_samples(header: str) -> np.ndarray:
    """The ``short epianoData[] = {...}`` table as int16."""
    m = re.search(r"epianoData\s*\[\s*\]\s*=\s*\{(.*?)\}", header, re.S)
    if not m:
        raise ValueError(f"{DATA_FILE}: no epianoData table")
    return np.array([int(v) for v in re.findall(r"-?\d+", m.group(1))], dtype=np.int16)


def crossfade_loops(waves: np.ndarray, groups: list[Keygroup]) -> np.ndarray:
    """The constructor's loop smoothing: the last 50 samples before each loop end fade into the loop start."""
    out = waves.astype(np.float32)
    steps = int(round(1 / XFADE_STEP))
    xf = 1.0 - XFADE_STEP * np.arange(steps, dtype=np.float32)  # 1.0, 0.98, ... as the plugin counts
    for g in groups[:XFADE_GROUPS]:
        p0 = g.end - np.arange(steps)
        p1 = p0 - g.loop
        out[p0] = np.trunc((1 - xf) * out[p0] + xf * out[p1])  # the plugin stores (short) casts
    return out


def held_note(waves: np.ndarray, group: Keygroup, seconds: float = HELD_SECONDS) -> np.ndarray:
    """A key held at the group's root, as the plugin plays it: the sample, its loop repeated, the envelope
    decaying at the key's rate from 1 until it falls below the plugin's silence (float, the table's scale)."""
    key = max(group.root, 44)  # the plugin limits the longest decay the same way
    rate = math.exp(-1.0 + 0.03 * key - 2.0 * DECAY_PARAM)  # 1/s
    n = min(int(seconds * RATE), int(math.log(1 / SILENCE) / rate * RATE) + 1)
    last = group.end - 1  # the plugin plays pos..end-1, then jumps back by ``loop``
    idx = np.arange(n) + group.pos
    over = idx > last
    idx[over] = last - group.loop + 1 + (idx[over] - last - 1) % group.loop
    return waves[idx] * np.exp(-rate * np.arange(n) / RATE).astype(np.float32)


def sfz_text(groups: list[Keygroup], files: list[str]) -> str:
    """One region per keygroup: keys above the previous pitch's high, its velocity layer, pitched from its root."""
    lines = [f"<group> ampeg_release={RELEASE_SECONDS}"]
    low = 0
    for k in range(0, len(groups), 3):
        pitch = groups[k: k + 3]
        high = 127 if k + 3 >= len(groups) else pitch[0].high
        for g, (lovel, hivel), f in zip(pitch, LAYER_VELOCITIES, files[k: k + 3]):
            lines.append(f"<region> lokey={low} hikey={high} pitch_keycenter={g.root} lovel={lovel} hivel={hivel} "
                         f"sample={f}")
        low = high + 1
    return "\n".join(lines) + "\n"


def unpack(checkout: Path) -> Path:
    """Write the held notes (WAV, 32 kHz; one per distinct keygroup) and their SFZ into
    ``checkout/.instrusense-mda``; returns the SFZ. Done once: an SFZ already written is kept."""
    import soundfile as sf

    out = Path(checkout) / OUT_DIR
    sfz = out / SFZ_NAME
    if sfz.is_file():
        return sfz
    groups = parse_keygroups((Path(checkout) / CODE_FILE).read_text(errors="replace"))
    waves = parse_samples((Path(checkout) / DATA_FILE).read_text(errors="replace"))
    reach = max(g.end for g in groups)  # the crossfade writes at ``end``; playback interpolates up to it
    if reach >= len(waves):
        raise ValueError(f"{DATA_FILE}: {len(waves)} samples, the keygroups reach {reach}")
    waves = crossfade_loops(waves, groups)
    out.mkdir(parents=True, exist_ok=True)
    files, written = [], {}
    for k, g in enumerate(groups):
        if g not in written:  # the top two pitches repeat a layer ("ghost" keygroups): one file each
            written[g] = f"key{g.root:03d}_layer{k % 3 + 1}.wav"
            sf.write(out / written[g], np.clip(held_note(waves, g) / 32768.0, -1, 1), RATE, subtype="PCM_16")
        files.append(written[g])
    tmp = sfz.with_name(f".{SFZ_NAME}.tmp")
    tmp.write_text(sfz_text(groups, files))
    tmp.rename(sfz)  # written last: its presence marks a finished unpack
    log.info("%s: %d held notes of mda ePiano written", out, len(written))
    return sfz
