"""The dataset card (README.md beside the saved DatasetDict), written from the build's own measurements."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
from pathlib import Path

from finetune.data.sources import SOURCES
from instrusense.taxonomy import LABELS

HOLDOUT_REASON = (
    "The default held-out library is **sf_gmbank** (the csound GM bank): it is a complete General MIDI "
    "set (all 28 labels sound in it), so validation scores every label, and it shares no samples with "
    "any training library. The alternatives are worse: FluidR3 and MuseScore General share samples "
    "(MuseScore General was built from FluidR3Mono), so holding out only one of them leaks its sounds "
    "into training, and holding out both leaves only small fonts to train on; freepats lacks 31 of the "
    "86 mapped programs (no viola, banjo, choir aahs, extra drum kits), so it would validate fewer "
    "labels. TimGM6mb would do as well, but training keeps it as an independent lineage next to "
    "FluidR3/MuseScore and freepats."
)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def independent_training_lineages(libs, train_sources) -> dict[str, list[str]]:
    """label -> sorted lineages among the training libraries that have it."""
    out = {}
    for label in LABELS:
        out[label] = sorted({libs[n].renderer.source.lineage for n in train_sources if label in libs[n].by_label})
    return out


def _left_out(name: str, lib) -> str:
    """What a library does not play: a drum kit plays one kit."""
    if lib.renderer.source.drum_kit:
        return "a single drum kit, played as GM Standard Kit"
    return ", ".join(f"{k} ({v})" for k, v in lib.excluded.items()) or "none"


def write_card(out: Path, *, libs, stats, sizes: dict[str, int], holdout, train_sources, open_seconds: float,
               argv, seed: int, hours: float, clip_seconds: float, real_heldout=(), sections=()) -> Path:
    """``sections``: the row sources' own sections (``RowSource.card_section``), after the others."""
    known = ("train", "validation", "real_heldout", "real", "negatives")
    splits = [s for s in known if stats.clips[s]] + [s for s in stats.clips if s not in known]
    rendered_seconds = stats.seconds["train"] + stats.seconds["validation"]
    rendered_bytes = sizes.get("train", 0) + sizes.get("validation", 0)
    speed = rendered_seconds / stats.render_wall if stats.render_wall else float("nan")
    per_hour = rendered_bytes / (rendered_seconds / 3600) if rendered_seconds else float("nan")
    lineages = independent_training_lineages(libs, train_sources)
    short = {l: v for l, v in lineages.items() if len(v) < 2}
    cmd = "python -m finetune.data " + " ".join(shlex.quote(a) for a in argv[1:]) if argv else ""

    parts = [
        "---\npretty_name: InstruSense rendered instruments\nlicense: other\n"
        "task_categories:\n- audio-classification\n---",
        "# InstruSense instrument dataset",
        f"Built {datetime.datetime.now().isoformat(timespec='seconds')} with `{cmd}` "
        f"(seed {seed}, {hours:g} h requested, {clip_seconds:g} s clips, 16 kHz mono).",
        "Open with `datasets.load_from_disk(path)`. Splits: **train** (rendered from the training "
        "libraries), **validation** (rendered only from held-out libraries never seen in training), "
        "**real_heldout** (real sample libraries held out of training, when built with `--libraries`), "
        "**real** (real recordings, evaluation only, never for training).",
        "Columns: `audio` (Audio, 16 kHz mono), `labels` (taxonomy keys present), `source` (library or "
        "recording set), `kind` (note, phrase, chord, drums (grooves), hits (drum one-shots), mixture, real), "
        "`activity` (per label, 0/1 at 10 frames/s; frame i covers [i/10, (i+1)/10) s; all ones for real clips), `origin` (rendered or real).",
        "## Splits\n" + _table(
            ["split", "clips", "audio (h)", "sources", "size on disk"],
            [[s, stats.clips[s], f"{stats.seconds[s] / 3600:.2f}",
              ", ".join(sorted({src for (sp, src) in stats.source if sp == s})), _mb(sizes.get(s, 0))]
             for s in splits]),
        "## Measured rendering speed and size\n" + _table(
            ["measure", "value"],
            [["rendered audio (train + validation)", f"{rendered_seconds:.0f} s ({rendered_seconds / 3600:.2f} h)"],
             ["render + encode + write wall time", f"{stats.render_wall:.1f} s"],
             ["throughput", f"**{speed:.0f}x real time** (audio seconds per wall second)"],
             ["opening libraries (one-off, MuseScore sf3 decoding)", f"{open_seconds:.1f} s"],
             ["size per hour of rendered audio (FLAC 16-bit in Arrow)", _mb(int(per_hour))],
             ["clips re-drawn (silent part, inaudible label)", stats.retries],
             ["machine", f"{platform.machine()}, {os.cpu_count()} CPUs visible, Python {platform.python_version()}, "
                         f"niced single process"]]),
        "## Held-out library\n" + f"Validation libraries: {', '.join(holdout)}; training libraries: "
        f"{', '.join(train_sources)}." + (f" Held-out real libraries (real_heldout): {', '.join(real_heldout)}."
                                       if real_heldout else "") + "\n\n" + HOLDOUT_REASON,
        real_library_section(libs, stats),
        "## Clips per label and split\n" + _table(
            ["label"] + splits, [[l] + [stats.label[s, l] for s in splits] for l in LABELS]),
        "## Training clips per label and library\n" + _table(
            ["label"] + list(train_sources) + ["independent lineages"],
            [[l] + [stats.label_source["train", l, n] for n in train_sources] + [len(lineages[l])] for l in LABELS]),
        "## Clips per source and split\n" + _table(
            ["source"] + splits,
            [[src] + [stats.source[s, src] for s in splits] for src in sorted({src for (_, src) in stats.source})]),
        "## Clips per kind and split\n" + _table(
            ["kind"] + splits,
            [[k] + [stats.kind[s, k] for s in splits] for k in sorted({k for (_, k) in stats.kind})]),
        "## Labels with fewer than two independent training sources\n" + (
            "FluidR3 and MuseScore General count as one lineage (shared samples).\n\n" + _table(
                ["label", "training lineages", "why"],
                [[l, ", ".join(v) or "none", _why(l, libs, train_sources)] for l, v in short.items()])
            if short else "None: every label has training audio from at least two independent sample libraries "
                          "(FluidR3 and MuseScore General counted as one lineage, since they share samples)."),
        "Labels the **real** split lacks (no real recordings on these machines): " + (
            ", ".join(l for l in LABELS if not stats.label["real", l]) or "none") + ".",
        "## Programs left out per library\n" + "\n".join(f"- **{n}**: {_left_out(n, lib)}" for n, lib in libs.items()),
        "## What the clips contain\n"
        "- General MIDI programs mapped to labels in `finetune/data/gm_programs.csv` (with realistic pitch ranges); "
        "a program is used only if the library has it and its test note sounds (not silent, not the piano "
        "fall-back).\n"
        "- `note`: one held note (as sample libraries record instruments) or 1-4 isolated notes, across the "
        "playing range widened by 5 semitones down and an octave up, short and long, soft and loud (vibrato by "
        "pitch bend on sustained instruments); `phrase`: scale melodies (legato or detached, rests) and arpeggios "
        "at 60-180 bpm; `chord`: 2-4 block, strummed or rolled chords (polyphonic instruments only); `drums`: "
        "16-step grooves with fills and crashes on the GM drum kits; `hits`: 1-3 kit pieces struck alone "
        "(drum one-shots); `mixture`: 2-4 different instruments of one library, random "
        "levels, some entering late or stopping early (activity tells who plays when).\n"
        "- Rendering is dry (no synth reverb/chorus) and peak-normalised to a random level between -20 and -1 "
        "dBFS; room, microphone, noise and compression effects are applied on the fly in training by "
        "`finetune.augment.augment`.\n"
        "- Activity: frames between a note's on and off (a drum hit: 0.3 s) where the part is audible "
        "(frame RMS above the part's loudest frame - 45 dB).",
        "## Sources and licences\n" + "\n".join(f"- `{n}`: {s.description}" for n, s in SOURCES.items()) +
        "".join(f"\n- `{n}`: {lib.renderer.source.description}" for n, lib in libs.items() if n not in SOURCES) +
        "\n- non-instrument negatives: see their section\n- `real-eval`: shared/real-eval (see its README: CC0 / CC-BY 3.0 Salamander Grand Piano by Alexander "
        "Holm)\n- `sonic-pi`: Debian sonic-pi-samples (freesound.org, CC0)\n- `lmms`: Debian lmms-common samples",
    ]
    parts.extend(sections)
    card = "\n\n".join(parts) + "\n"
    path = Path(out) / "README.md"
    path.write_text(card)
    (Path(out) / "build_stats.json").write_text(json.dumps({
        "rendered_seconds": rendered_seconds, "render_wall_seconds": stats.render_wall,
        "throughput_x_realtime": speed, "bytes_per_rendered_hour": per_hour, "sizes": sizes,
        "clips": dict(stats.clips), "holdout": list(holdout), "train_sources": list(train_sources),
        "labels_short_of_two_lineages": short}, indent=1))
    return path


def real_library_section(libs, stats) -> str:
    """The real sample libraries used: where each comes from (repository, commit, licence) and its clips."""
    real = [(n, lib.renderer.source.library) for n, lib in libs.items() if lib.renderer.source.origin == "real"]
    if not real:
        return "## Real sample libraries\nNone (built without `--libraries`)."
    return ("## Real sample libraries\nRecorded notes of real instruments played through the sfizz SFZ sampler "
            "(`finetune/data/libraries.json`, fetched by `python -m finetune.data.libraries fetch`). Role "
            "`train`: in the train split; `heldout`: only in **real_heldout** (a source-disjoint real "
            "validation, never trained on).\n\n" + _table(
                ["library", "repository", "commit", "licence", "label", "role", "train clips", "real_heldout clips"],
                [[n, s.repo, s.commit[:12], s.licence, s.label, s.role, stats.source["train", n],
                  stats.source["real_heldout", n]] for n, s in real]))


def _why(label: str, libs, train_sources) -> str:
    lacking = [n for n in train_sources if label not in libs[n].by_label]
    return ("not in " + ", ".join(lacking)) if lacking else "only one training lineage selected"
