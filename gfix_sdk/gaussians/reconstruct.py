"""The decoder's reconstruction of a frame, shared by encoder and decoder so
that both compute it with exactly the same operations."""

from __future__ import annotations

import torch
from torch import Tensor

from gfix_sdk.gaussians.quantize import QuantizedFrame, QuantSpec, dequantize


def to_uint8(image: Tensor) -> Tensor:
    """Float image in [0, 1] (any device) to uint8 by clamping and rounding."""
    return (image.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def reconstruct(q: QuantizedFrame, spec: QuantSpec, height: int, width: int, *, device: torch.device | str = "cpu") -> Tensor:
    """``(H, W, 3)`` float32 render in [0, 1]-ish (not clamped) of a decoded frame."""
    frame = dequantize(q, spec, height, width).to(device)
    with torch.no_grad():
        return frame.render()
