"""Bring your own data: a folder-per-label recording collection in the training dataset's format.

Layout (the ``datasets`` "audiofolder" convention)::

    my_recordings/
        cello/        take1.wav  take2.flac ...
        trumpet/      solo.mp3 ...
        Violin/       ...            # any spelling ``instrusense.taxonomy.to_taxonomy`` knows

Each file becomes rows with ``audio`` (16 kHz mono), ``labels`` ([folder label]), ``source``,
``kind="real"`` and ``activity`` all ones; long files are cut into clip-length pieces.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from finetune.data.rows.real import read_audio, row, windows
from finetune.data.schema import features
from instrusense.taxonomy import LABELS, to_taxonomy

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}


def folder_label(name: str) -> str:
    label = to_taxonomy(name)
    if label is None:
        raise ValueError(f"folder {name!r} is not an instrument label; name folders after one of: "
                         f"{', '.join(LABELS)}")
    return label


def load_audiofolder(path: str | Path, clip_seconds: float | None = 4.0, max_windows: int = 8,
                     source: str = "user") -> datasets.Dataset:
    """Load ``path/<label>/<file>`` recordings as a Dataset with the instrument-dataset columns.

    ``clip_seconds=None`` keeps whole files; otherwise each file gives up to ``max_windows`` pieces.
    Raises ValueError for a folder name that is no taxonomy label (listing the valid keys) or when
    no audio file is found.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    rows = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        label = folder_label(sub.name)
        for f in sorted(p for p in sub.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
            audio = read_audio(f)
            pieces = [audio] if clip_seconds is None else windows(audio, clip_seconds, max_windows)
            for k, piece in enumerate(pieces):
                rows.append(row(piece, [label], source, "real", f"{sub.name}/{f.name}#{k}"))
    if not rows:
        raise ValueError(f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in label folders under {root}")
    return datasets.Dataset.from_list(rows, features=features())
