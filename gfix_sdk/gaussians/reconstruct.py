"""The decoder's reconstruction of a frame, shared by encoder and decoder so
that both compute it with exactly the same operations."""

from __future__ import annotations

import torch
from torch import Tensor

from gfix_sdk.gaussians.model import GaussianFrame
from gfix_sdk.gaussians.quantize import QuantizedFrame, QuantSpec, dequantize
from gfix_sdk.raster.rasterize import rasterize_uint8, to_uint8, to_uint8_reference


def reconstruct(q: QuantizedFrame, spec: QuantSpec, height: int, width: int, *, device: torch.device | str = "cpu") -> Tensor:
    """``(H, W, 3)`` float32 render in [0, 1]-ish (not clamped) of a decoded frame."""
    return render_frame(dequantize(q, spec, height, width).to(device))


def reconstruct_uint8(q: QuantizedFrame, spec: QuantSpec, height: int, width: int, *,
                      device: torch.device | str = "cpu") -> Tensor:
    """``to_uint8(reconstruct(...))``: the frame as the decoder shows it."""
    return render_frame(dequantize(q, spec, height, width).to(device), uint8=True)


def render_frame(frame: GaussianFrame, *, uint8: bool = False) -> Tensor:
    """The render of a dequantised frame: float32, or uint8 as :func:`to_uint8`
    gives it (without a float image on the CPU: :func:`rasterize_uint8`)."""
    with torch.no_grad():
        if uint8:
            return rasterize_uint8(frame.means, frame.chol, frame.colors, frame.height, frame.width)
        return frame.render()


__all__ = ["reconstruct", "reconstruct_uint8", "render_frame", "to_uint8", "to_uint8_reference"]
