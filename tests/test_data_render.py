"""Listen-by-numbers checks of the renderer on a tiny TimGM6mb render (fast enough for CI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fluidsynth")

from finetune.data.engines import available, make_renderer  # noqa: E402
from finetune.data.engines.fluidsynth import FluidRenderer  # noqa: E402
from finetune.data.mixing import activity, assemble  # noqa: E402
from finetune.data.music import DRUM_KINDS, GENERATORS, NOTE_RANGE_EXTRA, Note, Part, choose_kind, make_part  # noqa: E402
from finetune.data.rows.rendered import probe_programs  # noqa: E402
from finetune.data.schema import FPS, SAMPLE_RATE  # noqa: E402
from finetune.data.sources import SOURCES, load_programs  # noqa: E402
from instrusense.taxonomy import LABEL_INDEX, LABELS  # noqa: E402

TIM = SOURCES["timgm6mb"]
pytestmark = pytest.mark.skipif(not Path(TIM.path).is_file(), reason="timgm6mb-soundfont not installed")
SECONDS = 2.0


@pytest.fixture(scope="module")
def tim():
    return FluidRenderer(TIM)


def test_program_table_covers_every_label_with_sane_ranges():
    progs = load_programs()
    assert {p.label for p in progs} == set(LABELS)
    for p in progs:
        assert p.label in LABEL_INDEX
        assert 0 <= p.low < p.high <= 127, p


def test_timgm6mb_has_every_label(tim):
    usable, excluded = probe_programs(tim)
    assert {p.label for p in usable} == set(LABELS), excluded


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_single_instrument_clips_are_audible_unclipped_and_labelled(tim, kind):
    rng = np.random.default_rng(1)
    drum_kind = kind in DRUM_KINDS
    progs = [p for p in load_programs() if p.is_drums == drum_kind and (p.poly or kind != "chord")]
    lo_extra, hi_extra = NOTE_RANGE_EXTRA if kind == "note" else (0, 0)
    for prog in [progs[i] for i in rng.choice(len(progs), size=3, replace=False)]:
        part = make_part(rng, prog, kind, SECONDS)
        for n in part.notes:
            assert prog.is_drums or prog.low + lo_extra <= n.pitch <= prog.high + hi_extra
            assert 0 <= n.start < SECONDS and 1 <= n.vel <= 127
        audio = tim.render(part, SECONDS)
        clip = assemble(rng, [part], [audio], kind, "timgm6mb", SECONDS)
        assert clip is not None, f"{prog.gm_name} {kind} rendered silent"
        x = clip.audio
        assert x.dtype == np.float32 and x.shape == (int(SECONDS * SAMPLE_RATE),)
        assert np.isfinite(x).all()
        assert 10 ** (-20.5 / 20) <= np.abs(x).max() < 1.0  # normalised below 0 dBFS, never clipped
        assert np.sqrt(np.mean(x**2)) > 1e-4  # not silent
        assert clip.labels == [prog.label]
        assert len(clip.activity) == 1 and len(clip.activity[0]) == int(SECONDS * FPS)
        assert set(clip.activity[0]) <= {0.0, 1.0} and sum(clip.activity[0]) > 0


def test_rendering_is_deterministic():
    # Same seed, same notes; a fresh synth renders them to the same samples. (libfluidsynth reuses
    # voices with their filter state, so within one synth a render depends slightly on the renders
    # before it: the build renders in a fixed order, which keeps whole builds reproducible.)
    prog = next(p for p in load_programs() if p.label == "violin")
    parts = [make_part(np.random.default_rng(7), prog, "phrase", SECONDS) for _ in range(2)]
    assert parts[0] == parts[1]
    np.testing.assert_array_equal(FluidRenderer(TIM).render(parts[0], SECONDS),
                                  FluidRenderer(TIM).render(parts[1], SECONDS))


def test_activity_follows_notes(tim):
    prog = next(p for p in load_programs() if p.label == "flute")
    part = Part(prog, [Note(0.5, 0.6, 72, 100)])
    act = activity(part, tim.render(part, SECONDS), SECONDS)
    assert act.shape == (int(SECONDS * FPS),)
    assert act[:5].sum() == 0 and act[5:11].all() and act[12:].sum() == 0


def test_mixture_labels_match_parts(tim):
    rng = np.random.default_rng(3)
    by_label = {p.label: p for p in load_programs()}
    chosen = ["cello", "drums", "piano", "trumpet"]
    parts = [make_part(rng, by_label[l], choose_kind(rng, by_label[l]), SECONDS) for l in chosen]
    parts[1] = parts[1].clipped(1.0, SECONDS)  # drums enter late
    clip = assemble(rng, parts, [tim.render(p, SECONDS) for p in parts], "mixture", "timgm6mb", SECONDS)
    assert clip is not None
    assert clip.labels == sorted(chosen)
    assert len(clip.activity) == len(clip.labels)
    assert all(len(a) == int(SECONDS * FPS) for a in clip.activity)
    drums = clip.activity[clip.labels.index("drums")]
    assert sum(drums[:10]) == 0 and sum(drums[10:]) > 0
    assert np.abs(clip.audio).max() < 1.0


def test_every_label_has_two_independent_training_lineages():
    from finetune.data.config import DEFAULT_HOLDOUT

    # One library per lineage is enough (FluidR3 stands for FluidR3 + MuseScore General).
    names = [n for n in ("fluidr3", "timgm6mb", "sf_gmbank", "freepats")
             if n not in DEFAULT_HOLDOUT and available(SOURCES[n])]
    if len(names) < 3:
        pytest.skip(f"needs the Debian sample libraries installed, found only {names}")
    lineages: dict[str, set[str]] = {l: set() for l in LABELS}
    for n in names:
        usable, _ = probe_programs(make_renderer(SOURCES[n]))
        for p in usable:
            lineages[p.label].add(SOURCES[n].lineage)
    short = {l: v for l, v in lineages.items() if len(v) < 2}
    assert not short, short


@pytest.mark.skipif(not available(SOURCES["freepats"]), reason="timidity / freepats not installed")
def test_timidity_batches_stay_aligned():
    from finetune.data.engines.timidity import TimidityRenderer

    prog = next(p for p in load_programs() if p.gm_name.startswith("Acoustic Guitar (nylon)"))
    parts = [Part(prog, [Note(0.8 + 0.1 * i, 0.4, 60, 110)]) for i in range(5)]
    outs = TimidityRenderer(SOURCES["freepats"]).render_many(parts, SECONDS)
    for i, a in enumerate(outs):
        assert a.shape == (int(SECONDS * SAMPLE_RATE),)
        onset = np.argmax(np.abs(a) > 0.05 * np.abs(a).max()) / SAMPLE_RATE
        assert abs(onset - (0.8 + 0.1 * i)) < 0.02, (i, onset)  # no dropped initial silence, no drift


def test_drum_kit_library_plays_only_the_standard_kit_and_its_one_shots_sound():
    from finetune.data.music import drum_hits

    src = SOURCES["avl_black_pearl"]
    if not available(src):
        pytest.skip("needs Debian avldrums.lv2-soundfont (scripts/install.sh)")
    renderer = make_renderer(src)
    usable, excluded = probe_programs(renderer)
    assert [(p.bank, p.program, p.label) for p in usable] == [(128, 0, "drums")]
    assert excluded["Acoustic Grand Piano"] == "not in library"
    rng = np.random.default_rng(3)
    clips = []
    for _ in range(6):
        part = drum_hits(rng, usable[0], SECONDS)
        assert 1 <= len(part.notes) <= 3
        clips.append(assemble(rng, [part], [renderer.render(part, SECONDS)], "hits", src.name, SECONDS))
    heard = [c for c in clips if c is not None]  # a hit on a key the kit lacks is silent and re-drawn
    assert len(heard) >= 4 and all(c.labels == ["drums"] for c in heard)
