"""Rendering engines, one module each. The registry below finds them by themselves, so that a new engine is
one new file here and the rest of the build never names an engine."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from functools import lru_cache

from finetune.data.engines.base import Engine
from finetune.data.sources import Source


@lru_cache(maxsize=None)
def engines() -> dict[str, type[Engine]]:
    """``Source.engine`` kind -> the engine that plays it: the :class:`Engine` of every module here.

    Optional packages (pyfluidsynth, pysfizz) are imported only when an engine opens a library, so every
    engine is listed whether or not it can play on this machine.
    """
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    found: dict[str, type[Engine]] = {}
    for cls in concrete_engines():
        if cls.kind in found:
            raise TypeError(f"engine kind {cls.kind!r} is claimed by {found[cls.kind].__qualname__} "
                            f"and {cls.__qualname__}")
        found[cls.kind] = cls
    return found


def concrete_engines() -> list[type[Engine]]:
    """Every concrete :class:`Engine` of a module of this package imported so far (not one left behind by a
    module since reloaded or unloaded)."""
    out, todo = [], list(Engine.__subclasses__())
    while todo:
        cls = todo.pop(0)
        todo.extend(cls.__subclasses__())
        module = sys.modules.get(cls.__module__)
        if module is None or getattr(module, cls.__name__, None) is not cls:
            continue
        if cls.__module__.startswith(__name__ + ".") and not inspect.isabstract(cls):
            if not isinstance(getattr(cls, "kind", None), str):
                raise TypeError(f"{cls.__qualname__} ({cls.__module__}) does not say which kind it plays")
            out.append(cls)
    return out


def engine_for(source: Source) -> type[Engine]:
    try:
        return engines()[source.engine]
    except KeyError:
        raise ValueError(f"{source.name}: no engine plays {source.engine!r}; engines: {sorted(engines())}") from None


def make_renderer(source: Source) -> Engine:
    """The engine of ``source``, opened on it."""
    return engine_for(source)(source)


def available(source: Source) -> bool:
    """Whether ``source`` can be played on this machine (the library and its engine's tools installed)."""
    return engine_for(source).available(source)
