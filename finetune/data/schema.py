"""The columns every split of the instrument dataset has (rendered, real and bring-your-own data)."""

from __future__ import annotations

import datasets

SAMPLE_RATE = 16000
FPS = 10  # activity frames per second: frame i covers [i/10, (i+1)/10) s
# The dataset every command reads unless told otherwise: the build models are chosen and evaluated on
# (finetune/README.md, "Training data"; the shipped model's last stage trained on v6, whose train split v8 extends).
DEFAULT_DATASET = "data/instruments-v9"


def features() -> datasets.Features:
    return datasets.Features({
        "audio": datasets.Audio(sampling_rate=SAMPLE_RATE),
        "labels": datasets.List(datasets.Value("string")),  # taxonomy keys present in the clip
        "source": datasets.Value("string"),  # sample library or recording set
        "kind": datasets.Value("string"),  # note, phrase, chord, drums (grooves), hits (drum one-shots), mixture, real, negative
        "activity": datasets.List(datasets.List(datasets.Value("float32"))),  # parallel to labels
        "origin": datasets.Value("string"),  # "rendered" (a SoundFont or synth) or "real" (recorded notes)
    })
