"""The one interface every rendering engine implements, so that nothing outside ``engines/`` asks which
engine plays a library."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from finetune.data.music import Part
from finetune.data.schema import SAMPLE_RATE
from finetune.data.sources import Program, Source


class Engine(ABC):
    """Plays the parts of one sample library (a :class:`Source` whose ``engine`` is :attr:`kind`) as
    16 kHz mono float32 audio, dry, each part alone."""

    kind: ClassVar[str]  # the ``Source.engine`` value this engine plays
    # The library's own programs (a real library: one per .sfz file); None: the General MIDI table.
    programs: list[Program] | None = None

    def __init__(self, source: Source, sample_rate: int = SAMPLE_RATE):
        self.source = source
        self.sample_rate = sample_rate

    @classmethod
    @abstractmethod
    def available(cls, source: Source) -> bool:
        """Whether ``source`` and what this engine needs to play it are installed on this machine."""

    @abstractmethod
    def has_preset(self, prog: Program) -> bool:
        """Whether the library has a preset for ``prog`` (it may still be silent: the build probes it)."""

    @abstractmethod
    def render(self, part: Part, seconds: float) -> np.ndarray:
        """``seconds`` of ``part``; raises ValueError if the library lacks its program."""

    def render_many(self, parts: list[Part], seconds: float) -> list[np.ndarray]:
        """Every part, in order (an engine that starts a process per call renders them in one)."""
        return [self.render(p, seconds) for p in parts]


def events(part: Part) -> list[tuple[float, int, str, int, int]]:
    """(seconds, order, "on"/"off"/"bend", a, b) in playing order; at one instant a note-off comes before a
    bend before a note-on, so that a repeated note restarts."""
    ev: list[tuple[float, int, str, int, int]] = []
    for n in part.notes:
        ev.append((n.start, 2, "on", n.pitch, n.vel))
        ev.append((n.start + n.dur, 0, "off", n.pitch, 0))
    ev.extend((t, 1, "bend", v, 0) for t, v in part.bends)
    ev.sort(key=lambda e: (e[0], e[1]))
    return ev
