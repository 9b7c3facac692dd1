"""The label plot: one lane per top instrument, confidence over time, top segments highlighted."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from instrusense.analysis import Analysis  # noqa: E402
from instrusense.taxonomy import LABEL_INDEX, display_name  # noqa: E402

_LANE = 0.8  # height of a lane; lanes are 1 apart


def label_plot(analysis: Analysis, top_k: int = 5, threshold: float = 0.5) -> Figure:
    """Timeline figure of the top-k instruments, readable at a glance."""
    top = [s for s in analysis.top(top_k) if s.confidence > 0]
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.7 * max(len(top), 1)), dpi=100, layout="constrained")
    end = max(analysis.analysed_seconds, 1e-3)
    tl = analysis.timeline
    colors = plt.get_cmap("tab10").colors
    for lane, score in enumerate(reversed(top)):
        color = colors[(len(top) - 1 - lane) % len(colors)]
        j = LABEL_INDEX[score.label]
        xs = np.stack([tl.starts, tl.ends], axis=1).ravel()  # step curve: each cell flat
        ys = lane + _LANE * np.repeat(tl.probs[:, j], 2)
        ax.fill_between(xs, lane, ys, color=color, alpha=0.35, linewidth=0)
        ax.plot(xs, ys, color=color, linewidth=1.2)
        for seg in analysis.segments:
            if seg.label == score.label:
                ax.add_patch(plt.Rectangle((seg.start, lane), seg.end - seg.start, _LANE, facecolor="none",
                                           edgecolor=color, linewidth=2.2, hatch="//", alpha=0.9))
        ax.axhline(lane + _LANE * threshold, color="0.6", linewidth=0.6, linestyle=":")
    ax.set_yticks([lane + _LANE / 2 for lane in range(len(top))])
    ax.set_yticklabels([f"{display_name(s.label)}  {s.confidence:.0%}" for s in reversed(top)])
    ax.set_ylim(-0.1, max(len(top), 1))
    ax.set_xlim(0, end)
    ax.set_xlabel("time (s)")
    ax.grid(axis="x", color="0.9")
    ax.set_axisbelow(True)
    if not top:
        ax.text(end / 2, 0.5, "No instrument detected", ha="center", va="center", color="0.4")
    handles = [Patch(facecolor="0.5", alpha=0.35, label="confidence over time"),
               Patch(facecolor="none", edgecolor="0.2", hatch="//", label="top segments"),
               plt.Line2D([], [], color="0.6", linestyle=":", label=f"threshold {threshold:g}")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False, fontsize="small")
    ax.spines[["top", "right"]].set_visible(False)
    return fig
