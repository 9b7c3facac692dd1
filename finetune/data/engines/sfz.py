"""Real sample libraries played through the sfizz SFZ sampler (PyPI ``pysfizz``), like a SoundFont, so that
a library plays the notes, phrases, chords and drum patterns that ``finetune.data.music`` makes.

Each ``.sfz`` file of a library is one :class:`Program` of its label, its key range the GM playing range
clamped to the keys the file maps; a note outside the mapped keys is moved by octaves into them. Plain WAV
folders get a generated SFZ (one region per file, the key read from the file name); a folder of chord
recordings (guitar strums) gets one key per chord root, played without transposing, so each note of a plan
sounds one strum and chords are not stacked.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from finetune.data import mda_epiano
from finetune.data.engines.base import Engine, events
from finetune.data.music import Part
from finetune.data.schema import SAMPLE_RATE
from finetune.data.sources import DRUM_BANK, LibrarySpec, Program, Source, load_programs

log = logging.getLogger(__name__)

BLOCK = 160  # 10 ms at 16 kHz; events land inside a block by their sample delay
GENERATED = ".instrusense"  # folder (inside a library checkout) of SFZ files written here
NOTE_NAMES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
MAX_TAIL_BLOCKS = 1000  # after a clip: blocks rendered at most while released voices die out
STRUM_KEYS = 48  # a chord folder's roots sit on C3–B3
ACCIDENTALS = {"#": 1, "s": 1, "sharp": 1, "b": -1, "flat": -1, "": 0}
UNPACKERS = {"mda_epiano": mda_epiano.unpack}  # a manifest's ``unpack``: checkout -> the SFZ it wrote


def note_number(name: str) -> int:
    """MIDI key of a note name such as ``A4``, ``Bb3``, ``C#5``, ``Cs5`` (the web samplers' spelling of a
    sharp) or ``csharp5`` (Freesound's; A4 = 69), or of a MIDI key number itself (``60``: files named by key,
    such as ``Horn.mf.60.m4a``)."""
    if name.isdigit():
        if int(name) > 127:
            raise ValueError(f"not a MIDI key: {name!r}")
        return int(name)
    m = re.fullmatch(r"([A-Ga-g])(#|b|s|sharp|flat|)(-?\d)", name)
    if not m:
        raise ValueError(f"not a note name: {name!r}")
    return 12 * (int(m.group(3)) + 1) + NOTE_NAMES[m.group(1).upper()] + ACCIDENTALS[m.group(2)]


def folder_files(folder: Path, glob: str, pattern: str, min_seconds: float = 0.0) -> list[tuple[Path, re.Match]]:
    """The files of a plain folder library, sorted by name, whose name ``pattern`` matches (with the match),
    leaving out those shorter than ``min_seconds`` (notes a copy cropped to a few milliseconds)."""
    out = []
    for f in sorted(folder.glob(glob)):
        m = re.search(pattern, f.name)
        if m and (min_seconds <= 0 or _seconds(f) >= min_seconds):
            out.append((f, m))
    return out


def folder_sfz(folder: Path, glob: str, note_regex: str, min_seconds: float = 0.0) -> str:
    """SFZ text mapping a folder of single-note WAV files, one file per key (first file wins), each
    region stretched halfway to its neighbours (files: :func:`folder_files`)."""
    by_key: dict[int, Path] = {}
    for f, m in folder_files(folder, glob, note_regex, min_seconds):
        by_key.setdefault(note_number(m.group(1)), f)
    if not by_key:
        raise ValueError(f"no file in {folder} matches {glob!r} with a note name ({note_regex!r})")
    keys = sorted(by_key)
    lines = []
    for i, k in enumerate(keys):
        lo = keys[0] - 6 if i == 0 else (keys[i - 1] + k) // 2 + 1
        hi = keys[-1] + 6 if i == len(keys) - 1 else (k + keys[i + 1]) // 2
        lines.append(f"<region> lokey={max(0, lo)} hikey={min(127, hi)} pitch_keycenter={k} "
                     f"sample={by_key[k].resolve()}")
    return "\n".join(lines) + "\n"


def chord_sfz(folder: Path, glob: str, chord_regex: str) -> str:
    """SFZ text for a folder of chord recordings whose names start with the chord's root (``Asharp minor``,
    ``Bflat major``, ``C#m``): one key per root on C3–B3, the recordings of a root picked at random, never
    transposed (``pitch_keytrack=0``): a recorded strum is played as recorded."""
    by_root: dict[int, list[Path]] = {}
    for f, m in folder_files(folder, glob, chord_regex):
        letter, accidental = m.group(1)[0].upper(), m.group(1)[1:].lower()
        if accidental in ACCIDENTALS:
            by_root.setdefault((NOTE_NAMES[letter] + ACCIDENTALS[accidental]) % 12, []).append(f)
    if not by_root:
        raise ValueError(f"no file in {folder} matches {glob!r} with a chord root ({chord_regex!r})")
    lines = []
    for root, files in sorted(by_root.items()):
        for i, f in enumerate(files):
            lines.append(f"<region> key={STRUM_KEYS + root} pitch_keytrack=0 lorand={i / len(files):.6f} "
                         f"hirand={(i + 1) / len(files):.6f} sample={f.resolve()}")
    return "\n".join(lines) + "\n"


def _seconds(path: Path) -> float:
    """Duration of a sample file, 0 where libsndfile cannot read it (such a file counts as too short)."""
    import soundfile as sf

    try:
        return sf.info(path).duration
    except (sf.LibsndfileError, RuntimeError):
        return 0.0


def _read_any(path: Path) -> tuple[np.ndarray, int]:
    """Samples (frames, channels) and rate of ``path``: libsndfile's formats (WAV, FLAC, AIFF, Ogg, MP3), else
    FFmpeg through torchcodec (AAC in .m4a)."""
    import soundfile as sf

    try:
        return sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        try:
            from torchcodec.decoders import AudioDecoder  # needs FFmpeg's libraries

            samples = AudioDecoder(str(path)).get_all_samples()
        except Exception as e2:  # noqa: BLE001 - any decoder failure: the file is left out with a warning
            raise RuntimeError(f"libsndfile: {e}; ffmpeg: {e2}") from e2
        return samples.data.numpy().T.astype(np.float32), int(samples.sample_rate)


def transcode_to_flac(root: Path, suffix: str) -> int:
    """Write a FLAC copy beside every ``suffix`` file under ``root`` that has none; returns how many."""
    import soundfile as sf

    n = 0
    for f in sorted(root.rglob(f"*{suffix}")):
        dest = f.with_suffix(".flac")
        if dest.exists():
            continue
        try:
            audio, sr = _read_any(f)
        except RuntimeError as e:
            log.warning("%s: cannot decode (%s), its notes stay silent", f, e)
            continue
        tmp = dest.with_name(f".{dest.name}.tmp")
        sf.write(tmp, audio, sr, format="FLAC", subtype="PCM_24")
        tmp.rename(dest)
        n += 1
    return n


def sfz_files(spec: LibrarySpec, root: Path) -> list[Path]:
    """The .sfz files of a library inside its checkout ``root``, writing the generated ones first: a
    plain folder's mapping, or a resolved copy (the manifest's header and text replacements, such as a
    ``#define`` the library leaves undefined), beside the original so that its relative paths hold."""
    for link, target in spec.aliases.items():
        if not (root / link).exists():
            (root / link).symlink_to(target)
    if spec.transcode:
        transcode_to_flac(root, spec.transcode)
    if spec.unpack:
        return [unpacked_sfz(spec, root)]
    out_dir = root / GENERATED
    if spec.folder:
        out_dir.mkdir(exist_ok=True)
        path = out_dir / f"{spec.name}.sfz"
        folder, glob = root / spec.folder["path"], spec.folder["glob"]
        path.write_text(chord_sfz(folder, glob, spec.folder["chord_regex"]) if is_chord_folder(spec)
                        else folder_sfz(folder, glob, spec.folder["note_regex"], spec.folder.get("min_seconds", 0.0)))
        return [path]
    files = []
    for rel in spec.sfz:
        path = root / rel
        if (spec.header or spec.replace) and path.is_file():
            text = path.read_text(errors="replace")
            for old, new in spec.replace.items():
                text = text.replace(old, new)
            resolved = path.with_name(f"{GENERATED}-{path.name}")
            resolved.write_text(spec.header + text)
            path = resolved
        files.append(path)
    return files


