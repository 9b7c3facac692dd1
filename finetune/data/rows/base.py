"""What every kind of row source shares, so that the build writes, counts and describes them all alike."""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from finetune.data.schema import SAMPLE_RATE


@dataclass
class Stats:
    """What the build measured, for the dataset card."""

    clips: Counter = field(default_factory=Counter)  # split
    seconds: Counter = field(default_factory=Counter)  # split
    label: Counter = field(default_factory=Counter)  # (split, label)
    label_source: Counter = field(default_factory=Counter)  # (split, label, source)
    source: Counter = field(default_factory=Counter)  # (split, source)
    kind: Counter = field(default_factory=Counter)  # (split, kind)
    retries: int = 0
    render_wall: float = 0.0

    def add(self, split: str, r: dict, seconds: float) -> None:
        self.clips[split] += 1
        self.seconds[split] += seconds
        self.source[split, r["source"]] += 1
        self.kind[split, r["kind"]] += 1
        for label in r["labels"]:
            self.label[split, label] += 1
            self.label_source[split, label, r["source"]] += 1


class RowSource(ABC):
    """Rows of the dataset schema (``schema.features``) that one kind of source adds to one split.

    Rows come in a fixed order and row ``i`` depends only on the build's seed and ``i``, so that a build
    is reproducible and a source added to a split leaves the others' rows as they were.
    """

    def __init__(self, split: str, seconds: float):
        self.split = split
        self.seconds = seconds  # length of a clip

    @abstractmethod
    def rows(self, stats: Stats) -> Iterator[dict]:
        """The rows, in order; ``stats`` takes what the source measures beyond the rows (the build counts them)."""

    def row_seconds(self, row: dict) -> float:
        """The audio length a row counts for in the card."""
        return self.seconds

    @classmethod
    def card_section(cls, stats: Stats) -> str | None:
        """This kind's own section of the dataset card (its sources, licences, what is held out), if any."""
        return None


def flac_bytes(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()
