"""Validation of the keyword options shared by the readers and writers."""

from __future__ import annotations

import math
import numbers


def _is_int(value: object) -> bool:
    # bool is an int subclass, but True is never a meaningful size or count.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_size(size: object, name: str = "size") -> tuple[int, int]:
    """Return ``size`` as ``(width, height)`` of positive ints, else raise ValueError."""
    try:
        width, height = size  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (width, height) pair, got {size!r}") from None
    if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
        raise ValueError(f"{name} must be two positive ints (width, height), got {size!r}")
    return int(width), int(height)


def check_fps(fps: object, name: str = "fps") -> float:
    """Return ``fps`` as a positive finite float, else raise ValueError."""
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real):
        raise ValueError(f"{name} must be a positive number, got {fps!r}")
    value = float(fps)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {fps!r}")
    return value


def check_count(value: object, name: str) -> int:
    """Return ``value`` as a positive int, else raise ValueError."""
    if not _is_int(value) or value <= 0:  # type: ignore[operator]
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)  # type: ignore[arg-type]


def check_bit_depth(bit_depth: object) -> int:
    """Return ``bit_depth`` if it is 8 or 10, else raise ValueError."""
    if not _is_int(bit_depth) or bit_depth not in (8, 10):
        raise ValueError(f"bit_depth must be 8 or 10, got {bit_depth!r}")
    return int(bit_depth)  # type: ignore[arg-type]
