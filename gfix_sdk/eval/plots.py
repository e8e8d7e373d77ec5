"""Rate-distortion plots: one PNG per video, one panel per metric.

Bitrate (kbps, log scale: the codecs' rates span more than a decade) on the
x axis, the metric on the y axis, one line per codec through its rate
points in rate order. Panels of lower-is-better metrics (LPIPS, FID) say so
in their titles. Drawn with matplotlib's object API on an Agg canvas, so the
process-wide pyplot backend is left alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from gfix_sdk.eval.records import RatePointResult
from gfix_sdk.eval.scoring import MetricSpec

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
PANEL_SIZE = (4.2, 3.4)  # inches per panel
DPI = 110


def _rate_label(value: float, _position: int) -> str:
    """Tick label on the log rate axis: numbers whose leading digit is 1, 2 or 5."""
    if value <= 0:
        return ""
    leading = value / 10 ** math.floor(math.log10(value) + 1e-9)
    return f"{value:g}" if round(leading, 6) in (1.0, 2.0, 5.0) else ""


def plot_rd(path: str | os.PathLike[str], video: str, points: Sequence[RatePointResult],
            codecs: Sequence[str], metrics: Sequence[MetricSpec]) -> Path:
    """Write the RD curves of ``video`` to ``path`` (PNG) and return it.

    Raises:
        ValueError: no metrics to plot.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    if not metrics:
        raise ValueError("no metrics to plot")
    columns = min(len(metrics), 3)
    rows = math.ceil(len(metrics) / columns)
    figure = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    for index, metric in enumerate(metrics):
        axes = figure.add_subplot(rows, columns, index + 1)
        for number, codec in enumerate(codecs):
            curve = sorted((p.kbps, p.scores.get(metric.key)) for p in points
                           if p.video == video and p.codec == codec)
            curve = [(r, q) for r, q in curve if q is not None and math.isfinite(q)]
            if curve:
                axes.plot([r for r, _ in curve], [q for _, q in curve], marker=_MARKERS[number % len(_MARKERS)],
                          label=codec)
        axes.set_xscale("log")
        # Plain numbers (50, 100, 200) rather than 5x10^1 on a log axis.
        axes.xaxis.set_major_formatter(FuncFormatter(_rate_label))
        axes.xaxis.set_minor_formatter(FuncFormatter(_rate_label))
        axes.set_xlabel("bitrate (kbps)")
        axes.set_ylabel(metric.label)
        axes.set_title(metric.label + ("" if metric.higher_is_better else " (lower is better)"))
        axes.grid(True, which="both", alpha=0.3)
        if axes.lines:
            axes.legend(fontsize="small")
    figure.suptitle(f"{video}: rate-distortion")
    out = Path(path)
    figure.savefig(out, format="png")
    return out
