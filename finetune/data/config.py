"""Everything a dataset build takes, in one object: the flags of ``python -m finetune.data`` (``--help``) and
the argument of :func:`finetune.data.build.build`, so that a new kind of source adds its options here only."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from finetune.data.sources import SOURCES

DEFAULT_HOLDOUT = ("sf_gmbank",)
REAL_EVAL_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "real-eval"  # beside the clone


@dataclass
class BuildConfig:
    out: str = field(metadata={"help": "output folder (DatasetDict + README.md card)"})
    hours: float = field(default=1.0, metadata={"help": "rendered audio (train + validation), hours"})
    seed: int = field(default=0, metadata={"help": "render seed (same seed, same dataset)"})
    clip_seconds: float = field(default=4.0, metadata={"help": "length of every rendered clip"})
    holdout: list[str] = field(default_factory=lambda: list(DEFAULT_HOLDOUT), metadata={
        "help": "sample libraries held out of training; they alone make the validation split",
        "choices": sorted(SOURCES)})
    sources: list[str] | None = field(default=None, metadata={
        "help": "libraries to render from; none given: every installed one", "choices": sorted(SOURCES)})
    one_shots: int = field(default=0, metadata={
        "help": "extra training clips of drum one-shots (1-3 kit pieces struck alone), on top of the hours; "
                "every other clip stays as it is without them"})
    negatives: int = field(default=0, metadata={
        "help": "extra training clips without any instrument (speech, noise, clicks, hum, tones, sweeps), on top "
                "of the hours; with them, a held-out split 'negatives' of other speakers, voices and sounds"})
    negatives_heldout: int = field(default=300, metadata={"help": "clips of the held-out 'negatives' split"})
    fsdd: str | None = field(default=None, metadata={
        "help": "Free Spoken Digit Dataset for speech negatives: a checked-out folder or its bare git mirror; "
                "none: espeak-ng speech alone"})
    val_fraction: float = field(default=0.15, metadata={"help": "share of the hours for validation"})
    no_real: bool = field(default=False, metadata={"help": "skip the real-recordings split"})
    real_eval_dir: str = field(default=str(REAL_EVAL_DIR), metadata={"help": "the shared real-eval recordings"})
    libraries: str | None = field(default=None, metadata={
        "help": "folder of fetched real sample libraries (python -m finetune.data.libraries fetch): train-role "
                "ones join the train split, held-out ones make the real_heldout split; none: no real libraries"})
    manifest: str | None = field(default=None, metadata={
        "help": "the real-library manifest whose roles the build follows; none: finetune/data/libraries.json"})
    quiet: bool = field(default=False, metadata={"help": "no progress bar"})

    def check(self) -> None:
        """Raise ValueError for counts no build can honour (sources are checked when they are opened)."""
        if self.one_shots < 0 or self.negatives < 0 or self.negatives_heldout < 1:
            raise ValueError(f"one_shots and negatives must be >= 0 and negatives_heldout >= 1, got "
                             f"{self.one_shots}, {self.negatives}, {self.negatives_heldout}")
