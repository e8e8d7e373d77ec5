"""Validation shared by the per-frame metrics: which images they accept.

Two kinds of frame are accepted, and both images of a pair must be of one kind:

* ``numpy.ndarray`` of dtype ``uint8``, shape ``(H, W, 3)``: 8-bit RGB, whose
  natural peak value (``data_range``) is 255;
* floating ``torch.Tensor`` of shape ``(H, W, 3)`` with values in ``[0, 1]``:
  RGB as a renderer produces it, peak value 1.

Mixing kinds is refused rather than converted, because the conversion (scale
by 255, round or not) would silently decide what is being measured.
"""

from __future__ import annotations

import numpy as np
import torch

Frame = np.ndarray | torch.Tensor
"""An ``(H, W, 3)`` RGB frame: ``uint8`` numpy array or float tensor in ``[0, 1]``."""

UINT8_RANGE = 255.0
FLOAT_RANGE = 1.0


def check_pair(x: object, y: object, what: str = "images") -> float:
    """Check that ``x`` and ``y`` form a comparable pair; return their data range.

    Returns:
        255.0 for ``uint8`` numpy frames, 1.0 for float tensors.

    Raises:
        ValueError: an unsupported type, dtype or shape, different kinds or
            shapes, tensors on different devices, or tensor values that are
            not finite or lie outside ``[0, 1]``.
    """
    data_range = _check_one(x, "x")
    if _check_one(y, "y") != data_range:
        raise ValueError(
            f"x and y must be of one kind, got {_describe(x)} and {_describe(y)}; "
            "convert one (e.g. torch.from_numpy(a).float() / 255) before comparing"
        )
    if x.shape != y.shape:  # type: ignore[attr-defined]
        raise ValueError(
            f"{what} must have one shape, got {tuple(x.shape)} and {tuple(y.shape)}"  # type: ignore[attr-defined]
        )
    if isinstance(x, torch.Tensor) and x.device != y.device:  # type: ignore[attr-defined]
        raise ValueError(f"x and y are on different devices: {x.device} and {y.device}")  # type: ignore[attr-defined]
    return data_range


def _check_one(image: object, name: str) -> float:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(
                f"{name} is a numpy array of dtype {image.dtype}; numpy frames must be "
                "uint8 RGB (use a float torch tensor in [0, 1] for other values)"
            )
        _check_shape(image.shape, name)
        return UINT8_RANGE
    if isinstance(image, torch.Tensor):
        if not image.is_floating_point():
            raise ValueError(
                f"{name} is a torch tensor of dtype {image.dtype}; tensors must be "
                "floating point RGB in [0, 1] (use a numpy uint8 array for 8-bit frames)"
            )
        _check_shape(tuple(image.shape), name)
        _check_unit_range(image, name)
        return FLOAT_RANGE
    raise ValueError(
        f"{name} must be a numpy uint8 array or a float torch tensor, got {type(image).__name__}"
    )


def _check_shape(shape: tuple[int, ...], name: str) -> None:
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"{name} must be one (H, W, 3) RGB frame, got shape {shape}")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {shape}")


def _check_unit_range(image: torch.Tensor, name: str) -> None:
    # One reduction, one device sync; NaN fails both comparisons.
    lo, hi = torch.aminmax(image.detach())
    lo_v, hi_v = float(lo), float(hi)
    if not (lo_v >= 0.0 and hi_v <= 1.0):
        raise ValueError(
            f"{name} must hold finite values in [0, 1], got min {lo_v} and max {hi_v}; "
            "clamp renderer output first (e.g. image.clamp(0, 1))"
        )


def _describe(image: object) -> str:
    dtype = getattr(image, "dtype", None)
    return f"{type(image).__name__} ({dtype})"


def to_nchw(image: Frame) -> torch.Tensor:
    """``(H, W, 3)`` frame as a ``(1, 3, H, W)`` float tensor in its own range.

    ``uint8`` arrays become float32 on the CPU with values 0..255; float
    tensors keep their device and dtype, half precision being widened to
    float32 (convolutions in half precision are not available on every
    device and lose accuracy).
    """
    if isinstance(image, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(image)).to(torch.float32)
    else:
        tensor = image.detach()
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.to(torch.float32)
    return tensor.permute(2, 0, 1).unsqueeze(0)
