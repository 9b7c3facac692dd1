"""The engine registry: every kind of source has exactly one engine, and a new engine is one new file (the
one finetune/README.md shows is played here)."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from finetune.data import engines as registry
from finetune.data.engines import concrete_engines, engine_for, engines, make_renderer
from finetune.data.libraries import library_sources, load_manifest
from finetune.data.music import Note, Part
from finetune.data.sources import SOURCES, Source, load_programs

README = Path(__file__).resolve().parents[1] / "finetune" / "README.md"


def test_every_source_kind_maps_to_exactly_one_engine(tmp_path):
    found = engines()
    claimed = Counter(cls.kind for cls in concrete_engines())
    assert claimed and set(claimed.values()) == {1}, claimed
    sources = [*SOURCES.values(), *library_sources(tmp_path, load_manifest()).values()]
    for src in sources:
        assert engine_for(src) is found[src.engine] and found[src.engine].kind == src.engine, src.name
    assert {s.engine for s in sources} == set(found) == {"fluidsynth", "timidity", "sfz", "webaudiofont"}


def test_an_unknown_kind_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"no engine plays 'kazoo'.*fluidsynth"):
        engine_for(Source("toy", "/nowhere", "kazoo", "toy", "no such engine"))


def test_the_readme_engine_is_one_file_that_the_registry_finds(tmp_path, monkeypatch):
    section = README.read_text(encoding="utf-8").split("### Adding a rendering engine", 1)[1]
    code = re.search(r"```python\n# finetune/data/engines/(\w+)\.py\n(.*?)```", section, re.S)
    name, text = code.group(1), code.group(2)
    (tmp_path / f"{name}.py").write_text(text)
    module = f"{registry.__name__}.{name}"
    monkeypatch.setattr(registry, "__path__", [*registry.__path__, str(tmp_path)])
    engines.cache_clear()
    try:
        (kind,) = set(engines()) - {"fluidsynth", "timidity", "sfz", "webaudiofont"}
        renderer = make_renderer(Source("toy", "", kind, "toy", "the README's engine"))
        violin = next(p for p in load_programs() if p.label == "violin")
        audio = renderer.render_many([Part(violin, [Note(0.1, 0.5, 69, 127)])], 1.0)[0]
        assert audio.dtype == np.float32 and audio.shape == (16000,)
        assert np.abs(audio[1600:9600]).max() > 0.5 and np.abs(audio[9700:]).max() == 0
    finally:
        sys.modules.pop(module, None)
        monkeypatch.undo()
        if hasattr(registry, name):
            delattr(registry, name)
        engines.cache_clear()
    assert kind not in engines()
