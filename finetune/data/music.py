"""Seeded generators of short musical parts: isolated notes, phrases and arpeggios, chords, drum patterns
and drum one-shots.

Everything here is pure: a ``numpy.random.Generator`` and a :class:`~finetune.data.sources.Program` in,
a :class:`Part` (timed MIDI notes and pitch bends) out, for any engine (``engines/``) to play.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from finetune.data.sources import Program

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "pentatonic": (0, 2, 4, 7, 9),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
}
CHORDS = {"maj": (0, 4, 7), "min": (0, 3, 7), "7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11),
          "min7": (0, 3, 7, 10), "sus4": (0, 5, 7), "dim": (0, 3, 6), "add9": (0, 4, 7, 14)}
# GM percussion keys used by the drum patterns.
KICK, KICK2, SNARE, SNARE2, RIM, CLAP = 36, 35, 38, 40, 37, 39
HH_CLOSED, HH_PEDAL, HH_OPEN, CRASH, RIDE, RIDE_BELL = 42, 44, 46, 49, 51, 53
TOMS = (41, 43, 45, 47, 48, 50)
CYMBALS = (49, 51, 52, 55, 57, 59)
# Every kit piece a one-shot can be: sample libraries are mostly heard one hit at a time.
KIT_PIECES = (KICK, KICK2, SNARE, SNARE2, RIM, CLAP, HH_CLOSED, HH_PEDAL, HH_OPEN, RIDE_BELL) + TOMS + CYMBALS
# Isolated notes go past an instrument's playing range: sample libraries map every key, so recordings of
# notes beyond the range an instrument is usually played in are common.
NOTE_RANGE_EXTRA = (-5, 12)


@dataclass
class Note:
    start: float  # seconds
    dur: float  # seconds
    pitch: int
    vel: int


@dataclass
class Part:
    """One instrument's events inside a clip."""

    program: Program
    notes: list[Note] = field(default_factory=list)
    bends: list[tuple[float, int]] = field(default_factory=list)  # (seconds, -8192..8191)

    @property
    def label(self) -> str:
        return self.program.label

    def clipped(self, start: float, end: float) -> "Part":
        """Only the notes starting in [start, end), cut at ``end`` (a part entering or leaving a mixture)."""
        notes = [Note(n.start, min(n.dur, end - n.start), n.pitch, n.vel) for n in self.notes
                 if start <= n.start < end]
        return Part(self.program, notes, [b for b in self.bends if start <= b[0] < end])


def _vel(rng: np.random.Generator, lo: int = 25, hi: int = 127) -> int:
    return int(rng.integers(lo, hi + 1))


def _add_vibrato(rng: np.random.Generator, part: Part, note: Note, rate_hz: float = 50.0) -> None:
    """Pitch-bend vibrato on a sustained note (default bend range: 8192 = 2 semitones)."""
    if note.dur < 0.4:
        return
    speed = rng.uniform(4.5, 6.5)
    depth_cents = rng.uniform(10, 45)
    onset = note.start + rng.uniform(0.1, 0.35)
    t = np.arange(onset, note.start + note.dur, 1.0 / rate_hz)
    ramp = np.clip((t - onset) / 0.3, 0, 1)
    vals = (ramp * depth_cents * 40.96 * np.sin(2 * np.pi * speed * (t - onset))).astype(int)
    part.bends.extend((float(ti), int(v)) for ti, v in zip(t, vals))
    part.bends.append((note.start + note.dur, 0))


def _pitch_in(rng: np.random.Generator, prog: Program, margin: int = 0) -> int:
    lo, hi = prog.low + margin, prog.high - margin
    if lo >= hi:
        lo, hi = prog.low, prog.high
    return int(rng.integers(lo, hi + 1))


