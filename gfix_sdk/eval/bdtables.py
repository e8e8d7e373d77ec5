"""BD-rate cells of every codec against every anchor, per metric.

A cell is :func:`gfix_sdk.metrics.bd_rate` (Bjøntegaard delta rate,
``pchip``, rate in kbps) of a test codec's curve against an anchor codec's
curve on one video and one metric; LPIPS and FID are lower-is-better.
Negative means the test codec needs fewer bits than the anchor at equal
quality. A cell that cannot be computed holds ``None`` and a short reason
("no overlap", "< 4 points", ...), shown as ``n/a (reason)``; the full
message is kept in ``detail``. ``low_overlap`` marks cells whose quality
ranges overlap by less than 75 % (bjontegaard's warning): computed, but
over a small interval.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from gfix_sdk.eval.records import RatePointResult
from gfix_sdk.eval.scoring import MetricSpec

_SHORT_REASONS = (
    ("do not overlap", "no overlap"),
    ("needs at least", "< 4 points"),
    ("repeated quality", "repeated values"),
    ("does not rise", "rate falls as quality rises"),
    ("must be > 0", "zero rate"),
    ("not finite", "not finite"),
)


@dataclass(frozen=True)
class BDCell:
    """BD-rate of ``test`` against ``anchor`` on one video and metric."""

    video: str
    test: str
    anchor: str
    metric: str
    value: float | None
    """Percent; None when it cannot be computed."""
    reason: str | None = None
    """Short reason when ``value`` is None."""
    detail: str | None = None
    """The full message behind ``reason``."""
    low_overlap: bool = False
    """The curves' quality ranges overlap by less than 75 %."""

    def text(self) -> str:
        """The table cell: ``-12.3 %`` (``*`` for low overlap) or ``n/a (reason)``."""
        if self.value is None:
            return f"n/a ({self.reason})"
        return f"{self.value:+.1f} %" + ("*" if self.low_overlap else "")

    def record(self) -> dict[str, Any]:
        """As a JSON-ready dict."""
        return asdict(self)


def short_reason(message: str) -> str:
    """A few words for a :func:`~gfix_sdk.metrics.bd_rate` error message."""
    for needle, short in _SHORT_REASONS:
        if needle in message:
            return short
    return message if len(message) <= 40 else message[:37] + "..."


def bd_cell(video: str, test: str, anchor: str, metric: MetricSpec,
            test_points: Sequence[RatePointResult], anchor_points: Sequence[RatePointResult],
            omitted: str | None = None) -> BDCell:
    """One cell; ``omitted`` (the metric's omission reason) gives an n/a cell directly."""
    from gfix_sdk.metrics import bd_rate

    def curve(points: Sequence[RatePointResult]) -> tuple[list[float], list[float]]:
        usable = [(p.kbps, p.scores.get(metric.key)) for p in points]
        usable = [(r, q) for r, q in usable if q is not None and math.isfinite(q)]
        return [r for r, _ in usable], [float(q) for _, q in usable]  # type: ignore[arg-type]

    if omitted is not None:
        return BDCell(video, test, anchor, metric.key, None, "metric omitted", omitted)
    test_r, test_q = curve(test_points)
    anchor_r, anchor_q = curve(anchor_points)
    for name, values, points in ((test, test_q, test_points), (anchor, anchor_q, anchor_points)):
        if points and not values:
            return BDCell(video, test, anchor, metric.key, None, "no scores",
                          f"{name} has no {metric.key} score on {video}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = bd_rate(anchor_r, anchor_q, test_r, test_q, higher_is_better=metric.higher_is_better)
        except ValueError as exc:
            return BDCell(video, test, anchor, metric.key, None, short_reason(str(exc)), str(exc))
    low = any("overlap" in str(w.message).lower() for w in caught)
    return BDCell(video, test, anchor, metric.key, value, low_overlap=low)


def bd_cells(video: str, points: Sequence[RatePointResult], codecs: Sequence[str],
             metrics: Sequence[MetricSpec], omitted: dict[str, str]) -> list[BDCell]:
    """Every (test, anchor, metric) cell of one video, test != anchor."""
    by_codec = {c: [p for p in points if p.video == video and p.codec == c] for c in codecs}
    return [
        bd_cell(video, test, anchor, metric, by_codec[test], by_codec[anchor], omitted.get(metric.key))
        for anchor in codecs for test in codecs if test != anchor for metric in metrics
    ]


@dataclass(frozen=True)
class MeanCell:
    """The mean of one (test, anchor, metric) BD-rate over videos."""

    value: float | None
    count: int
    total: int

    def text(self) -> str:
        """``-12.3 %``, ``-12.3 % (5/7 videos)`` or ``n/a``."""
        if self.value is None:
            return "n/a"
        suffix = "" if self.count == self.total else f" ({self.count}/{self.total} videos)"
        return f"{self.value:+.1f} %{suffix}"


def mean_cell(cells: Sequence[BDCell]) -> MeanCell:
    """Mean BD-rate of the cells that have a value."""
    values = [c.value for c in cells if c.value is not None]
    return MeanCell(math.fsum(values) / len(values) if values else None, len(values), len(cells))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table (``|`` in cells escaped)."""
    def esc(text: str) -> str:
        return str(text).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def anchor_table(cells: Sequence[BDCell], anchor: str, codecs: Sequence[str], metrics: Sequence[MetricSpec]) -> str:
    """Markdown: rows = codecs other than ``anchor``, columns = metrics."""
    lookup = {(c.test, c.metric): c for c in cells if c.anchor == anchor}
    rows = [[test] + [lookup[(test, m.key)].text() for m in metrics] for test in codecs if test != anchor]
    return markdown_table(["codec"] + [m.label for m in metrics], rows)


def mean_anchor_table(cells: Sequence[BDCell], anchor: str, codecs: Sequence[str],
                      metrics: Sequence[MetricSpec]) -> str:
    """Markdown: like :func:`anchor_table`, each cell the mean over videos."""
    rows = []
    for test in codecs:
        if test == anchor:
            continue
        row = [test]
        for m in metrics:
            row.append(mean_cell([c for c in cells if (c.anchor, c.test, c.metric) == (anchor, test, m.key)]).text())
        rows.append(row)
    return markdown_table(["codec"] + [m.label for m in metrics], rows)
