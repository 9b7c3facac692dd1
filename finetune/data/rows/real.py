"""Real recordings for evaluation only: shared/real-eval plus the Debian sample packs that match labels.

Every row gets the same columns as rendered clips; activity is all ones (we only know the clip-level
label). Nothing here is ever used for training.
"""

from __future__ import annotations

import csv
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from finetune.data.config import REAL_EVAL_DIR, BuildConfig
from finetune.data.rows.base import RowSource, Stats, flac_bytes
from finetune.data.schema import FPS, SAMPLE_RATE
from instrusense.taxonomy import LABEL_INDEX

log = logging.getLogger(__name__)

SONIC_PI_DIR = Path("/usr/share/sonic-pi/samples")
LMMS_DIR = Path("/usr/share/lmms/samples")

# (regular expression on the file's path relative to the pack, taxonomy label). First match wins;
# files matching nothing are left out (effects, synth sweeps, tabla: not a kit, not in our taxonomy).
SONIC_PI_RULES: list[tuple[str, str]] = [
    (r"^(drum_(?!roll)|bd_|sn_|loop_(amen|amen_full|breakbeat)\.)", "drums"),
    (r"^guit_", "electric_guitar"),
    (r"^ambi_piano\.", "piano"),
    (r"^ambi_choir\.", "voice"),
]
LMMS_RULES: list[tuple[str, str]] = [
    (r"^drums/(bassdrum|kick(?!_distorted)|snare|hihat|crash|ride|tom|rim|sidestick|clap)", "drums"),
    (r"^beats/(break|jungle|909beat|house_loop)", "drums"),
    (r"^instruments/bassslap", "bass_guitar"),
    (r"^instruments/cello", "cello"),
    (r"^instruments/(church_organ|e_organ)", "organ"),
    (r"^instruments/e_piano", "electric_piano"),
    (r"^instruments/flute", "flute"),
    (r"^instruments/harpsichord", "harpsichord"),
    (r"^instruments/piano", "piano"),
    (r"^instruments/steel_guitar01", "acoustic_guitar"),
    (r"^instruments/steel_guitar_.*distorted", "electric_guitar"),
    (r"^instruments/trumpet", "trumpet"),
    (r"^instruments/violin", "violin"),
    (r"^latin/latin_guitar", "acoustic_guitar"),
    (r"^stringsnpads/strings01", "string_section"),
    (r"^basses/(?!bass01)", "synthesizer"),  # acid / rave / techno synth basses (bass01: unclear, left out)
    (r"^bassloops/", "synthesizer"),  # TB-303 and synth bass lines
]


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Any file soundfile decodes (wav/flac/ogg/mp3) as float32 mono at ``sample_rate``."""
    import soundfile as sf
    import torch
    import torchaudio.functional as AF

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        mono = data.mean(axis=1)
    except Exception:  # formats libsndfile rejects (odd WAV headers, m4a, ...): FFmpeg through torchcodec
        from torchcodec.decoders import AudioDecoder

        samples = AudioDecoder(str(path)).get_all_samples()
        mono, sr = samples.data.mean(dim=0).numpy(), samples.sample_rate
    if sr != sample_rate:
        mono = AF.resample(torch.from_numpy(mono), sr, sample_rate).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def windows(audio: np.ndarray, clip_seconds: float, max_windows: int,
            sample_rate: int = SAMPLE_RATE) -> list[np.ndarray]:
    """Up to ``max_windows`` consecutive clip-length pieces of a file (a short file is one piece),
    skipping near-silent ones."""
    n = int(round(clip_seconds * sample_rate))
    pieces = [audio[i:i + n] for i in range(0, max(1, len(audio) - n // 2), n)][:max_windows] or [audio]
    peak = np.abs(audio).max() if len(audio) else 0.0
    return [p for p in pieces if len(p) > sample_rate // 10 and np.abs(p).max() > max(1e-4, 0.01 * peak)]


def row(audio: np.ndarray, labels: list[str], source: str, kind: str, name: str) -> dict:
    """A dataset row for a whole-clip label (activity all ones)."""
    peak = np.abs(audio).max()
    if peak > 1.0:
        audio = audio / peak
    frames = max(1, int(np.ceil(len(audio) / SAMPLE_RATE * FPS - 1e-6)))
    return {"audio": {"bytes": flac_bytes(audio), "path": name}, "labels": list(labels), "source": source,
            "kind": kind, "activity": [[1.0] * frames for _ in labels], "origin": "real"}


def match(rel: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, label in rules:
        if re.search(pattern, rel):
            return label
    return None


def real_eval_rows(root: Path = REAL_EVAL_DIR, clip_seconds: float = 4.0) -> Iterator[dict]:
    """shared/real-eval: one row per clip listed in labels.csv."""
    labels_csv = root / "labels.csv"
    if not labels_csv.is_file():
        log.warning("real-eval set not found at %s; the real split will lack it", root)
        return
    with open(labels_csv, newline="") as f:
        for r in csv.DictReader(f):
            if r["label"] not in LABEL_INDEX:
                raise ValueError(f"{labels_csv}: unknown label {r['label']!r}")
            audio = read_audio(root / r["file"])[: int(clip_seconds * SAMPLE_RATE)]
            yield row(audio, [r["label"]], "real-eval", "real", f"real-eval/{r['file']}")


def sample_pack_rows(root: Path, rules: list[tuple[str, str]], source: str, clip_seconds: float = 4.0,
                     max_windows: int = 2) -> Iterator[dict]:
    """Samples of a Debian pack whose names match a labelled rule (loops give up to ``max_windows``)."""
    if not root.is_dir():
        log.warning("%s not found; the real split will lack %s samples", root, source)
        return
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in {".wav", ".flac", ".ogg"}):
        rel = path.relative_to(root).as_posix()
        label = match(rel, rules)
        if label is None:
            continue
        try:
            audio = read_audio(path)
        except Exception as err:  # a broken file must not stop the build
            log.warning("skipping %s: %s", path, err)
            continue
        for k, piece in enumerate(windows(audio, clip_seconds, max_windows)):
            yield row(piece, [label], source, "real", f"{source}/{rel}#{k}")


def real_rows(clip_seconds: float = 4.0, real_eval_dir: Path = REAL_EVAL_DIR) -> Iterator[dict]:
    yield from real_eval_rows(real_eval_dir, clip_seconds)
    yield from sample_pack_rows(SONIC_PI_DIR, SONIC_PI_RULES, "sonic-pi", clip_seconds)
    yield from sample_pack_rows(LMMS_DIR, LMMS_RULES, "lmms", clip_seconds)


class RealRows(RowSource):
    """The ``real`` split: real-eval and the matching sample-pack recordings, whole-file lengths."""

    def __init__(self, seconds: float, real_eval_dir: Path = REAL_EVAL_DIR):
        super().__init__("real", seconds)
        self.real_eval_dir = real_eval_dir

    def rows(self, stats: Stats) -> Iterator[dict]:
        t, n = time.perf_counter(), 0
        for r in real_rows(self.seconds, self.real_eval_dir):
            n += 1
            yield r
        log.info("real split: %d clips in %.1f s", n, time.perf_counter() - t)

    def row_seconds(self, row: dict) -> float:
        return len(row["activity"][0]) / 10


def row_sources(config: BuildConfig) -> list[RowSource]:
    return [] if config.no_real else [RealRows(config.clip_seconds, Path(config.real_eval_dir))]
