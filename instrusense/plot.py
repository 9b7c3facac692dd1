"""The label plot: one lane per top instrument, confidence over time, top segments highlighted.

Built on a bare :class:`~matplotlib.figure.Figure` (not pyplot: no global figure registry shared by the
app's worker threads) with margins fixed in inches, not a layout engine: constrained layout was about a
quarter of the plot's time per request (webp encoding included), and the plot is drawn on every request.
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from instrusense.analysis import Analysis
from instrusense.taxonomy import LABEL_INDEX, display_name

_LANE = 0.8  # height of a lane; lanes are 1 apart
_WIDTH_IN = 10.0
_LANE_IN = 0.7
_TOP_IN, _RIGHT_IN, _BOTTOM_IN = 0.15, 0.25, 0.75  # bottom: tick labels, axis label and the legend
_CHAR_IN = 0.075  # width of a tick-label character at the default 10 pt (DejaVu Sans, with room to spare)


def label_plot(analysis: Analysis, top_k: int = 5, threshold: float = 0.5) -> Figure:
    """Timeline figure of the top-k instruments, readable at a glance."""
    top = [s for s in analysis.top(top_k) if s.confidence > 0]
    ticks = [f"{display_name(s.label)}  {s.confidence:.0%}" for s in reversed(top)]
    height = _TOP_IN + _BOTTOM_IN + _LANE_IN * max(len(top), 1)
    left = 0.3 + _CHAR_IN * max((len(t) for t in ticks), default=0)
    fig = Figure(figsize=(_WIDTH_IN, height), dpi=100)
    fig.subplots_adjust(left=left / _WIDTH_IN, right=1 - _RIGHT_IN / _WIDTH_IN, bottom=_BOTTOM_IN / height,
                        top=1 - _TOP_IN / height)
    ax = fig.add_subplot()
    end = max(analysis.analysed_seconds, 1e-3)
    tl = analysis.timeline
    colors = mpl.colormaps["tab10"].colors
    for lane, score in enumerate(reversed(top)):
        color = colors[(len(top) - 1 - lane) % len(colors)]
        j = LABEL_INDEX[score.label]
        xs = np.stack([tl.starts, tl.ends], axis=1).ravel()  # step curve: each cell flat
        ys = lane + _LANE * np.repeat(tl.probs[:, j], 2)
        ax.fill_between(xs, lane, ys, color=color, alpha=0.35, linewidth=0)
        ax.plot(xs, ys, color=color, linewidth=1.2)
        for seg in analysis.segments:
            if seg.label == score.label:
                ax.add_patch(Rectangle((seg.start, lane), seg.end - seg.start, _LANE, facecolor="none",
                                       edgecolor=color, linewidth=2.2, hatch="//", alpha=0.9))
        ax.axhline(lane + _LANE * threshold, color="0.6", linewidth=0.6, linestyle=":")
    ax.set_yticks([lane + _LANE / 2 for lane in range(len(top))])
    ax.set_yticklabels(ticks)
    ax.set_ylim(-0.1, max(len(top), 1))
    ax.set_xlim(0, end)
    ax.set_xlabel("time (s)")
    ax.grid(axis="x", color="0.9")
    ax.set_axisbelow(True)
    if not top:
        ax.text(end / 2, 0.5, "No instrument detected", ha="center", va="center", color="0.4")
    handles = [Patch(facecolor="0.5", alpha=0.35, label="confidence over time"),
               Patch(facecolor="none", edgecolor="0.2", hatch="//", label="top segments"),
               Line2D([], [], color="0.6", linestyle=":", label=f"threshold {threshold:g}")]
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False,
               fontsize="small")
    ax.spines[["top", "right"]].set_visible(False)
    return fig
