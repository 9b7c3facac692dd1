"""Build the app's example clips from CC0 recordings in shared/real-eval (run once; outputs committed)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "real-eval"
OUT = REPO / "examples"
SR = 16000
PICKS = {  # label -> clip index in labels.csv order (first CC0 clip of each label)
    "saxophone": 0, "electric_piano": 0, "acoustic_guitar": 3, "string_section": 0,
}


def main() -> None:
    rows = list(csv.DictReader(open(REAL / "labels.csv")))
    OUT.mkdir(exist_ok=True)
    chosen, credits = {}, []
    for label, nth in PICKS.items():
        cands = [r for r in rows if r["label"] == label and r["licence"].startswith("CC0")]
        row = cands[nth]
        audio, sr = sf.read(REAL / row["file"], dtype="float32")
        assert sr == SR
        chosen[label] = audio
        credits.append(f"| {label} | {row['original']} | {row['licence']} |")
    for label in ("saxophone", "acoustic_guitar"):
        sf.write(OUT / f"{label}.flac", chosen[label], SR)
    # A medley: instruments enter one after another, overlapping, so the timeline has something to show.
    parts = ["electric_piano", "saxophone", "string_section", "acoustic_guitar"]
    total = np.zeros(int(SR * (3.0 * len(parts) + 1.5)), np.float32)
    for i, label in enumerate(parts):
        clip = chosen[label] / (np.abs(chosen[label]).max() + 1e-9) * 0.5
        start = int(i * 3.0 * SR)
        total[start:start + len(clip)] += clip[: len(total) - start]
    sf.write(OUT / "medley.flac", total / np.abs(total).max() * 0.9, SR)
    (OUT / "CREDITS.md").write_text(
        "# Example clips\n\nMade by `scripts/make_examples.py` from CC0 recordings in `shared/real-eval` "
        "(collected from the Discord SFZ GM Bank and Karoryfer Weresax). `medley.flac` overlaps electric "
        "piano, saxophone, string section and acoustic guitar, entering every 3 s.\n\n"
        "| label | original sample | licence |\n|---|---|---|\n" + "\n".join(credits) + "\n")


if __name__ == "__main__":
    main()