def unpacked_sfz(spec: LibrarySpec, root: Path) -> Path:
    """The SFZ that the library's unpacker writes (once) from samples packed in source code."""
    if spec.unpack not in UNPACKERS:
        raise ValueError(f"library {spec.name}: unknown unpack {spec.unpack!r}; valid: {sorted(UNPACKERS)}")
    return UNPACKERS[spec.unpack](root)


def is_chord_folder(spec: LibrarySpec) -> bool:
    return bool(spec.folder and "chord_regex" in spec.folder)


def _label_row(label: str) -> Program:
    """The label's General MIDI program, its range widened to all the label's programs (soprano to
    baritone saxophone)."""
    rows = [p for p in load_programs() if p.label == label]
    if not rows:
        raise ValueError(f"gm_programs.csv has no program for {label!r}")
    return Program(rows[0].bank, rows[0].program, rows[0].gm_name, label, min(r.low for r in rows),
                   max(r.high for r in rows), rows[0].poly, rows[0].sustain)


class SfzRenderer(Engine):
    """One real library (one label): each .sfz file is a program, played by its own sfizz synth."""

    kind = "sfz"

    def __init__(self, source: Source, sample_rate: int = SAMPLE_RATE):
        from pysfizz import _sfizz  # imported lazily so that the rest works without pysfizz

        if source.library is None:
            raise ValueError(f"{source.name} is not an SFZ library")
        super().__init__(source, sample_rate)
        spec = source.library
        row = _label_row(spec.label)
        drums = spec.label == "drums"
        self.synths: dict[str, object] = {}
        self.keys: dict[str, np.ndarray] = {}
        self.programs: list[Program] = []
        for i, path in enumerate(sfz_files(spec, Path(source.path))):
            synth = _sfizz.Synth(sample_rate, BLOCK)
            synth.enable_freewheeling()
            if not path.is_file() or not synth.load_sfz_file(str(path)) or synth.get_num_regions() == 0:
                log.warning("%s: %s does not load (missing file, or no region), skipped", source.name, path)
                continue
            keys = np.array([k for k in range(128) if len(synth.get_regions_for_note(k))])
            if not len(keys):
                log.warning("%s: %s maps no key, skipped", source.name, path)
                continue
            lo, hi = max(row.low, int(keys.min())), min(row.high, int(keys.max()))
            if lo > hi:
                lo, hi = int(keys.min()), int(keys.max())
            stem = Path(spec.sfz[i]).stem if spec.sfz else spec.name
            prog = Program(DRUM_BANK if drums else 0, i, f"{spec.name}/{stem}", spec.label, lo, hi,
                           row.poly and not is_chord_folder(spec), row.sustain)
            self.synths[prog.gm_name] = synth
            self.keys[prog.gm_name] = keys
            self.programs.append(prog)

    @classmethod
    def available(cls, source: Source) -> bool:
        return Path(source.path).is_dir()

    def has_preset(self, prog: Program) -> bool:
        return prog.gm_name in self.synths

    def key_for(self, prog: Program, pitch: int) -> int | None:
        """The key the library plays for ``pitch``: the drum map's, or the pitch moved by octaves into the
        mapped keys (the nearest mapped key if no octave is mapped); None for an unmapped drum key."""
        keys = self.keys[prog.gm_name]
        if prog.is_drums:
            pitch = self.source.library.drum_map.get(pitch, pitch)
            return pitch if pitch in keys else None
        if pitch in keys:
            return pitch
        same_class = keys[(keys - pitch) % 12 == 0]
        pool = same_class if len(same_class) else keys
        return int(pool[np.abs(pool - pitch).argmin()])

    def render(self, part: Part, seconds: float) -> np.ndarray:
        if not self.has_preset(part.program):
            raise ValueError(f"{self.source.name} lacks {part.program.gm_name}")
        synth = self.synths[part.program.gm_name]
        total = int(round(seconds * self.sample_rate))
        n_blocks = -(-total // BLOCK)
        by_block: dict[int, list] = {}
        for t, _order, kind, a, b in events(part):
            at = int(round(t * self.sample_rate))
            if at < n_blocks * BLOCK:
                by_block.setdefault(at // BLOCK, []).append((at % BLOCK, kind, a, b))
        playing: dict[int, int] = {}  # requested pitch -> key sounding
        out = np.zeros(n_blocks * BLOCK, np.float32)
        for blk in range(n_blocks):
            for delay, kind, a, b in by_block.get(blk, ()):
                if kind == "on":
                    key = self.key_for(part.program, a)
                    if key is not None:
                        playing[a] = key
                        synth.note_on(delay, key, b)
                elif kind == "off":
                    if a in playing:
                        synth.note_off(delay, playing.pop(a), 0)
                else:
                    synth.pitch_wheel(delay, int(np.clip(a, -8192, 8192)))
            left, right = synth.render_block()
            out[blk * BLOCK:(blk + 1) * BLOCK] = 0.5 * (np.asarray(left) + np.asarray(right))
        # silence the synth before the next clip: cut the voices and let them die out
        synth.all_sound_off()
        synth.pitch_wheel(0, 0)
        for _ in range(MAX_TAIL_BLOCKS):
            if synth.get_num_active_voices() == 0:
                break
            synth.render_block()
        return out[:total]
