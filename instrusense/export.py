"""Serialisations of an analysis: the CLI/API JSON record, CSV and Audacity label tracks."""

from __future__ import annotations

import csv
import io

import numpy as np

from instrusense.analysis import Analysis, Timeline
from instrusense.scores import Segment
from instrusense.taxonomy import LABELS, display_name


def _r(x: float, digits: int = 4) -> float:
    return round(float(x), digits)


def analysis_record(file: str, analysis: Analysis) -> dict:
    """The JSON object of the spec's CLI contract for one analysed file."""
    return {
        "file": file,
        "duration": _r(analysis.duration, 3),
        "labels": [{"label": s.label, "family": s.family, "confidence": _r(s.confidence)} for s in analysis.labels],
        "segments": [{"label": s.label, "start": _r(s.start, 3), "end": _r(s.end, 3), "confidence": _r(s.confidence)}
                     for s in analysis.segments],
        "timeline": timeline_record(analysis.timeline),
        "error": None,
    }


def timeline_record(timeline: Timeline, digits: int = 3) -> dict:
    """Window, hop, window start times and every label's confidence per window: enough to redraw the plot."""
    rounded = np.round(timeline.probs.astype(np.float64), digits)
    return {"window": _r(timeline.window, 3), "hop": _r(timeline.hop, 3),
            "starts": np.round(timeline.window_starts, 3).tolist(),
            "confidence": {label: rounded[:, j].tolist() for j, label in enumerate(LABELS)}}


def error_record(file: str, message: str, duration: float = 0.0) -> dict:
    """The JSON object for a file that could not be analysed: empty lists, no timeline, the reason in `error`."""
    return {"file": file, "duration": _r(duration, 3), "labels": [], "segments": [], "timeline": None,
            "error": message}


def segments_csv(segments: list[Segment]) -> str:
    """Segment table as CSV (label key, display name, start, end, confidence)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["label", "instrument", "start", "end", "confidence"])
    for s in segments:
        writer.writerow([s.label, display_name(s.label), f"{s.start:.3f}", f"{s.end:.3f}", f"{s.confidence:.4f}"])
    return buf.getvalue()


def audacity_labels(segments: list[Segment]) -> str:
    """Audacity label track: tab-separated start, end, label; import via File → Import → Labels."""
    return "".join(f"{s.start:.6f}\t{s.end:.6f}\t{display_name(s.label)} ({s.confidence:.2f})\n" for s in segments)
