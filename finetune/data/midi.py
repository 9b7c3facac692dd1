"""A tiny Standard MIDI File writer (format 0), enough to feed parts to command-line synths."""

from __future__ import annotations

import struct
from pathlib import Path

from finetune.data.music import Part

TICKS_PER_BEAT = 480
TEMPO_US = 500_000  # 120 bpm -> 960 ticks per second
TICKS_PER_SECOND = TICKS_PER_BEAT * 1_000_000 / TEMPO_US


def _varlen(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def write_midi(path: str | Path, placed: list[tuple[float, Part]], slot: float) -> None:
    """Write parts, each starting at its offset (seconds), each reset at its start and silenced at
    ``offset + slot - 0.25``. Drum kits go to channel 10 (index 9) with the kit as program."""
    events: list[tuple[int, int, bytes]] = []  # (tick, order, message)

    def at(seconds: float) -> int:
        return int(round(seconds * TICKS_PER_SECOND))

    for offset, part in placed:
        ch = 9 if part.program.is_drums else 0
        t0 = at(offset)
        events.append((t0, 0, bytes([0xB0 | ch, 121, 0])))  # reset controllers
        if not part.program.is_drums:
            events.append((t0, 1, bytes([0xB0 | ch, 0, part.program.bank])))
        events.append((t0, 2, bytes([0xC0 | ch, part.program.program])))
        events.append((t0, 3, bytes([0xE0 | ch, 0x00, 0x40])))  # pitch bend centre
        for n in part.notes:
            events.append((at(offset + n.start), 6, bytes([0x90 | ch, n.pitch, max(1, n.vel)])))
            events.append((at(offset + n.start + n.dur), 4, bytes([0x80 | ch, n.pitch, 0])))
        for t, v in part.bends:
            v = max(0, min(16383, v + 8192))
            events.append((at(offset + t), 5, bytes([0xE0 | ch, v & 0x7F, v >> 7])))
        end = at(offset + slot - 0.25)
        events.append((end, 7, bytes([0xB0 | ch, 123, 0])))  # all notes off
        events.append((end, 8, bytes([0xB0 | ch, 120, 0])))  # all sound off
    events.sort(key=lambda e: (e[0], e[1]))
    track = bytearray(b"\x00\xFF\x51\x03" + TEMPO_US.to_bytes(3, "big"))
    last = 0
    for tick, _, msg in events:
        track += _varlen(tick - last) + msg
        last = tick
    track += b"\x00\xFF\x2F\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
    Path(path).write_bytes(header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track))
