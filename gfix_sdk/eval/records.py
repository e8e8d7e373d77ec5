"""One row per rate point, and the ``points.csv`` / ``points.json`` files.

``points.csv`` has one row per (video, codec, rate point) with the columns
of :data:`CSV_COLUMNS`; a metric that is missing is an empty cell.
``points.json`` holds the same rows (missing metrics are ``null``) with the
settings, the videos, what each metric used, why omitted metrics were
omitted (recorded once, not per row) and the BD-rate cells. Both are
written atomically (temporary file, then rename).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gfix_sdk._fs import write_atomically
from gfix_sdk.eval.scoring import METRIC_KEYS

CSV_COLUMNS: tuple[str, ...] = (
    "video", "codec", "param", "bytes", "kbps", "bpp", *METRIC_KEYS, "frames", "width", "height", "seconds",
)
"""Columns of points.csv, in order."""
JSON_FORMAT = "gfix-eval/1"


@dataclass
class RatePointResult:
    """One codec at one rate point on one video, with its scores."""

    video: str
    codec: str
    knob: str
    """Name of the codec's rate parameter (``crf``, ``gaussians``)."""
    value: int | float
    """Its value at this point."""
    bytes: int
    """Bytes counted as the stream size."""
    frames: int
    width: int
    height: int
    fps: float
    seconds: float
    """Wall time of encode + decode."""
    scores: dict[str, float | None] = field(default_factory=dict)
    """Metric key -> value (None: not available for this point)."""
    params: dict[str, Any] = field(default_factory=dict)
    """The codec's own description of the point (``EncodedClip.params``)."""

    @property
    def param(self) -> str:
        """``knob=value``, e.g. ``crf=29`` or ``gaussians=2000``."""
        return f"{self.knob}={self.value}"

    @property
    def kbps(self) -> float:
        """``8 * bytes / (frames / fps) / 1000``."""
        return 8.0 * self.bytes / (self.frames / self.fps) / 1000.0

    @property
    def bpp(self) -> float:
        """Bits per pixel."""
        return 8.0 * self.bytes / (self.frames * self.width * self.height)

    def row(self) -> dict[str, Any]:
        """The CSV columns as a dict (metrics as floats or None)."""
        record: dict[str, Any] = {
            "video": self.video, "codec": self.codec, "param": self.param, "bytes": self.bytes,
            "kbps": self.kbps, "bpp": self.bpp,
        }
        for key in METRIC_KEYS:
            record[key] = _finite_or_none(self.scores.get(key))
        record.update(frames=self.frames, width=self.width, height=self.height, seconds=self.seconds)
        return record

    def record(self) -> dict[str, Any]:
        """The JSON record: the row plus the knob, its value, fps and the codec's parameters."""
        return {**self.row(), "knob": self.knob, "value": self.value, "fps": self.fps,
                "params": {k: _json_value(v) for k, v in self.params.items()}}


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _json_value(value: Any) -> Any:
    if isinstance(value, float):
        return _finite_or_none(value)
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file renamed into place."""
    return write_atomically(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def csv_text(points: list[RatePointResult]) -> str:
    """``points.csv`` content: header and one row per point (missing metrics empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for point in points:
        row = point.row()
        writer.writerow({k: "" if row[k] is None else (repr(row[k]) if isinstance(row[k], float) else row[k])
                         for k in CSV_COLUMNS})
    return buffer.getvalue()


def json_text(document: dict[str, Any]) -> str:
    """Strict JSON (no NaN/Infinity), indented."""
    return json.dumps(document, indent=1, allow_nan=False) + "\n"
