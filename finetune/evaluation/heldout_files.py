"""Held-out real libraries file by file: every recorded note of a held-out folder library, analysed as a user would.

    python -m finetune.evaluation.heldout_files --libraries cache/libraries \
        --model shipped=models/instrusense:int8 --model before=runs/shipped-before-v6half:int8 [--names mtg_violin ...]

``real_heldout`` plays each held-out library through the sampler (40 clips of notes and phrases, drawn with the
other labels). The hidden orchestral set issue 38 is judged on is recorded single notes, so this scores each file of
a held-out plain-folder library of the manifest (``role: heldout`` with a ``folder``: the files its ``glob`` and
``note_regex`` or ``chord_regex`` take, as the build takes them; with an ``unpack``: the held notes it writes)
through the library's own file analysis, the path of ``python -m instrusense analyze``. Per library: files,
top-1 for each model, the labels it names instead, and each model's difference from the first, paired by file,
with its bootstrap standard error (the tolerance a per-label bar is read with). Fetch the libraries first
(``python -m finetune.data.libraries fetch``); a library whose samples the sampler cannot read gets its FLAC
copies here as in a build; one not fetched is left out with a warning.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers import HfArgumentParser

from finetune.data.engines.sfz import folder_files, transcode_to_flac, unpacked_sfz
from finetune.data.libraries import library_root, load_manifest
from finetune.data.sources import LibrarySpec
from finetune.evaluation.evaluate import gather_models, model_specs
from finetune.evaluation.real_mixtures import paired_difference
from instrusense.analysis import analyze_file
from instrusense.audio import AudioError
from instrusense.logs import configure_logging
from instrusense.model import ModelUnavailableError, load_tagger
from instrusense.settings import Settings

log = logging.getLogger("finetune.evaluation.heldout_files")


def heldout_folders(specs: tuple[LibrarySpec, ...], names: list[str] | None = None) -> list[LibrarySpec]:
    """The held-out plain-folder and unpacked libraries of the manifest (all of them, or those named)."""
    chosen = [s for s in specs if s.role == "heldout" and (s.folder or s.unpack)]
    if names:
        unknown = sorted(set(names) - {s.name for s in chosen})
        if unknown:
            raise ValueError(f"not a held-out folder library: {unknown}; valid: {sorted(s.name for s in chosen)}")
        chosen = [s for s in chosen if s.name in names]
    return chosen


def library_files(spec: LibrarySpec, root: Path) -> list[Path]:
    """Every file the build would map for ``spec`` (not only the first per key): a recorded note or strum each.
    Samples the build copies to FLAC first (``transcode``) are copied here the same way."""
    checkout = library_root(spec, root)
    if spec.unpack:  # samples packed in source code: the held notes the unpacker wrote, one per recording
        return sorted(unpacked_sfz(spec, checkout).parent.glob("*.wav")) if checkout.is_dir() else []
    if spec.transcode and checkout.is_dir():
        transcode_to_flac(checkout, spec.transcode)
    pattern = spec.folder.get("note_regex") or spec.folder["chord_regex"]
    return [f for f, _ in folder_files(checkout / spec.folder["path"], spec.folder["glob"], pattern,
                                       spec.folder.get("min_seconds", 0.0))]


def top_labels(files: list[Path], tagger, settings: Settings) -> list[str | None]:
    """The first-ranked label of each file (None where the file cannot be analysed: logged, not fatal)."""
    out: list[str | None] = []
    for f in files:
        try:
            out.append(analyze_file(f, tagger, settings).labels[0].label)
        except AudioError as err:
            log.warning("%s: %s", f, err)
            out.append(None)
    return out


def library_rows(label: str, tops: dict[str, list[str | None]]) -> dict[str, dict]:
    """Per model: files, right first, the labels named instead, and the paired difference from the first model."""
    names = list(tops)
    right = {m: np.array([t == label for t in tops[m]]) for m in names}
    rows = {}
    for m in names:
        diff, se = paired_difference(right[names[0]], right[m])
        rows[m] = {"files": len(right[m]), "top1": int(right[m].sum()),
                   "instead": dict(Counter(t or "(error)" for t in tops[m] if t != label).most_common()),
                   "difference": diff * len(right[m]), "se": se * len(right[m])}
    return rows


def render_markdown(results: dict[str, dict], labels: dict[str, str]) -> str:
    lines = ["| library | label | model | files | top-1 | named instead | difference from the first (SE) |",
             "|---|---|---|---|---|---|---|"]
    for lib, rows in results.items():
        for i, (model, r) in enumerate(rows.items()):
            instead = ", ".join(f"{k} {v}" for k, v in list(r["instead"].items())[:4]) or "–"
            diff = "–" if i == 0 else f"{r['difference']:+.0f} ({r['se']:.1f})"
            share = 100 * r["top1"] / r["files"] if r["files"] else float("nan")
            lines.append(f"| {lib} | {labels[lib]} | {model} | {r['files']} | {r['top1']} ({share:.0f} %) | "
                         f"{instead} | {diff} |")
    return "\n".join(lines) + "\n"


@dataclass
class HeldoutFilesArguments:
    model: list[str] = field(metadata={"help": "NAME=PATH[:int8], repeatable; differences are from the first"})
    libraries: str = field(default="cache/libraries", metadata={
        "help": "the fetched libraries (python -m finetune.data.libraries fetch --out)"})
    names: list[str] = field(default_factory=list, metadata={
        "help": "held-out folder libraries to score (default: every one in the manifest)"})


def main(argv: list[str] | None = None) -> int:
    configure_logging("INFO")
    argv = sys.argv[1:] if argv is None else argv
    (a,) = HfArgumentParser(HeldoutFilesArguments).parse_args_into_dataclasses(args=gather_models(argv))
    settings = Settings()  # the shipped defaults, not the shell's INSTRUSENSE_* variables
    try:
        specs = heldout_folders(load_manifest(), a.names or None)
        files = {s.name: library_files(s, Path(a.libraries)) for s in specs}
        for name in [n for n, f in files.items() if not f]:
            log.warning("%s: no files under %s (not fetched?), left out", name, a.libraries)
        specs = [s for s in specs if files[s.name]]
        if not specs:
            raise ValueError(f"no held-out library files under {a.libraries}: python -m finetune.data.libraries fetch")
        tops: dict[str, dict[str, list[str | None]]] = {s.name: {} for s in specs}
        for m in model_specs(a.model):
            tagger = load_tagger(m.path, 0, m.int8, "cpu" if m.int8 else "auto")
            for s in specs:
                tops[s.name][m.name] = top_labels(files[s.name], tagger, settings)
            log.info("scored %s", m.name)
    except (OSError, ValueError, ModelUnavailableError) as err:
        log.error("%s", err)
        return 2
    labels = {s.name: s.label for s in specs}
    sys.stdout.write(render_markdown({n: library_rows(labels[n], t) for n, t in tops.items()}, labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
