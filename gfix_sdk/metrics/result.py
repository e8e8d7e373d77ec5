"""What the optional sequence metrics (LPIPS, FID, VMAF) return.

These metrics depend on things gfix_sdk cannot ship: network weights (LPIPS,
FID) or an external program (VMAF through ffmpeg's libvmaf). When one is
missing the metric is *omitted*, never faked and never fetched: its
:class:`MetricResult` has ``value=None`` and a ``reason`` that says what is
missing and how to provide it. Loaders that keep a model or a program for
many calls raise :class:`MetricUnavailable` with the same message instead.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from gfix_sdk.errors import GFixError


class MetricUnavailable(GFixError, RuntimeError):
    """A metric cannot be computed on this machine (weights file or libvmaf
    missing). The message says what is missing and how to provide it."""


@dataclass(frozen=True)
class MetricResult:
    """One sequence-level score, or the reason there is none.

    Exactly one of ``value`` and ``reason`` is set.
    """

    name: str
    """Short metric name: ``"lpips"``, ``"fid"`` or ``"vmaf"``."""
    value: float | None
    """The pooled score (mean over frames for LPIPS and VMAF), or None when omitted."""
    per_frame: tuple[float, ...] = ()
    """Per-frame scores where the metric has them (empty for FID and when omitted)."""
    reason: str | None = None
    """Why the metric was omitted (None when ``value`` is set)."""

    def __post_init__(self) -> None:
        if (self.value is None) == (self.reason is None):
            raise ValueError("a MetricResult has either a value or a reason, not both or neither")
        if self.value is not None and math.isnan(self.value):
            raise ValueError(f"{self.name} value is NaN; report a reason instead")

    @property
    def available(self) -> bool:
        """True when the metric was computed."""
        return self.value is not None

    @classmethod
    def omitted(cls, name: str, reason: str) -> MetricResult:
        """A result that records why ``name`` could not be computed."""
        return cls(name=name, value=None, reason=reason)


def resolve_weights_file(weights: str | os.PathLike[str] | None, env_var: str, what: str, how_to: str) -> Path:
    """The weights file a metric uses: ``weights``, else ``$env_var``.

    ``what`` names the file in messages (e.g. ``"LPIPS weights file"``) and
    ``how_to`` says how to obtain it.

    Raises:
        MetricUnavailable: neither is set, or the file does not exist.
    """
    metric = what.split()[0]
    if weights is None:
        env = os.environ.get(env_var, "").strip()
        if not env:
            raise MetricUnavailable(f"{metric} omitted: no {what} given (argument or ${env_var}); {how_to}")
        weights = env
    path = Path(weights).expanduser()
    if not path.is_file():
        raise MetricUnavailable(f"{metric} omitted: {what} {path} not found; {how_to}")
    return path
