"""What a corpus job analyses: a folder walked recursively, a text file of paths, or a `datasets` dataset.

A job lists its items once in the parent; each worker reopens the source from its (picklable) description,
so a dataset is memory-mapped in every process rather than shipped to it.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from instrusense.audio import AudioError

AUDIO_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                              ".au", ".caf", ".w64", ".m4a", ".aac", ".mp4", ".webm"})
"""Files a folder walk picks up (by extension; a file that then fails to decode gets an error row)."""


class CorpusError(ValueError):
    """A job that cannot start (no such root, no audio column, Ray missing); the message says what to do."""


@dataclass(frozen=True)
class Source:
    root: str
    kind: str
    """"folder", "list" (a text file of paths, or one audio file) or "dataset"."""
    audio_column: str = "audio"
    split: str | None = None


@dataclass(frozen=True)
class Item:
    file: str
    """The row's key: the path as found or listed, or SPLIT[INDEX] for a dataset row."""
    path: str = ""
    """Where the file is read from ("" for a dataset row)."""
    split: str = ""
    index: int = -1


def _is_saved_dataset(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("dataset_dict.json", "state.json"))


def open_source(root: str, audio_column: str = "audio", split: str | None = None) -> Source:
    """Describe ROOT: a saved dataset folder, any other folder, a file of paths, or a Hub dataset id."""
    path = Path(root)
    if path.is_dir():
        return Source(root, "dataset" if _is_saved_dataset(path) else "folder", audio_column, split)
    if path.is_file():
        return Source(root, "list", audio_column, split)
    if root.count("/") == 1 and not root.startswith((".", "/", "~")):
        return Source(root, "dataset", audio_column, split)  # a Hub id, where the Hub is reachable
    raise CorpusError(f"{root}: no such folder, file list or dataset.")


def list_items(source: Source) -> list[Item]:
    """Every item of the source, in a stable order (the order resumption relies on is by key, not position)."""
    if source.kind == "folder":
        root = Path(source.root)
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
        return [Item(str(p), str(p)) for p in files]
    if source.kind == "list":
        return _listed_items(Path(source.root))
    return [Item(f"{name}[{i}]", split=name, index=i)
            for name, split in _splits(source.root, source.audio_column, source.split).items()
            for i in range(len(split))]


def _listed_items(listing: Path) -> list[Item]:
    """One audio file stands for itself; a text file lists paths, one a line, relative to its own folder."""
    if listing.suffix.lower() in AUDIO_EXTENSIONS:
        return [Item(str(listing), str(listing))]
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise CorpusError(f"{listing} is neither audio nor a text file of paths.") from None
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [Item(entry, str(listing.parent / Path(entry).expanduser())) for entry in dict.fromkeys(entries)]


@functools.lru_cache(maxsize=4)
def _splits(root: str, audio_column: str, split: str | None) -> dict:
    """The dataset's splits (name → Dataset holding only the audio column, undecoded), opened once per process."""
    try:
        import datasets
    except ImportError:
        raise CorpusError("Reading a dataset needs the `datasets` package (pinned in requirements-dev.txt).") from None
    try:
        loaded = datasets.load_from_disk(root) if Path(root).is_dir() else datasets.load_dataset(root)
    except Exception as exc:
        raise CorpusError(f"Could not open the dataset {root}: {exc}") from exc
    splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"data": loaded}
    if split is not None:
        if split not in splits:
            raise CorpusError(f"The dataset {root} has no split {split!r}; it has {sorted(splits)}.")
        splits = {split: splits[split]}
    for name, ds in splits.items():
        if audio_column not in ds.column_names:
            raise CorpusError(f"The dataset {root} has no column {audio_column!r} (split {name!r} has "
                              f"{ds.column_names}); name the audio column with --audio-column.")
    return {name: undecoded(ds.select_columns([audio_column]), audio_column) for name, ds in splits.items()}


def undecoded(ds, audio_column: str):
    """The dataset with its audio column as stored ({bytes, path}), so every item decodes as a file does."""
    import datasets

    if isinstance(ds.features[audio_column], datasets.Audio):
        return ds.cast_column(audio_column, datasets.Audio(decode=False))
    return ds


@contextlib.contextmanager
def item_file(source: Source, item: Item) -> Iterator[str]:
    """A path on disk holding the item's audio, for as long as the block runs."""
    if item.path:
        yield item.path
        return
    value = _splits(source.root, source.audio_column, source.split)[item.split][item.index][source.audio_column]
    with value_file(value, item.file) as path:
        yield path


@contextlib.contextmanager
def value_file(value: object, name: str) -> Iterator[str]:
    """A path holding a dataset's audio value: the file it names, or its bytes in a temporary file."""
    if isinstance(value, str) and value:
        yield value
        return
    if isinstance(value, dict) and value.get("bytes"):
        stored = Path(str(value.get("path") or "")).name or "audio"
        with tempfile.TemporaryDirectory(prefix="instrusense-") as folder:
            path = Path(folder) / stored
            path.write_bytes(value["bytes"])
            yield str(path)
        return
    if isinstance(value, dict) and value.get("path"):
        yield str(value["path"])
        return
    raise AudioError(f"{name} holds no audio (neither the bytes of a file nor a path).")
