"""The fixed InstruSense label taxonomy.

Label and family keys are a public contract (the CLI JSON and the model's ``id2label`` use them);
display names are free. Everything else in the project derives its label lists from here.
"""

from __future__ import annotations

import re

# family key -> label keys, in the order of the spec.
FAMILIES: dict[str, tuple[str, ...]] = {
    "keyboard": ("piano", "electric_piano", "organ", "harpsichord", "accordion"),
    "plucked_string": ("acoustic_guitar", "electric_guitar", "bass_guitar", "banjo", "harp"),
    "bowed_string": ("violin", "viola", "cello", "double_bass", "string_section"),
    "woodwind": ("flute", "clarinet", "oboe", "bassoon", "saxophone"),
    "brass": ("trumpet", "trombone", "french_horn", "tuba"),
    "percussion": ("drums", "mallet_percussion"),
    "voice": ("voice",),
    "electronic": ("synthesizer",),
}

LABELS: tuple[str, ...] = tuple(label for labels in FAMILIES.values() for label in labels)
FAMILY_OF: dict[str, str] = {label: fam for fam, labels in FAMILIES.items() for label in labels}
LABEL_INDEX: dict[str, int] = {label: i for i, label in enumerate(LABELS)}

_DISPLAY_OVERRIDES = {
    "french_horn": "French horn",
    "electric_piano": "Electric piano",
    "mallet_percussion": "Mallet percussion",
    "string_section": "String section",
    "double_bass": "Double bass",
}

# Names other checkpoints use for our labels (AudioSet ontology, GM programs, common spellings), so
# that a generic audio-classification checkpoint can be mapped onto the taxonomy.
_ALIASES: dict[str, str] = {
    "acoustic_grand_piano": "piano",
    "grand_piano": "piano",
    "keyboard_musical": "piano",
    "rhodes": "electric_piano",
    "hammond_organ": "organ",
    "electronic_organ": "organ",
    "pipe_organ": "organ",
    "guitar": "acoustic_guitar",
    "steel_guitar_slide_guitar": "acoustic_guitar",
    "bass": "bass_guitar",
    "electric_bass": "bass_guitar",
    "violin_fiddle": "violin",
    "fiddle": "violin",
    "contrabass": "double_bass",
    "string_ensemble": "string_section",
    "strings": "string_section",
    "bowed_string_instrument": "string_section",
    "orchestra": "string_section",
    "sax": "saxophone",
    "alto_saxophone": "saxophone",
    "tenor_saxophone": "saxophone",
    "horn": "french_horn",
    "drum_kit": "drums",
    "drum": "drums",
    "snare_drum": "drums",
    "bass_drum": "drums",
    "cymbal": "drums",
    "hi_hat": "drums",
    "marimba_xylophone": "mallet_percussion",
    "marimba": "mallet_percussion",
    "xylophone": "mallet_percussion",
    "vibraphone": "mallet_percussion",
    "glockenspiel": "mallet_percussion",
    "celesta": "mallet_percussion",
    "tubular_bells": "mallet_percussion",
    "singing": "voice",
    "choir": "voice",
    "vocal": "voice",
    "vocals": "voice",
    "synth": "synthesizer",
}


def display_name(label: str) -> str:
    """Human-readable name of a label key ("french_horn" -> "French horn")."""
    return _DISPLAY_OVERRIDES.get(label, label.replace("_", " ").capitalize())


def normalize_key(name: str) -> str:
    """Lower-case, underscore-separated form of any label spelling ("Violin, fiddle" -> "violin_fiddle")."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def to_taxonomy(name: str) -> str | None:
    """The taxonomy key a model's label name stands for, or None if it is not an instrument we know."""
    key = normalize_key(name)
    if key in LABEL_INDEX:
        return key
    return _ALIASES.get(key)