def isolated_notes(rng: np.random.Generator, prog: Program, seconds: float) -> Part:
    """One held note (as a sampled instrument is recorded) or 1-4 separate notes: short and long, soft and loud.

    Pitches cover the playing range widened by ``NOTE_RANGE_EXTRA``.
    """
    part = Part(prog)
    wide = replace(prog, low=max(21, prog.low + NOTE_RANGE_EXTRA[0]), high=min(108, prog.high + NOTE_RANGE_EXTRA[1]))
    t = rng.uniform(0.0, 0.4)
    if rng.random() < 0.4:
        note = Note(t, rng.uniform(0.6, 1.0) * (seconds - t), _pitch_in(rng, wide), _vel(rng))
        part.notes.append(note)
        if prog.sustain and rng.random() < 0.5:
            _add_vibrato(rng, part, note)
        return part
    for _ in range(int(rng.integers(1, 5))):
        if t > seconds - 0.15:
            break
        long = rng.random() < 0.5
        dur = rng.uniform(0.8, 3.5) if long else rng.uniform(0.08, 0.6)
        dur = min(dur, seconds - t)
        note = Note(t, dur, _pitch_in(rng, wide), _vel(rng))
        part.notes.append(note)
        if prog.sustain and rng.random() < 0.5:
            _add_vibrato(rng, part, note)
        t += dur + rng.uniform(0.05, 0.8)
    return part


def _scale_pitches(rng: np.random.Generator, prog: Program) -> list[int]:
    root = int(rng.integers(0, 12))
    scale = SCALES[rng.choice(list(SCALES))]
    return [p for p in range(prog.low, prog.high + 1) if (p - root) % 12 in scale]


def phrase(rng: np.random.Generator, prog: Program, seconds: float) -> Part:
    """A melody (random walk on a scale, legato or detached, with rests) or an arpeggio."""
    part = Part(prog)
    pitches = _scale_pitches(rng, prog)
    beat = 60.0 / rng.uniform(60, 180)
    arpeggio = rng.random() < 0.35
    legato = rng.uniform(0.9, 1.0) if rng.random() < 0.5 else rng.uniform(0.3, 0.7)
    idx = int(rng.integers(0, len(pitches)))
    t = rng.uniform(0.0, 0.3)
    base_vel = _vel(rng, 40, 120)
    steps = (0, 2, 4, 6) if rng.random() < 0.4 else (0, 2, 4)
    octave = 7
    degrees = list(steps) + [octave + d for d in steps]
    shape = rng.choice(["up", "down", "updown"])
    seq = {"up": degrees, "down": degrees[::-1], "updown": degrees + degrees[-2:0:-1]}[shape]
    if arpeggio:
        idx = int(rng.integers(0, max(1, len(pitches) - degrees[-1])))
    k = 0
    rhythm = [0.25, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0]
    arp_ioi = float(rng.choice([0.25, 0.5]))
    while t < seconds - 0.1:
        if not arpeggio and rng.random() < 0.08:  # rest
            t += beat * float(rng.choice([0.5, 1.0]))
            continue
        ioi = beat * (arp_ioi if arpeggio else float(rng.choice(rhythm)))
        if arpeggio:
            i = idx + seq[k % len(seq)]
            k += 1
        else:
            idx += int(rng.choice([-2, -1, -1, 1, 1, 2, 0, 3, -3, 4, -4]))
            i = idx
        i = int(np.clip(i, 0, len(pitches) - 1))
        idx = int(np.clip(idx, 0, len(pitches) - 1))
        vel = int(np.clip(base_vel + rng.normal(0, 10), 15, 127))
        note = Note(t, min(ioi * legato, seconds - t), pitches[i], vel)
        part.notes.append(note)
        if prog.sustain and note.dur > 0.5 and rng.random() < 0.6:
            _add_vibrato(rng, part, note)
        t += ioi
    return part


def chords(rng: np.random.Generator, prog: Program, seconds: float) -> Part:
    """A progression of 2-4 block (or strummed / rolled) chords voiced inside the instrument's range."""
    part = Part(prog)
    n = int(rng.integers(2, 5))
    strum = rng.uniform(0.008, 0.04) if rng.random() < 0.5 else 0.0
    t = rng.uniform(0.0, 0.2)
    length = (seconds - t) / n
    span_lo = max(prog.low, 36)
    span_hi = min(prog.high, 88)
    if span_hi - span_lo < 14:
        span_lo, span_hi = prog.low, prog.high
    for _ in range(n):
        shape = CHORDS[rng.choice(list(CHORDS))]
        root = int(rng.integers(span_lo, max(span_lo + 1, span_hi - 12)))
        voicing = sorted({root + iv + 12 * int(rng.random() < 0.25) for iv in shape})
        if rng.random() < 0.4 and root - 12 >= prog.low:
            voicing.insert(0, root - 12)  # bass note
        voicing = [p for p in voicing if prog.low <= p <= prog.high] or [root]
        vel = _vel(rng, 35, 120)
        dur = length * rng.uniform(0.6, 1.0)
        for k, p in enumerate(voicing):
            v = int(np.clip(vel + rng.normal(0, 6), 10, 127))
            part.notes.append(Note(t + k * strum, max(0.05, dur - k * strum), p, v))
        t += length
    return part


