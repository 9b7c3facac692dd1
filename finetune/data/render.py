"""Render :class:`~finetune.data.music.Part` s to 16 kHz mono audio, and turn parts into labelled clips.

Three engines: SoundFonts in-process through libfluidsynth (``pyfluidsynth``; no process start, no MIDI
files, far faster than real time), freepats through the ``timidity`` command, which gets one
MIDI file holding a batch of parts back to back and whose output is cut apart again, and extracted
webaudiofont wavetables (GeneralUser GS) in NumPy (:mod:`finetune.data.webaudiofont`).
"""

from __future__ import annotations

import ctypes
import logging
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finetune.data.midi import write_midi
from finetune.data.music import Note, Part
from finetune.data.schema import FPS, SAMPLE_RATE
from finetune.data.sources import Program, Source, load_programs, timidity_drum_keys, timidity_programs
from finetune.data.webaudiofont import WebAudioFontRenderer

log = logging.getLogger(__name__)

SILENCE_PEAK = 1e-3  # a rendered part quieter than this (float full scale) counts as silent
ACTIVITY_GATE_DB = -45.0  # a note-on frame counts as sounding if its RMS is above peak-frame RMS + this
DRUM_HIT_SECONDS = 0.3


# --------------------------------------------------------------------------------------- engines
class FluidRenderer:
    """A SoundFont played in-process by libfluidsynth: dry (no built-in reverb/chorus), float output."""

    def __init__(self, source: Source, sample_rate: int = SAMPLE_RATE):
        import fluidsynth  # pyfluidsynth, imported lazily so that the rest works without it

        self.source = source
        self.sample_rate = sample_rate
        self.synth = fluidsynth.Synth(gain=0.5, samplerate=float(sample_rate), **{
            "synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 256,
            "synth.cpu-cores": 1})
        self.sfid = self.synth.sfload(source.path)
        if self.sfid < 0:
            raise RuntimeError(f"fluidsynth could not load {source.path}")
        self._write = fluidsynth._fl.fluid_synth_write_float
        self._write.restype = ctypes.c_int
        self._write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                ctypes.c_void_p, ctypes.c_int, ctypes.c_int]

    def has_preset(self, prog: Program) -> bool:
        preset = self.source.preset(prog)
        return preset is not None and self.synth.sfpreset_name(self.sfid, *preset) is not None

    def _samples(self, out: np.ndarray, start: int, stop: int) -> None:
        n = stop - start
        if n <= 0:
            return
        left = np.zeros(n, np.float32)
        right = np.zeros(n, np.float32)
        self._write(self.synth.synth, n, left.ctypes.data, 0, 1, right.ctypes.data, 0, 1)
        out[start:stop] = 0.5 * (left + right)

    def render(self, part: Part, seconds: float) -> np.ndarray:
        chan = 9 if part.program.is_drums else 0
        s = self.synth
        s.system_reset()
        preset = self.source.preset(part.program)
        if preset is None or s.program_select(chan, self.sfid, *preset) != 0:
            raise ValueError(f"{self.source.name} lacks {part.program.gm_name}")
        total = int(round(seconds * self.sample_rate))
        out = np.zeros(total, np.float32)
        pos = 0
        for t, _order, kind, a, b in _events(part):
            at = min(total, int(round(t * self.sample_rate)))
            self._samples(out, pos, at)
            pos = at
            if kind == "on":
                s.noteon(chan, a, b)
            elif kind == "off":
                s.noteoff(chan, a)
            else:
                s.pitch_bend(chan, a)
        self._samples(out, pos, total)
        s.all_sounds_off(chan)
        s.pitch_bend(chan, 0)
        # libfluidsynth renders 64-frame blocks and keeps the unread rest for the next call: drain to a
        # block boundary plus some silence, so that the next clip starts clean (deterministic renders).
        self._samples(np.zeros(64 * 8 + (-total) % 64, np.float32), 0, 64 * 8 + (-total) % 64)
        return out


