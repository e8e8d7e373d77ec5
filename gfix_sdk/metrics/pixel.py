"""Per-frame pixel fidelity: mean squared error and PSNR over RGB.

Both pool the three RGB channels together: the MSE is the mean over all
``H * W * 3`` values (not Y-only PSNR, nor an average of per-channel PSNRs).
Arithmetic is in float64 whatever the input dtype.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import torch

from gfix_sdk.metrics._frames import Frame, check_pair


def mse(x: Frame, y: Frame) -> float:
    """Mean squared error between two ``(H, W, 3)`` RGB frames, in their own units.

    ``uint8`` numpy frames give an MSE in 8-bit levels squared, float tensors
    in ``[0, 1]`` one in unit-range squared (smaller by ``255**2``).

    Raises:
        ValueError: see :func:`psnr`.
    """
    check_pair(x, y)
    return _mse(x, y)


def _mse(x: Frame, y: Frame) -> float:
    """MSE of an already checked pair."""
    if isinstance(x, np.ndarray):
        diff = x.astype(np.float64) - np.asarray(y, dtype=np.float64)
        return float(np.mean(diff * diff))
    y_t = cast(torch.Tensor, y)  # check_pair made both tensors
    with torch.no_grad():
        # float64 where the device has it (not on MPS, which lacks it).
        wide = torch.float32 if x.device.type == "mps" else torch.float64
        delta = x.detach().to(wide) - y_t.detach().to(wide)
        return float(torch.mean(delta * delta))


def psnr_from_mse(mse_value: float, data_range: float) -> float:
    """``10 * log10(data_range**2 / mse)`` in dB; ``inf`` when ``mse`` is 0."""
    if not (mse_value >= 0.0):
        raise ValueError(f"mse must be a non-negative number, got {mse_value!r}")
    if not (data_range > 0.0 and math.isfinite(data_range)):
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}")
    if mse_value == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / mse_value)


def psnr(x: Frame, y: Frame, *, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio of two RGB frames, in dB.

    ``PSNR = 10 * log10(data_range**2 / MSE)`` with the MSE over all
    ``H * W * 3`` values (see :func:`mse`); identical frames give ``inf``.

    Args:
        x, y: ``(H, W, 3)`` RGB frames of one shape and kind: ``uint8`` numpy
            arrays, or floating torch tensors with values in ``[0, 1]`` (any
            device; not differentiable, the result is a Python float).
        data_range: the peak signal value. None (the default) takes it from
            the input kind: 255 for ``uint8`` arrays, 1.0 for float tensors,
            so both kinds of the same picture give the same PSNR.

    Raises:
        ValueError: unsupported types, dtypes or shapes, frames of different
            kinds or shapes, tensor values outside ``[0, 1]``, or a
            non-positive ``data_range``.
    """
    natural = check_pair(x, y)
    return psnr_from_mse(_mse(x, y), natural if data_range is None else float(data_range))
