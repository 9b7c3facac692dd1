"""The modelled source: computed instruments that play the notes asked for, the same way every time."""

from __future__ import annotations

import numpy as np

from finetune.build import MIN_ENSEMBLE_LABELS, open_library, plan_clip
from finetune.music import Note, Part
from finetune.render import SAMPLE_RATE, make_renderer
from finetune.sources import SOURCES, load_programs

PROGRAMS = {(p.bank, p.program): p for p in load_programs()}


def _peak_hz(audio: np.ndarray, start_s: float) -> float:
    seg = audio[int(start_s * SAMPLE_RATE):][:16384] * np.hanning(16384)
    return float(np.fft.rfftfreq(16384, 1 / SAMPLE_RATE)[np.abs(np.fft.rfft(seg)).argmax()])


def test_modelled_notes_sound_at_their_pitch_stop_at_note_off_and_repeat_exactly():
    renderer = make_renderer(SOURCES["modelled"])
    for key, pitch in [((0, 33), 40), ((0, 4), 60), ((0, 5), 67)]:
        part = Part(PROGRAMS[key], [Note(0.1, 1.4, pitch, 100)])
        audio = renderer.render(part, 3.0)
        assert audio.dtype == np.float32 and audio.shape == (3 * SAMPLE_RATE,) and np.isfinite(audio).all()
        f0 = 440 * 2 ** ((pitch - 69) / 12)
        assert abs(12 * np.log2(_peak_hz(audio, 0.2) / f0)) < 0.5  # the loudest partial is the fundamental
        held = np.sqrt(np.mean(audio[int(1.2 * SAMPLE_RATE):int(1.4 * SAMPLE_RATE)] ** 2))
        released = np.sqrt(np.mean(audio[int(2.2 * SAMPLE_RATE):] ** 2))
        assert held > 1e-3 and released < held / 100  # damped after the note ends at 1.5 s
        assert np.array_equal(audio, renderer.render(part, 3.0))
    assert not np.array_equal(renderer.render(Part(PROGRAMS[(0, 33)], [Note(0.1, 1.0, 40, 100)]), 3.0),
                              renderer.render(Part(PROGRAMS[(0, 33)], [Note(0.1, 1.0, 40, 60)]), 3.0))


def test_modelled_source_is_opt_in_and_never_a_band_of_its_own():
    assert SOURCES["modelled"].opt_in and SOURCES["modelled"].available()
    lib = open_library("modelled")
    assert set(lib.by_label) == {"bass_guitar", "electric_piano", "acoustic_guitar"}
    assert len(lib.by_label) < MIN_ENSEMBLE_LABELS
    rng = np.random.default_rng(0)
    plans = [plan_clip(rng, {"modelled": lib}, 4.0) for _ in range(50)]
    assert all(kind != "mixture" for _, kind, _ in plans)  # mixtures come from full libraries only
