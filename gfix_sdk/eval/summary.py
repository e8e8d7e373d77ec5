"""``summary.md``: the human-readable report of an evaluation.

It states what was run and with which metrics (and why any metric was
omitted), then, per video, the RD plot, the rate points and one BD-rate
table per anchor codec (rows: the other codecs; columns: the metrics), as
in the GFix paper's Fig. 4. With several videos, mean BD-rates come first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gfix_sdk.eval.bdtables import BDCell, anchor_table, markdown_table, mean_anchor_table
from gfix_sdk.eval.records import RatePointResult
from gfix_sdk.eval.scoring import MetricSpec

BD_EXPLANATION = (
    "BD-rate: Bjøntegaard delta rate (piecewise cubic `pchip` interpolation of log-rate over quality, "
    "rate in kbps) of the row's codec against the table's anchor; negative = fewer bits than the anchor "
    "for the same quality. LPIPS and FID are lower-is-better. `n/a (reason)`: the curves do not share a "
    "quality range, or a curve has fewer than 4 usable points; `*`: the quality ranges overlap by less "
    "than 75 %, so the number covers a small interval."
)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _format(value: float | None, key: str) -> str:
    if value is None:
        return ""
    if key == "ms_ssim":
        return f"{value:.4f}"
    if key == "lpips":
        return f"{value:.4f}"
    if key in ("psnr", "vmaf"):
        return f"{value:.2f}"
    return f"{value:.2f}" if abs(value) < 1000 else f"{value:,.0f}"


def points_table(points: Sequence[RatePointResult], metrics: Sequence[MetricSpec]) -> str:
    """Markdown table of rate points: codec, parameter, kbps, bpp and each metric."""
    rows = [[p.codec, p.param, f"{p.kbps:,.1f}", f"{p.bpp:.4f}"] + [_format(p.scores.get(m.key), m.key) for m in metrics]
            for p in points]
    return markdown_table(["codec", "point", "kbps", "bpp"] + [m.label for m in metrics], rows)


def summary_markdown(
    *,
    header: dict[str, Any],
    videos: Sequence[dict[str, Any]],
    codecs: Sequence[str],
    metrics: Sequence[MetricSpec],
    details: dict[str, str],
    omitted: dict[str, str],
    notes: Sequence[str],
    problems: Sequence[dict[str, str]],
    points: Sequence[RatePointResult],
    cells: Sequence[BDCell],
    plots: dict[str, str],
) -> str:
    """The whole ``summary.md``."""
    lines = ["# GFix evaluation report", ""]
    lines.append(f"Created {header['created']} by gfix_sdk {header['version']}; "
                 f"{len(videos)} video(s), up to {header['frames']} frames each; codecs: "
                 + ", ".join(f"`{c}`" for c in codecs) + ".")
    lines += ["", "Metrics:"]
    lines += [f"- {m.label}: {details.get(m.key, '')}" for m in metrics]
    if omitted:
        lines += ["", "Omitted metrics (empty in points.csv, null in points.json):"]
        lines += [f"- {key}: {_one_line(reason)}" for key, reason in omitted.items()]
    if notes:
        lines += ["", "Notes:"]
        lines += [f"- {note}" for note in notes]
    if problems:
        lines += ["", "Metrics missing at some points:"]
        seen: dict[tuple[str, str], int] = {}
        for problem in problems:
            key = (problem["metric"], _one_line(problem["reason"]))
            seen[key] = seen.get(key, 0) + 1
        lines += [f"- {metric} at {count} point(s): {reason}" for (metric, reason), count in seen.items()]
    lines += ["", BD_EXPLANATION, ""]

    if len(videos) > 1:
        lines += [f"## Mean BD-rate over {len(videos)} videos", ""]
        for anchor in codecs:
            lines += [f"### Against `{anchor}`", "", mean_anchor_table(cells, anchor, codecs, metrics), ""]

    for video in videos:
        name = video["name"]
        lines += [f"## {name}", "",
                  f"{video['width']}x{video['height']}, {video['frames']} frames @ {video['fps']:g} fps; "
                  f"source `{video['source']}`.", ""]
        if name in plots:
            lines += [f"![RD curves of {name}]({plots[name]})", ""]
        video_points = [p for p in points if p.video == name]
        lines += ["### Rate points", "", points_table(video_points, metrics), ""]
        video_cells = [c for c in cells if c.video == name]
        for anchor in codecs:
            if len(codecs) > 1:
                lines += [f"### BD-rate against `{anchor}`", "",
                          anchor_table(video_cells, anchor, codecs, metrics), ""]
    return "\n".join(lines).rstrip() + "\n"