def _events(part: Part) -> list[tuple[float, int, str, int, int]]:
    ev: list[tuple[float, int, str, int, int]] = []
    for n in part.notes:
        ev.append((n.start, 2, "on", n.pitch, n.vel))
        ev.append((n.start + n.dur, 0, "off", n.pitch, 0))
    ev.extend((t, 1, "bend", v, 0) for t, v in part.bends)
    ev.sort(key=lambda e: (e[0], e[1]))
    return ev


class TimidityRenderer:
    """freepats (or any TiMidity config) through the ``timidity`` CLI, many parts per process start."""

    GAP = 2.0  # seconds of silence between batched parts, so that release tails do not bleed over

    def __init__(self, source: Source, sample_rate: int = SAMPLE_RATE):
        self.source = source
        self.sample_rate = sample_rate
        self.defined = timidity_programs(source.path)
        self.drum_keys = timidity_drum_keys(source.path)

    def has_preset(self, prog: Program) -> bool:
        return (prog.bank, prog.program) in self.defined

    def render_many(self, parts: list[Part], seconds: float) -> list[np.ndarray]:
        if not parts:
            return []
        import soundfile as sf

        # TiMidity always reads its system config first (Debian's maps every GM slot to FluidR3), so a
        # program or drum key this config lacks would sound from FluidR3: play only what it defines.
        parts = [Part(p.program, [n for n in p.notes if n.pitch in self.drum_keys.get(p.program.program, ())], p.bends)
                 if p.program.is_drums else p for p in parts]
        bad = [p.program.gm_name for p in parts if not self.has_preset(p.program)]
        if bad:
            raise ValueError(f"{self.source.name} lacks {bad}")
        slot = seconds + self.GAP
        with tempfile.TemporaryDirectory() as tmp:
            mid, wav = Path(tmp) / "batch.mid", Path(tmp) / "batch.wav"
            write_midi(mid, [(i * slot, p) for i, p in enumerate(parts)], slot)
            cmd = ["timidity", "-c", self.source.path, "-Ow1M", "-s", str(self.sample_rate),
                   "--reverb=d", "--chorus=d", "-EFresamp=1", "--preserve-silence", "-o", str(wav), str(mid)]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            audio, sr = sf.read(wav, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        n = int(round(seconds * self.sample_rate))
        outs = []
        for i in range(len(parts)):
            a = int(round(i * slot * self.sample_rate))
            seg = audio[a:a + n]
            outs.append(np.pad(seg, (0, n - len(seg))).astype(np.float32))
        return outs

    def render(self, part: Part, seconds: float) -> np.ndarray:
        return self.render_many([part], seconds)[0]


def make_renderer(source: Source):
    if source.engine == "sfz":
        from finetune.data.sfz_render import SfzRenderer

        return SfzRenderer(source)
    if source.engine == "webaudiofont":
        return WebAudioFontRenderer(source)
    return TimidityRenderer(source) if source.engine == "timidity" else FluidRenderer(source)


def render_parts(renderer, parts: list[Part], seconds: float) -> list[np.ndarray]:
    if isinstance(renderer, TimidityRenderer):
        return renderer.render_many(parts, seconds)
    return [renderer.render(p, seconds) for p in parts]


# ------------------------------------------------------------------------------ program checking
def _spectrum(x: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(x, 1024)[::512] * np.hanning(1024)
    return np.log1p(np.abs(np.fft.rfft(frames, axis=1)).mean(axis=0) * 100)


def probe_programs(renderer, programs: tuple[Program, ...] | None = None) -> tuple[list[Program], dict[str, str]]:
    """Programs of the table that exist in this source and really sound.

    Returns (usable programs, {gm_name: reason} for the excluded ones). A program is excluded if the
    library lacks the preset, if its test note is silent, or if it sounds the same as the piano
    (a font that silently falls back to program 0).
    """
    programs = load_programs() if programs is None else programs
    candidates = [p for p in programs if renderer.has_preset(p)]
    missing = {p.gm_name: "not in library" for p in programs if p not in candidates}
    piano = Program(0, 0, "probe piano", "piano", 21, 108, True, False)
    has_piano = renderer.has_preset(piano)  # a drum-kit-only library has none
    probes = [piano] * has_piano + candidates
    parts = []
    for p in probes:
        if p.is_drums:
            notes = [Note(0.05 + 0.25 * i, 0.2, k, 110) for i, k in enumerate((36, 38, 42, 49))]
        else:
            notes = [Note(0.05, 0.9, int(np.clip(60, p.low, p.high)), 100)]
        parts.append(Part(p, notes))
    audios = render_parts(renderer, parts, 1.2)
    ref = _spectrum(audios[0]) if has_piano and np.abs(audios[0]).max() > SILENCE_PEAK else None
    usable = []
    for p, a in zip(probes[has_piano:], audios[has_piano:]):
        if np.abs(a).max() < SILENCE_PEAK:
            missing[p.gm_name] = "silent"
            continue
        if ref is not None and not p.is_drums and p.label != "piano":
            sp = _spectrum(a)
            if np.corrcoef(sp, ref)[0, 1] > 0.999:
                missing[p.gm_name] = "sounds like the piano (fall-back)"
                continue
        usable.append(p)
    return usable, missing


# ----------------------------------------------------------------------------------- activity
def activity(part: Part, audio: np.ndarray, seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Per-frame (10 fps) 0/1 activity: a note (drum hit: 0.3 s) sounds in the frame and is audible."""
    n_frames = int(round(seconds * FPS))
    on = np.zeros(n_frames, bool)
    for n in part.notes:
        dur = DRUM_HIT_SECONDS if part.program.is_drums else n.dur
        a = int(np.floor(n.start * FPS))
        b = int(np.ceil((n.start + dur) * FPS))
        on[max(0, a):min(n_frames, b)] = True
    hop = sample_rate // FPS
    frames = np.pad(audio, (0, max(0, n_frames * hop - len(audio))))[: n_frames * hop].reshape(n_frames, hop)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    gate = rms > rms.max() * 10 ** (ACTIVITY_GATE_DB / 20) if rms.max() > 0 else np.zeros(n_frames, bool)
    return (on & gate).astype(np.float32)


@dataclass
class Clip:
    audio: np.ndarray  # float32 mono, peak-normalised below 0 dBFS
    labels: list[str]
    activity: list[list[float]]  # parallel to labels
    kind: str
    source: str
    programs: list[str]


def assemble(rng: np.random.Generator, parts: list[Part], audios: list[np.ndarray], kind: str, source: str,
             seconds: float) -> Clip | None:
    """Mix parts (random levels), merge activity per label, peak-normalise; None if the clip is unusable."""
    if any(np.abs(a).max() < SILENCE_PEAK for a in audios):
        return None
    acts: dict[str, np.ndarray] = {}
    mix = np.zeros_like(audios[0], dtype=np.float64)
    for p, a in zip(parts, audios):
        act = activity(p, a, seconds)
        if act.sum() == 0:
            return None
        rms = np.sqrt(np.mean(a.astype(np.float64) ** 2)) + 1e-9
        level = 10 ** (rng.uniform(-10, 0) / 20) if len(parts) > 1 else 1.0
        mix += a / rms * level
        acts[p.label] = np.maximum(acts.get(p.label, 0), act)
    peak = np.abs(mix).max()
    if not np.isfinite(peak) or peak <= 0:
        return None
    target = 10 ** (rng.uniform(-20, -1) / 20)  # random gain, always below 0 dBFS
    out = (mix / peak * target).astype(np.float32)
    labels = sorted(acts)
    return Clip(out, labels, [acts[l].tolist() for l in labels], kind, source,
                [p.program.gm_name for p in parts])
