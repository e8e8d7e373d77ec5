"""Bjøntegaard delta rate (BD-rate) through the ``bjontegaard`` package.

BD-rate is the average relative bitrate difference between two
rate-quality curves at equal quality: each curve's log10(rate) is
interpolated as a function of quality, both are integrated over the quality
interval where the curves overlap, and the mean log-rate difference ``d``
is reported as ``(10**d - 1) * 100`` percent. Negative means the test codec
needs fewer bits than the anchor for the same quality.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

MIN_POINTS = 4
METHODS = ("pchip", "cubic")


def bd_rate(
    anchor_rates: Sequence[float] | np.ndarray,
    anchor_quality: Sequence[float] | np.ndarray,
    test_rates: Sequence[float] | np.ndarray,
    test_quality: Sequence[float] | np.ndarray,
    *,
    higher_is_better: bool = True,
    method: Literal["pchip", "cubic"] = "pchip",
) -> float:
    """BD-rate of a test codec against an anchor, in percent.

    Args:
        anchor_rates, test_rates: bitrates (any positive unit, the same for
            both curves: kbps, bpp, bytes), one per rate point.
        anchor_quality, test_quality: the quality at each rate point (PSNR,
            MS-SSIM, LPIPS, ...). Points may come in any order and the two
            curves may have different numbers of points.
        higher_is_better: False for metrics where lower is better (LPIPS,
            FID, DISTS). Their values are negated before the computation:
            the method interpolates log-rate as a function of quality and
            integrates it over the quality axis, which assumes quality rises
            with rate; negation restores that orientation without changing
            the overlap interval or the average, so the result means the
            same as for a higher-is-better metric.
        method: ``"pchip"`` (piecewise cubic Hermite, monotone between the
            points; the package's recommendation) or ``"cubic"`` (one cubic
            polynomial fitted through all points, the original VCEG-M33
            method).

    Returns:
        Percent rate difference at equal quality; -20.0 means the test codec
        needs 20 % fewer bits on average over the common quality range.

    Raises:
        ValueError: a curve with fewer than 4 points, rate and quality lists
            of different lengths, non-finite values, a rate <= 0, repeated
            quality values within a curve, a curve whose rate falls as its
            quality rises (usually a lower-is-better metric passed without
            ``higher_is_better=False``), quality ranges that do not overlap,
            or an unknown method.

    The ``bjontegaard`` package warns (``UserWarning``) when the overlap is
    below 75 % of the combined quality range; the result is then computed
    over the small overlap only and should be read with care.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(higher_is_better, bool):
        raise ValueError(f"higher_is_better must be a bool, got {higher_is_better!r}")
    sign = 1.0 if higher_is_better else -1.0
    anchor = _curve("anchor", anchor_rates, anchor_quality, sign)
    test = _curve("test", test_rates, test_quality, sign)
    _check_overlap(anchor[1], test[1], sign)

    # Imported here: the package pulls in matplotlib.pyplot, which nothing
    # else in gfix_sdk needs.
    import bjontegaard

    value = bjontegaard.bd_rate(
        anchor[0],
        anchor[1],
        test[0],
        test[1],
        method=method,
        require_matching_points=False,
    )
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"BD-rate is not finite ({result}); check the rate-quality points")
    return result


def _curve(
    name: str,
    rates: Sequence[float] | np.ndarray,
    quality: Sequence[float] | np.ndarray,
    sign: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(rates, quality)`` sorted by rising (sign-adjusted) quality."""
    r = np.asarray(rates, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if r.ndim != 1 or q.ndim != 1:
        raise ValueError(f"{name} rates and quality must be 1-D sequences")
    if r.size != q.size:
        raise ValueError(f"{name} has {r.size} rates but {q.size} quality values")
    if r.size < MIN_POINTS:
        raise ValueError(
            f"{name} has {r.size} rate points; BD-rate needs at least {MIN_POINTS} per curve"
        )
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))):
        raise ValueError(f"{name} rates and quality must be finite numbers")
    if np.any(r <= 0):
        raise ValueError(f"{name} rates must be > 0 (their logarithm is taken), got {r.tolist()}")

    q = sign * q
    order = np.argsort(q, kind="stable")
    r, q = r[order], q[order]
    if np.any(np.diff(q) == 0):
        raise ValueError(
            f"{name} has repeated quality values; the curve must be a function of quality"
        )
    if r[-1] <= r[0]:
        hint = (
            "; is this a lower-is-better metric? pass higher_is_better=False"
            if sign > 0
            else "; is this a higher-is-better metric? pass higher_is_better=True"
        )
        raise ValueError(
            f"{name} rate does not rise with quality (rate {r[0]:g} at the worst quality, "
            f"{r[-1]:g} at the best){hint}"
        )
    return r, q


def _check_overlap(anchor_q: np.ndarray, test_q: np.ndarray, sign: float) -> None:
    low = max(anchor_q[0], test_q[0])
    high = min(anchor_q[-1], test_q[-1])
    if low >= high:

        def shown(q: np.ndarray) -> str:
            # Report in the caller's own units (undo the negation).
            ends = sorted((sign * q[0], sign * q[-1]))
            return f"[{ends[0]:g}, {ends[1]:g}]"

        raise ValueError(
            f"the quality ranges do not overlap (anchor {shown(anchor_q)}, test "
            f"{shown(test_q)}), so there is no common quality to compare rates at; "
            "add rate points so that the curves share a quality range"
        )
