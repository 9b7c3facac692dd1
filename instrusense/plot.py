"""The label plot: one lane per instrument shown, confidence over time, every segment marked.

A Plotly figure (sent as JSON, drawn by the browser): it scales to any screen width, keeps its text at
a readable size on phones, shows instrument, time and confidence on hover or tap, and costs the same to
build for a 10-minute timeline as for a short one (a few hundred points per lane). Colours that must
follow the page's light or dark theme (text, grid) are left to the page's CSS (`app.PAGE_CSS`);
backgrounds are transparent.
"""

from __future__ import annotations

import colorsys

import numpy as np
import plotly.graph_objects as go

from instrusense.analysis import Analysis
from instrusense.formatting import percent, seconds
from instrusense.taxonomy import LABEL_INDEX, display_name

LANE = 0.7  # height of a lane's curve; lanes are 1 apart, the name sits above the curve
BELOW = "#9ca3af"  # curves of instruments under the threshold: context, never segments
_LANE_LUMINANCE = 0.2  # ≥ 3:1 against white and against a dark page alike (WCAG's bar for graphics)


def _relative_luminance(rgb: tuple[float, float, float]) -> float:
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _colour(hue: float) -> str:
    """The colour of `hue` whose luminance is `_LANE_LUMINANCE` (found by bisection on HLS lightness)."""
    low, high = 0.0, 1.0
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (mid, high) if _relative_luminance(colorsys.hls_to_rgb(hue, mid, 0.75)) < _LANE_LUMINANCE else (low, mid)
    return "#" + "".join(f"{round(255 * c):02x}" for c in colorsys.hls_to_rgb(hue, low, 0.75))


# Eight hues far apart (red, orange, olive, green, teal, blue, purple, magenta), each at `_LANE_LUMINANCE`: as many
# lines as a view shows (top 5, and a few more that pass the threshold), each told apart from the others.
LINE_COLORS: tuple[str, ...] = tuple(_colour(h) for h in (0.6, 0.08, 0.33, 0.0, 0.75, 0.5, 0.88, 0.15))
_LANE_PX, _FRAME_PX = 62, 64


def lane_names(analysis: Analysis, top_k: int) -> list[str]:
    """Name of each lane, top lane first: name and clip confidence, in italics when under the threshold (the page
    greys them in the theme's subdued text colour, `app.PAGE_CSS`, which keeps them legible in light and dark)."""
    names = [f"{display_name(s.label)} {percent(s.confidence)}" for s in analysis.shown(top_k)]
    return [n if s.confidence >= analysis.threshold else f"<i>{n}</i>" for n, s in zip(names, analysis.shown(top_k))]


def heard(analysis: Analysis, top_k: int) -> list:
    """The instruments that get a lane: those shown (the top k and every one that passes the threshold), the ones
    under it greyed beside them for context; none when no instrument reaches the threshold (speech, noise,
    silence), so that the plot says "No instrument detected" instead of drawing empty lanes."""
    shown = analysis.shown(top_k)
    return shown if any(s.confidence >= analysis.threshold for s in shown) else []


def label_plot(analysis: Analysis, top_k: int = 5) -> go.Figure:
    """Timeline figure of the instruments heard (the top k and every one that passes the threshold), or a
    "No instrument detected" note when none reaches the threshold."""
    shown = heard(analysis, top_k)
    tl = analysis.timeline
    end = max(analysis.analysed_seconds, 1e-3)
    x = np.append(tl.cell_starts, tl.cell_ends[-1])  # step curve: each window holds its value over its cell
    fig = go.Figure()
    names = lane_names(analysis, top_k) if shown else []
    for rank, score in enumerate(shown):
        base = len(shown) - 1 - rank
        j = LABEL_INDEX[score.label]
        passes = score.confidence >= analysis.threshold
        color = LINE_COLORS[rank % len(LINE_COLORS)] if passes else BELOW
        name = display_name(score.label)
        for seg in (s for s in analysis.segments if s.label == score.label):
            fig.add_trace(go.Scatter(
                x=[seg.start, seg.end, seg.end, seg.start, seg.start],
                y=[base, base, base + LANE, base + LANE, base], mode="lines", fill="toself", fillcolor=color,
                opacity=0.22, line={"width": 0}, showlegend=False, hoveron="fills", name=name,
                text=f"{name}: plays {seconds(seg.start)}–{seconds(seg.end)} s, {percent(seg.confidence)}",
                hoverinfo="text"))
        probs = tl.probs[:, j]
        y = base + LANE * np.append(probs, probs[-1])
        custom = np.column_stack([np.append(tl.cell_starts, tl.cell_ends[-1]), np.append(tl.cell_ends, tl.cell_ends[-1]),
                                  100 * np.append(probs, probs[-1])])
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines", line={"shape": "hv", "width": 2, "color": color,
                                          "dash": "solid" if passes else "dot"},
            name=name, showlegend=False, customdata=custom,
            hovertemplate=f"<b>{name}</b><br>%{{customdata[0]:.2f}}–%{{customdata[1]:.2f}} s<br>"
                          "confidence %{customdata[2]:.1f} %<extra></extra>"))
        fig.add_shape(type="line", x0=0, x1=end, y0=base + LANE * analysis.threshold,
                      y1=base + LANE * analysis.threshold, line={"width": 1, "dash": "dot", "color": BELOW},
                      opacity=0.6)
    for rank, name in enumerate(names):  # names above the lanes, not beside: the curves keep a phone's width
        fig.add_annotation(x=0, xref="paper", y=len(shown) - 1 - rank + LANE, yref="y", text=name, showarrow=False,
                           xanchor="left", yanchor="bottom", font={"size": 13})
    lanes = max(len(shown), 1)
    fig.update_layout(
        height=_FRAME_PX + _LANE_PX * lanes, margin={"l": 8, "r": 8, "t": 4, "b": 48},
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)", font={"size": 13},
        hovermode="closest", dragmode=False, showlegend=False,
        xaxis={"title": {"text": "time (s)"}, "range": [0, end], "showgrid": True, "zeroline": False,
               "fixedrange": True},
        yaxis={"showticklabels": False, "range": [-0.05, lanes], "showgrid": False, "zeroline": False,
               "fixedrange": True},
    )
    if not shown:
        fig.add_annotation(x=0.5, xref="paper", y=0.5, yref="y", showarrow=False, font={"size": 15},
                           text=f"No instrument detected (none reaches {percent(analysis.threshold)})")
    return fig


def describe(analysis: Analysis, top_k: int = 5, per_label: int = 6) -> str:
    """The plot in words (its text alternative): each instrument shown and where it plays (the first
    `per_label` stretches; the table and exports list every one), or that it stays under the threshold."""
    lines = []
    for score in heard(analysis, top_k):
        segs = [s for s in analysis.segments if s.label == score.label]
        where = ", ".join(f"{seconds(s.start)}–{seconds(s.end)} s" for s in segs[:per_label])
        if len(segs) > per_label:
            where += f" and {len(segs) - per_label} more"
        lines.append(f"{display_name(score.label)} ({percent(score.confidence)}): "
                     f"{where or 'under the threshold throughout'}")
    return "; ".join(lines) + "." if lines else f"No instrument detected: none reaches {percent(analysis.threshold)}."
