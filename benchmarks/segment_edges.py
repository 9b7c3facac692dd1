"""Segment edges against known onsets and offsets: ``python -m benchmarks.segment_edges``.

Builds recordings in which it is known who plays when: the app's example clips (their parts are known
from `scripts/make_examples.py`), and clips assembled from the real single-instrument recordings of
shared/real-eval (notes of one instrument one after another make a phrase; phrases of different
instruments follow each other after silence, follow each other directly, or one enters and leaves over
another that plays throughout; every onset off the 1.5 s hop grid). Each goes through the real analysis
(`analyze_file` / `analyze_recording`, the shipped model, default settings), and its segments are
compared with the truth: per true segment the onset and offset error (seconds), and per clip the
missed time (true time of a label that no segment of it covers), the extra time (segment time of a
label that plays in the clip, outside its truth: edges placed too wide) and the wrong-label time
(segments of labels that do not play in the clip: the model's confusions, not its timing). Edge errors
are also split into edges inside the music (another instrument plays across them) and edges beside
silence. Writes the figures as JSON and a markdown table beside it (``.md``), keeping the hand-written
notes at the end of an existing page.

Real-eval is a validation set, never training data: here its recordings are only cut and mixed to time
the edges of the analysis.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks import report
from benchmarks.machine import load_average, machine_record
from instrusense.settings import REPO_ROOT

log = logging.getLogger("benchmarks")

RATE = 16_000
REAL_EVAL = REPO_ROOT.parent / "shared" / "real-eval"
EXAMPLES = REPO_ROOT / "examples"
AUDIBLE_DB = -30.0
"""A part plays from its first to its last 20 ms frame within this many dB of its loudest frame."""
FRAME_S = 0.02
KINDS = ("apart", "back-to-back", "over a bed")
CLIPS_PER_KIND = 6
CLOSE_S = 0.5
"""An edge this close to the truth counts as placed well (the issue's bar)."""
NEAR_S = 0.25


@dataclass(frozen=True)
class Truth:
    label: str
    start: float
    end: float


@dataclass
class Clip:
    name: str
    kind: str
    truth: list[Truth]
    samples: np.ndarray | None = None
    """Mono float32 at `RATE`; None for a file analysed from `path`."""
    path: Path | None = None


def audible_extent(part: np.ndarray, rate: int = RATE) -> tuple[float, float] | None:
    """(start, end) seconds of a part's audible stretch: first to last 20 ms frame within `AUDIBLE_DB`
    of its loudest frame; None for silence."""
    n = int(rate * FRAME_S)
    frames = len(part) // n + (len(part) % n > 0)
    padded = np.zeros(frames * n, np.float64)
    padded[:len(part)] = part
    rms = np.sqrt(np.mean(padded.reshape(frames, n) ** 2, axis=1))
    if rms.max() <= 0:
        return None
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (AUDIBLE_DB / 20))
    return float(loud[0] * FRAME_S), float(min((loud[-1] + 1) * FRAME_S, len(part) / rate))


# --- The example clips ---------------------------------------------------------------------------------