def drum_pattern(rng: np.random.Generator, prog: Program, seconds: float) -> Part:
    """A kit groove on a 16-step grid (rock, funk, half-time, shuffle-ish), with fills and crashes."""
    part = Part(prog)
    step = 60.0 / rng.uniform(70, 180) / 4
    style = rng.choice(["rock", "funk", "halftime", "four_on_floor", "sparse"])
    hat = rng.choice([HH_CLOSED, HH_CLOSED, RIDE, HH_OPEN, HH_PEDAL])
    hat_every = int(rng.choice([1, 2, 2, 4]))
    kick_steps = {"rock": {0, 8, 10}, "funk": {0, 3, 6, 10, 13}, "halftime": {0, 7},
                  "four_on_floor": {0, 4, 8, 12}, "sparse": {0}}[style]
    snare_steps = {"halftime": {8}, "sparse": {12}}.get(style, {4, 12})
    snare = int(rng.choice([SNARE, SNARE, SNARE2, CLAP, RIM]))
    swing = rng.uniform(0, 0.3) * step
    n_steps = int(seconds / step)
    t0 = rng.uniform(0, 0.2)
    for s in range(n_steps):
        t = t0 + s * step + (swing if s % 2 else 0.0)
        if t >= seconds - 0.05:
            break
        pos = s % 16
        bar_end = pos >= 12 and (s // 16) % 2 == 1 and rng.random() < 0.6
        hits = []
        if bar_end and rng.random() < 0.7:
            hits.append(int(rng.choice(TOMS)))
        else:
            if pos in kick_steps or (rng.random() < 0.05):
                hits.append(int(rng.choice([KICK, KICK2])) if rng.random() < 0.2 else KICK)
            if pos in snare_steps:
                hits.append(snare)
            elif rng.random() < 0.04:
                hits.append(SNARE)  # ghost note
            if pos % hat_every == 0:
                hits.append(hat)
        if s == 0 and rng.random() < 0.5:
            hits.append(CRASH)
        for h in hits:
            accent = 1.0 if pos % 4 == 0 else 0.8
            vel = int(np.clip(rng.normal(95 * accent, 12), 20, 127))
            jitter = rng.normal(0, 0.006)
            part.notes.append(Note(max(0.0, t + jitter), 0.25, h, vel))
    return part


def drum_hits(rng: np.random.Generator, prog: Program, seconds: float) -> Part:
    """1-3 kit pieces struck alone (a kick, a crash, a single tom): the one-shots of a drum sample pack."""
    part = Part(prog)
    t = rng.uniform(0.0, 0.3)
    for _ in range(int(rng.integers(1, 4))):
        if t > seconds - 0.2:
            break
        part.notes.append(Note(t, 0.25, int(rng.choice(KIT_PIECES)), _vel(rng, 30, 127)))
        t += rng.uniform(0.4, 2.5)
    return part


GENERATORS = {"note": isolated_notes, "phrase": phrase, "chord": chords, "drums": drum_pattern,
              "hits": drum_hits}
DRUM_KINDS = ("drums", "hits")  # grooves and one-shots; the others are pitched


def choose_kind(rng: np.random.Generator, prog: Program) -> str:
    """The kind of a single-instrument clip for this program."""
    if prog.is_drums:
        return str(rng.choice(DRUM_KINDS))
    if prog.poly:
        return str(rng.choice(["note", "phrase", "chord"], p=[0.3, 0.4, 0.3]))
    return str(rng.choice(["note", "phrase"], p=[0.4, 0.6]))


def make_part(rng: np.random.Generator, prog: Program, kind: str, seconds: float) -> Part:
    return GENERATORS[kind](rng, prog, seconds)
