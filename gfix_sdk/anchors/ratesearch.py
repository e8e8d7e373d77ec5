"""Picking the integer rate setting whose bitrate is closest to a target."""

from __future__ import annotations

import math
from collections.abc import Callable


def closest_setting(
    rate_of: Callable[[int], float], target: float, low: int, high: int
) -> tuple[int, dict[int, float]]:
    """The setting in ``low..high`` whose rate is closest to ``target``.

    ``rate_of(setting)`` must be non-increasing in ``setting`` (as bitrate is
    in a quantiser or CRF). Bisection finds the first setting whose rate is
    at or below ``target``; the answer is it or its predecessor, whichever
    is closer in ratio (``|log(rate / target)|``), since rates are compared
    multiplicatively. A target above every rate gives ``low``, one below
    every rate ``high``. About ``log2(high - low + 2) + 1`` calls of
    ``rate_of``, none repeated.

    If ``rate_of`` is not monotone after all, the result is still a setting
    next to a crossing of ``target``, just not necessarily the closest one.

    Returns:
        ``(setting, rates)`` where ``rates`` maps every setting tried to its rate.

    Raises:
        ValueError: ``target`` not positive and finite, or ``low > high``.
    """
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"target must be a positive finite number, got {target!r}")
    if low > high:
        raise ValueError(f"empty setting range {low}..{high}")
    rates: dict[int, float] = {}

    def rate(setting: int) -> float:
        if setting not in rates:
            rates[setting] = float(rate_of(setting))
        return rates[setting]

    # Invariant: rate(s) > target for s < lo, rate(s) <= target for s >= hi
    # (hi = high + 1 stands for "no setting reaches the target").
    lo, hi = low, high + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if rate(mid) <= target:
            hi = mid
        else:
            lo = mid + 1
    candidates = [s for s in (lo - 1, lo) if low <= s <= high]
    best = min(candidates, key=lambda s: (abs(math.log(rate(s) / target)), s))
    return best, rates
