"""Shared fixtures: tiny random checkpoints and generated recordings."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))

from tiny_model import make_tiny_ast, make_tiny_whisper  # noqa: E402


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> str:
    return str(make_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper")))


@pytest.fixture(scope="session")
def tiny_ast(tmp_path_factory) -> str:
    labels = ["Piano", "Violin, fiddle", "Speech", "Drum kit", "Marimba, xylophone"]
    return str(make_tiny_ast(tmp_path_factory.mktemp("tiny-ast"), labels))


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 440.0, level: float = 0.5) -> np.ndarray:
    """A harmonic tone with a little noise, (frames, channels) float32."""
    t = np.arange(int(round(seconds * rate))) / rate
    x = sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3))
    x = x / np.abs(x).max() * level if x.size else x
    rng = np.random.default_rng(0)
    x = x + rng.normal(0, 0.02 * level, x.shape)
    return np.repeat(np.asarray(x, np.float32)[:, None], channels, axis=1)


def label_scores(rows: list[dict[str, float]]) -> np.ndarray:
    """A score matrix over the taxonomy from one {label: score} dict per clip (every other label 0)."""
    from instrusense.taxonomy import LABEL_INDEX, LABELS

    s = np.zeros((len(rows), len(LABELS)), np.float32)
    for i, r in enumerate(rows):
        for label, v in r.items():
            s[i, LABEL_INDEX[label]] = v
    return s


def write_sine(path: Path, freq: float, seconds: float = 3.0, sr: int = 44100, **kw) -> None:
    """A 0.5-peak sine written by soundfile (``kw``: its format and subtype): a sample library's note."""
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, 0.5 * np.sin(2 * np.pi * freq * t), sr, **kw)


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git with a committer identity (CI machines have none); its output, stripped."""
    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def write_audio(tmp_path):
    """write_audio(name, seconds=2, rate=16000, channels=1, subtype=None, data=None) -> path."""

    def _write(name: str, seconds: float = 2.0, rate: int = 16000, channels: int = 1,
               subtype: str | None = None, data: np.ndarray | None = None, fmt: str | None = None) -> str:
        path = tmp_path / name
        if data is None:
            data = tone(seconds, rate, channels)
        sf.write(str(path), data, rate, subtype=subtype, format=fmt)
        return str(path)

    return _write


def free_port() -> int:
    """A loopback port nobody listens on, for an app launched by a test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    """Gradio's upload folder for the server of one test module alone, so that clean-up tests see only their
    own files."""
    folder = tmp_path_factory.mktemp("gradio-uploads")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(folder))
        yield folder


def silence_flac(path: Path, rate: int, layout: str, seconds: float) -> Path:
    """A tiny FLAC of digital silence that decodes to `seconds` at `rate` Hz in `layout` (mono, 7.1, ...)."""
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"anullsrc=r={rate}:cl={layout}",
                    "-t", str(seconds), "-c:a", "flac", "-sample_fmt", "s16", str(path)], check=True)
    return path


def mp3_then_junk(folder: Path) -> Path:
    """0.1 s of real MP3, then 200 kB of noise bytes: libmpg123 reads the frames and complains in C."""
    head = folder / "head.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=duration=0.1:sample_rate=44100",
                    "-c:a", "libmp3lame", str(head)], check=True)
    path = folder / "junk.mp3"
    path.write_bytes(head.read_bytes() + np.random.default_rng(0).bytes(200_000))
    return path


CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/install.sh); `playwright install` is never run
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def playwright():
    """One Playwright driver for the session (two sync drivers cannot run in one thread); skipped where
    Chromium or Playwright is missing."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian package chromium, installed by scripts/install.sh)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright):
    """Headless Chromium driven by Playwright."""
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    try:
        yield chromium
    finally:
        chromium.close()


TONES = [("flute", 880.0), ("cello", 110.0), ("piano", 440.0), ("tuba", 55.0)]


@pytest.fixture(scope="session")
def eval_dataset(tmp_path_factory):
    """A tiny instrument DatasetDict of tones: train, validation (solo + one mixture) and real splits."""
    import datasets

    from finetune.data.schema import features

    out = tmp_path_factory.mktemp("eval-data")

    def split(items, source, kind):
        rows = {"audio": [], "labels": [], "source": [], "kind": [], "activity": [], "origin": []}
        for labels, wave, src in items:
            rows["audio"].append({"array": wave, "sampling_rate": 16000})
            rows["labels"].append(labels)
            rows["source"].append(src or source)
            rows["kind"].append(kind if len(labels) == 1 else "mixture")
            rows["activity"].append([[1.0] * 40 for _ in labels])
            rows["origin"].append("rendered")
        return datasets.Dataset.from_dict(rows, features=features())

    solo = [([label], tone(4.0, 16000, freq=f, level=lv)[:, 0], None) for label, f in TONES for lv in (0.2, 0.5, 0.8)]
    pair = tone(4.0, 16000, freq=880.0)[:, 0] * 0.5 + tone(4.0, 16000, freq=110.0)[:, 0] * 0.5
    datasets.DatasetDict({
        "train": split(solo, "synthetic", "note"),
        "validation": split(solo[::3] + [(["flute", "cello"], pair, None)], "heldout", "note"),
        "real": split([(lab, w, "real-eval" if i % 2 else "other") for i, (lab, w, _) in enumerate(solo[1::3])],
                      "", "real"),
    }).save_to_disk(str(out))
    return str(out)