def _make_examples_module():
    spec = importlib.util.spec_from_file_location("make_examples", REPO_ROOT / "scripts" / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def example_clips(real_root: Path) -> list[Clip]:
    """The three example files with the truth of their parts (rebuilt as `scripts/make_examples.py` made them)."""
    maker = _make_examples_module()
    rows = list(csv.DictReader(open(real_root / "labels.csv")))
    parts = {}
    for label, nth in maker.PICKS.items():
        row = [r for r in rows if r["label"] == label and r["licence"].startswith("CC0")][nth]
        parts[label], _ = sf.read(real_root / row["file"], dtype="float32")
    clips = []
    for label in ("saxophone", "acoustic_guitar"):
        start, end = audible_extent(parts[label])
        clips.append(Clip(f"example {label}", "example", [Truth(label, start, end)], path=EXAMPLES / f"{label}.flac"))
    medley = sf.info(str(EXAMPLES / "medley.flac")).duration
    truth = []
    for i, label in enumerate(["electric_piano", "saxophone", "string_section", "acoustic_guitar"]):
        start, end = audible_extent(parts[label])
        truth.append(Truth(label, 3.0 * i + start, min(3.0 * i + end, medley)))
    clips.append(Clip("example medley", "example", truth, path=EXAMPLES / "medley.flac"))
    return clips


# --- Clips assembled from real single-instrument recordings ------------------------------------------

def load_notes(real_root: Path) -> dict[str, list[np.ndarray]]:
    """Every real-eval recording, trimmed to its audible stretch, by label."""
    notes: dict[str, list[np.ndarray]] = {}
    for row in csv.DictReader(open(real_root / "labels.csv")):
        audio, rate = sf.read(real_root / row["file"], dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if rate != RATE:
            raise SystemExit(f"{row['file']}: expected {RATE} Hz, got {rate}")
        extent = audible_extent(audio)
        if extent is None:
            continue
        note = audio[int(extent[0] * RATE):int(round(extent[1] * RATE))]
        notes.setdefault(row["label"], []).append(note / (np.abs(note).max() + 1e-9))
    return notes


def phrase(rng: np.random.Generator, notes: list[np.ndarray], seconds: float) -> np.ndarray:
    """Notes of one instrument one after another for about `seconds`: each one cut to 0.5–1.5 s (its own
    length at most) with a 20 ms fade-out, at a level between −6 and 0 dB."""
    out, fade = [], np.linspace(1.0, 0.0, int(0.02 * RATE), dtype=np.float32)
    total = 0
    while total < seconds * RATE:
        note = notes[rng.integers(len(notes))]
        n = min(len(note), int(rng.uniform(0.5, 1.5) * RATE))
        piece = note[:n] * np.float32(10 ** (rng.uniform(-6, 0) / 20))
        piece[-len(fade):] *= fade[-min(len(fade), n):]
        out.append(piece)
        total += n
    return np.concatenate(out)


def _place(mix: np.ndarray, part: np.ndarray, at: float, label: str, gain: float = 1.0) -> Truth:
    start = int(round(at * RATE))
    mix[start:start + len(part)] += part * np.float32(gain)
    first, last = audible_extent(part)
    return Truth(label, at + first, at + last)


def assembled_clip(kind: str, index: int, notes: dict[str, list[np.ndarray]]) -> Clip:
    """One clip of the given kind, the same for the same index (seeded): three phrases of different
    instruments with silence between them (apart) or none (back-to-back), or one phrase entering and
    leaving over another that plays throughout at −6 dB (over a bed)."""
    rng = np.random.default_rng(1000 * KINDS.index(kind) + index)
    labels = [str(x) for x in rng.permutation(sorted(notes))]
    lead, tail = rng.uniform(0.5, 3.0), rng.uniform(0.5, 2.0)
    if kind == "over a bed":
        enter, length, after = rng.uniform(3.0, 8.0), rng.uniform(4.0, 9.0), rng.uniform(3.0, 8.0)
        parts = [(labels[0], lead, phrase(rng, notes[labels[0]], enter + length + after), 0.5),
                 (labels[1], lead + enter, phrase(rng, notes[labels[1]], length), 1.0)]
    else:
        parts, at = [], lead
        for label in labels[:3]:
            part = phrase(rng, notes[label], rng.uniform(3.0, 9.0))
            parts.append((label, at, part, 1.0))
            at += len(part) / RATE + (rng.uniform(1.5, 4.0) if kind == "apart" else 0.0)
    end = max(at + len(part) / RATE for _, at, part, _ in parts) + tail
    mix = np.zeros(int(round(end * RATE)), np.float32)
    truth = [_place(mix, part, at, label, gain) for label, at, part, gain in parts]
    return Clip(f"{kind} {index + 1}", kind, truth, samples=mix / np.abs(mix).max() * 0.9)


def all_clips(real_root: Path, per_kind: int = CLIPS_PER_KIND) -> list[Clip]:
    notes = load_notes(real_root)
    return example_clips(real_root) + [assembled_clip(kind, i, notes) for kind in KINDS for i in range(per_kind)]


# --- Scoring ----------------------------------------------------------------------------------------

def _length(intervals: list[tuple[float, float]]) -> float:
    """Total length of a union of intervals."""
    total, reach = 0.0, -np.inf
    for a, b in sorted(intervals):
        a = max(a, reach)
        if b > a:
            total, reach = total + b - a, b
    return total


def _overlap(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    return _length([(max(a, start), min(b, end)) for a, b in intervals if min(b, end) > max(a, start)])


def in_music(truth: list[Truth], part: Truth, at: float) -> bool:
    """Whether another part plays within `NEAR_S` of `at` (an edge of `part`): an edge inside the music,
    which only the windows can place, rather than one beside silence."""
    return any(o.start < at + NEAR_S and o.end > at - NEAR_S for o in truth if o is not part)


def score_clip(truth: list[Truth], segments: list[dict]) -> dict:
    """Edge errors of each true segment (one per label in every clip) and the clip's missed and extra time.

    A true segment is found when a segment of its label overlaps it; its onset error is the distance from
    the first such segment's start, its offset error from the last one's end. Each edge is marked as inside
    the music (another instrument plays within 0.25 s of it) or beside silence."""
    by_label: dict[str, list[tuple[float, float]]] = {}
    for s in segments:
        by_label.setdefault(s["label"], []).append((s["start"], s["end"]))
    rows, missed = [], 0.0
    for t in truth:
        found = sorted((a, b) for a, b in by_label.get(t.label, []) if min(b, t.end) > max(a, t.start))
        covered = _overlap(by_label.get(t.label, []), t.start, t.end)
        missed += t.end - t.start - covered
        row = {"label": t.label, "start": round(t.start, 3), "end": round(t.end, 3), "found": bool(found),
               "onset_error_s": None, "offset_error_s": None, "missed_s": round(t.end - t.start - covered, 3),
               "onset_in_music": in_music(truth, t, t.start), "offset_in_music": in_music(truth, t, t.end)}
        if found:
            row["onset_error_s"] = round(abs(found[0][0] - t.start), 3)
            row["offset_error_s"] = round(abs(found[-1][1] - t.end), 3)
        rows.append(row)
    truth_of = {t.label: (t.start, t.end) for t in truth}
    extra = sum(_length(iv) - _overlap(iv, *truth_of[label]) for label, iv in by_label.items() if label in truth_of)
    wrong = sum(_length(iv) for label, iv in by_label.items() if label not in truth_of)
    return {"segments_true": rows, "missed_s": round(missed, 3), "extra_s": round(extra, 3),
            "wrong_label_s": round(wrong, 3), **summarise(rows)}


def summarise(rows: list[dict]) -> dict:
    """Mean onset, offset and edge error over the found true segments, and how many edges are close."""
    found = [r for r in rows if r["found"]]
    edges = [(r[f"{e}_error_s"], r[f"{e}_in_music"]) for r in found for e in ("onset", "offset")]

    def mean(values):
        return round(float(np.mean(values)), 3) if values else None

    music = [e for e, in_music in edges if in_music]
    return {"found": len(found), "missed_segments": len(rows) - len(found),
            "mean_onset_error_s": mean([r["onset_error_s"] for r in found]),
            "mean_offset_error_s": mean([r["offset_error_s"] for r in found]),
            "mean_edge_error_s": mean([e for e, _ in edges]),
            "edges_within_0_5_s": sum(e <= CLOSE_S for e, _ in edges), "edges": len(edges),
            "mean_edge_error_in_music_s": mean(music), "edges_in_music": len(music),
            "mean_edge_error_beside_silence_s": mean([e for e, in_music in edges if not in_music])}


def overall(clips: list[dict]) -> dict:
    rows = [r for c in clips for r in c["segments_true"]]
    return {"clips": len(clips), "true_segments": len(rows),
            "true_s": round(sum(r["end"] - r["start"] for r in rows), 3),
            "missed_s": round(sum(c["missed_s"] for c in clips), 3),
            "extra_s": round(sum(c["extra_s"] for c in clips), 3),
            "wrong_label_s": round(sum(c["wrong_label_s"] for c in clips), 3), **summarise(rows)}


# --- Running it --------------------------------------------------------------------------------------

def analyse(clip: Clip, tagger, settings):
    from instrusense.analysis import analyze_file, analyze_recording
    from instrusense.audio import Recording

    if clip.path is not None:
        return analyze_file(clip.path, tagger, settings)
    return analyze_recording(Recording(clip.samples, RATE, len(clip.samples) / RATE), tagger, settings)


def run(real_root: Path, model: str | None = None, per_kind: int = CLIPS_PER_KIND) -> dict:
    from instrusense.model import tagger_for
    from instrusense.settings import load_settings

    settings = load_settings({}, model=model)  # defaults, whatever the environment says
    tagger = tagger_for(settings)
    clips = all_clips(real_root, per_kind)
    results = []
    for clip in clips:
        t0 = time.perf_counter()
        analysis = analyse(clip, tagger, settings)
        segments = [{"label": s.label, "start": round(s.start, 3), "end": round(s.end, 3),
                     "confidence": round(s.confidence, 4)} for s in analysis.segments]
        results.append({"name": clip.name, "kind": clip.kind, "duration": round(analysis.analysed_seconds, 3),
                        "seconds_to_analyse": round(time.perf_counter() - t0, 3),
                        "labels": {s.label: round(s.confidence, 4) for s in analysis.labels if s.confidence >= 0.05},
                        "truth": [t.__dict__ for t in clip.truth], "segments": segments,
                        **score_clip(clip.truth, segments)})
        log.info("%-16s mean edge error %s s, missed %.2f s, extra %.2f s", clip.name,
                 results[-1]["mean_edge_error_s"], results[-1]["missed_s"], results[-1]["extra_s"])
    kinds = {kind: overall([c for c in results if c["kind"] == kind]) for kind in ("example",) + KINDS}
    model_path = Path(settings.model)
    shown_model = str(model_path.relative_to(REPO_ROOT)) if model_path.is_relative_to(REPO_ROOT) else settings.model
    return {"config": {"model": shown_model, "threshold": settings.threshold, "hop_s": settings.hop_seconds,
                       "extend_threshold": getattr(settings, "extend_threshold", None),
                       "audible_db": AUDIBLE_DB, "clips_per_kind": per_kind, "real_eval": str(real_root)},
            "machine": machine_record(), "load_average_end": load_average(),
            "overall": overall(results), "by_kind": kinds, "clips": results}


NOTES_MARKER = "<!-- Written by hand below this line; `python -m benchmarks.segment_edges` keeps it. -->"


def markdown(results: dict, before: dict | None = None, notes: str = "") -> str:
    """The results as a markdown page: overall figures, a table per clip and kind, the segments found;
    `notes` (the hand-written part of the previous page) goes at the end."""
    m, o = results["machine"], results["overall"]

    def figures(r: dict) -> str:
        fmt = report.fmt
        return (f"mean edge error {fmt(r['mean_edge_error_s'])} s (onsets {fmt(r['mean_onset_error_s'])} s, "
                f"offsets {fmt(r['mean_offset_error_s'])} s), {r['edges_within_0_5_s']}/{r['edges']} edges within "
                f"{CLOSE_S} s; inside the music {fmt(r['mean_edge_error_in_music_s'])} s ({r['edges_in_music']} "
                f"edges), beside silence {fmt(r['mean_edge_error_beside_silence_s'])} s; "
                f"{r['missed_segments']} of {r['true_segments']} true segments not found, missed "
                f"{r['missed_s']:.1f} s, extra {r['extra_s']:.1f} s, wrong-label {r['wrong_label_s']:.1f} s")

    lines = ["# Segment edges against known onsets", "",
             "Generated by `python -m benchmarks.segment_edges --before OLD.json` (what it builds and measures: its "
             "docstring; edge errors count found true segments only).", "",
             f"Machine: {m['cpu_model']}, {m['cpu_affinity']} cores, torch {m['torch']} ({m['torch_threads']} "
             f"threads); code {m['code_version']}; model `{results['config']['model']}`, threshold "
             f"{results['config']['threshold']}, hop {results['config']['hop_s']} s; {o['clips']} clips, "
             f"{o['true_s']:.0f} s of playing.", "",
             f"**Now:** {figures(o)}."]
    if before:
        lines += ["", f"**Before** ({before['machine']['code_version']}): {figures(before['overall'])}."]
    headers = ["clip", "onset error s", "offset error s", "edge error s", "in music s", "within 0.5 s",
               "not found", "missed s", "extra s", "wrong-label s"]
    prior = {c["name"]: c for c in before["clips"]} if before else {}
    if before:
        headers += ["edge error s, before", "in music s, before", "missed s, before", "extra s, before"]

    def row(name, r, b):
        cells = [name, r["mean_onset_error_s"], r["mean_offset_error_s"], r["mean_edge_error_s"],
                 r["mean_edge_error_in_music_s"], f"{r['edges_within_0_5_s']}/{r['edges']}", r["missed_segments"],
                 r["missed_s"], r["extra_s"], r["wrong_label_s"]]
        if before:
            cells += [b["mean_edge_error_s"], b.get("mean_edge_error_in_music_s"), b["missed_s"], b["extra_s"]] \
                if b else [None] * 4
        return cells

    rows = [row(c["name"], c, prior.get(c["name"])) for c in results["clips"]]
    rows += [row(f"**all {kind}**", r, (before or {}).get("by_kind", {}).get(kind))
             for kind, r in results["by_kind"].items()]
    rows.append(row("**all**", o, (before or {}).get("overall")))
    lines += ["", report.markdown_table(headers, rows), "", "Truth → segments found, per clip:", ""]
    for c in results["clips"]:
        found: dict[str, list[str]] = {}
        for s in c["segments"]:
            found.setdefault(s["label"], []).append(f"{s['start']:.2f}–{s['end']:.2f}")
        truth = "; ".join(f"{t['label']} {t['start']:.2f}–{t['end']:.2f} → "
                          f"{', '.join(found.get(t['label'], [])) or 'none'}" for t in c["truth"])
        others = "; ".join(f"{label} {', '.join(v)}" for label, v in found.items()
                           if label not in {t["label"] for t in c["truth"]})
        lines.append(f"- {c['name']}: {truth}" + (f" (wrong labels: {others})" if others else ""))
    return "\n".join(lines) + "\n\n" + NOTES_MARKER + "\n" + notes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.segment_edges", description=__doc__.split("\n\n")[1])
    p.add_argument("--model", default=None, help="checkpoint directory or Hub id (default: the shipped model)")
    p.add_argument("--real-eval", type=Path, default=REAL_EVAL, help="shared/real-eval (default: %(default)s)")
    p.add_argument("--per-kind", type=int, default=CLIPS_PER_KIND,
                   help="assembled clips of each kind (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/segment_edges.json"),
                   help="JSON results; the markdown table goes beside it as .md (default: %(default)s)")
    p.add_argument("--before", type=Path, default=None,
                   help="an earlier run's JSON to compare with (its figures are copied into the results)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    if not (args.real_eval / "labels.csv").is_file():
        print(f"real-eval not found at {args.real_eval} (--real-eval)", file=sys.stderr)
        return 2
    results = run(args.real_eval, args.model, args.per_kind)
    before = None
    if args.before:
        earlier = json.loads(args.before.read_text())
        before = {k: earlier[k] for k in ("config", "overall", "by_kind", "machine")}
        before["clips"] = [{k: c[k] for k in ("name", "segments", "mean_edge_error_s", "mean_onset_error_s",
                                               "mean_offset_error_s", "mean_edge_error_in_music_s", "missed_s",
                                               "extra_s", "wrong_label_s", "missed_segments")}
                           for c in earlier["clips"]]
        results["before"] = before
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    page = args.out.with_suffix(".md")
    notes = page.read_text().partition(NOTES_MARKER)[2].lstrip("\n") if page.is_file() else ""
    page.write_text(markdown(results, before, notes))
    o = results["overall"]
    print(f"mean edge error {o['mean_edge_error_s']} s (onsets {o['mean_onset_error_s']}, offsets "
          f"{o['mean_offset_error_s']}), {o['edges_within_0_5_s']}/{o['edges']} within {CLOSE_S} s, "
          f"missed {o['missed_s']} s, extra {o['extra_s']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
