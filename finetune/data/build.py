"""Build the instrument dataset from one :class:`~finetune.data.config.BuildConfig`.

:func:`build` (the CLI is ``python -m finetune.data``) writes a ``datasets.DatasetDict``
(``save_to_disk``) with splits ``train`` (rendered, training sources), ``validation`` (rendered, held-out
sample libraries only), ``real`` (real recordings, evaluation only) and, with their options,
``real_heldout`` and ``negatives``, and a dataset card (README.md) with counts, measured throughput and size.
The splits are whatever the row sources (``rows/``) fill: a new kind of source joins in :func:`row_sources`.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path

import datasets

from finetune.data import card
from finetune.data.config import BuildConfig
from finetune.data.rows import negatives, real, rendered
from finetune.data.rows.base import RowSource, Stats
from finetune.data.rows.rendered import Libraries, open_libraries
from finetune.data.schema import features

log = logging.getLogger(__name__)


def row_sources(config: BuildConfig, opened: Libraries) -> list[RowSource]:
    """Every row source of the build. Splits come in the order they first appear here, and a split's rows
    in this order (train: rendered clips, one-shots, negatives)."""
    return [*rendered.row_sources(config, opened), *negatives.row_sources(config), *real.row_sources(config)]


# Renderers hold C pointers that `datasets` cannot hash; the generator gets its sources by key from here.
_LIVE: dict[str, tuple[list[RowSource], Stats]] = {}


def _rows(key: str):
    sources, stats = _LIVE[key]
    for source in sources:
        for r in source.rows(stats):
            stats.add(source.split, r, source.row_seconds(r))
            yield r


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(config: BuildConfig) -> datasets.DatasetDict:
    """Render, load, save and describe the dataset; returns the saved DatasetDict.

    ``config.libraries`` (the folder ``python -m finetune.data.libraries fetch`` filled) adds the real sample
    libraries of the manifest: train-role ones to the training split, held-out ones as the
    ``real_heldout`` split (``rows.rendered.REAL_HELDOUT_PER_LIBRARY`` clips each, never trained on).

    ``config.negatives`` training clips without any instrument (``rows/negatives.py``) follow the rest of
    train; with them, a held-out split ``negatives`` of ``negatives_heldout`` clips (other speakers, voices,
    sounds).

    ``config.one_shots`` extra training clips of drum one-shots follow the ``hours`` of clips, which keep
    their seeds and so their plans; the validation and real splits are the same as without them.
    """
    config.check()
    opened = open_libraries(config)
    sources = row_sources(config, opened)
    by_split: dict[str, list[RowSource]] = {}
    for s in sources:
        by_split.setdefault(s.split, []).append(s)
    stats = Stats()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
    try:
        splits = {}
        for split, group in by_split.items():
            _LIVE[f"{cache}/{split}"] = (group, stats)
            try:
                splits[split] = datasets.Dataset.from_generator(
                    _rows, features=features(), cache_dir=str(cache / split), keep_in_memory=False,
                    gen_kwargs={"key": f"{cache}/{split}"})
            except ValueError:  # `datasets` neither makes nor reloads a split without rows
                if stats.clips[split]:
                    raise
                log.warning("split %s: no rows (nothing to read on this machine), left out", split)
        dd = datasets.DatasetDict(splits)
        tmp_out = out / ".dataset-tmp"
        dd.save_to_disk(str(tmp_out))
    finally:
        for split in by_split:
            _LIVE.pop(f"{cache}/{split}", None)
        shutil.rmtree(cache, ignore_errors=True)
    # move the saved splits into place (out/ may hold an older build)
    for item in tmp_out.iterdir():
        dest = out / item.name
        if dest.is_dir():
            shutil.rmtree(dest)
        elif dest.exists():
            dest.unlink()
        item.rename(dest)
    tmp_out.rmdir()
    sizes = {s: dir_size(out / s) for s in dd}
    sections = [kind.card_section(stats) for kind in dict.fromkeys(type(s) for s in sources)]
    card.write_card(out, libs=opened.libs, stats=stats, sizes=sizes, holdout=opened.validation,
                    train_sources=opened.train, real_heldout=opened.real_heldout, open_seconds=opened.open_seconds,
                    argv=sys.argv, seed=config.seed, hours=config.hours, clip_seconds=config.clip_seconds,
                    sections=[s for s in sections if s])
    return datasets.load_from_disk(str(out))
