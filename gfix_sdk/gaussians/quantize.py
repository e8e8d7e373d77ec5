"""Scalar quantisation of Gaussian attributes onto fixed grids.

Each attribute is rounded to a uniform grid with its own step:

* positions: ``pos_step`` pixels;
* Cholesky factor ``(l11, l21, l22)``: ``chol_step`` pixels, after flipping to
  the canonical signs ``l11 >= 0, l22 >= 0`` (the covariance, and so the
  render, does not change: ``(l11, l21) -> -(l11, l21)`` and ``l22 -> -l22``
  both leave ``L L^T`` alone);
* colours: in a luma/chroma basis (BT.601 YCbCr matrix, no offsets), luma with
  ``luma_step`` and both chroma with ``chroma_step``. Summation colours are
  strongly correlated across R, G, B: measured on a fitted 384x256 frame,
  YCbCr steps (1/128, 1/64) gave 30.90 dB at 12.5 bits/Gaussian where RGB
  steps of 1/32 gave 30.65 dB at 12.8 bits and a 256-entry k-means codebook
  29.16 dB at 10.6 bits.

Position and Cholesky steps of 1/4 pixel (1/8 before) were chosen by BD-rate
on a tuning clip together with the quality floor of
:class:`~gfix_sdk.gaussians.sequence.SequenceConfig` (``max_drift_db``): a
coarser grid makes each residual step of a predicted frame cover more motion,
so holding the floor costs fewer bits. The steps travel in every file's
stream info, so files made with other steps decode unchanged.

Grids are absolute, so a predicted frame's residual against its reference is
an exact integer difference and the decoder rebuilds it bit for bit.
Dequantisation uses elementwise float32 arithmetic only (no matrix products
that a BLAS could round differently).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gfix_sdk.gaussians.model import GaussianFrame

# BT.601 luma/chroma analysis matrix (rows: Y, Cb, Cr) and its inverse's terms.
_KR, _KB = 0.299, 0.114
_KG = 1.0 - _KR - _KB


@dataclass(frozen=True)
class QuantSpec:
    """Grid steps for every attribute (all > 0)."""

    pos_step: float = 0.25  #: pixels (1/8 before; see the module docstring)
    chol_step: float = 0.25  #: pixels (1/8 before)
    luma_step: float = 1.0 / 128  #: colour units (image range is [0, 1])
    chroma_step: float = 1.0 / 64  #: colour units

    def __post_init__(self) -> None:
        for name in ("pos_step", "chol_step", "luma_step", "chroma_step"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < 1e3):
                raise ValueError(f"{name} must be a positive number, got {value!r}")


def _take_rows(values: Tensor, index: np.ndarray) -> Tensor:
    """``values[index]`` for a CPU (N, C) tensor, gathering along its memory
    order: a decoded frame's columns are rows of one channel-major array, where
    a row gather would stride across all of them (3-5x slower)."""
    array = values.numpy()
    if values.dim() == 2 and values.stride(0) == 1 and values.shape[1] > 1:
        return torch.from_numpy(np.take(array.T, index, axis=1)).T
    return torch.from_numpy(np.take(array, index, axis=0))


@dataclass
class QuantizedFrame:
    """Integer grid indices of a frame's Gaussians (what the bitstream carries)."""

    means: Tensor  #: (N, 2) int64 positions / pos_step
    chol: Tensor  #: (N, 3) int64 canonical Cholesky factor / chol_step
    colors: Tensor  #: (N, 3) int64 (Y, Cb, Cr) / (luma_step, chroma_step, chroma_step)

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    def select(self, keep: Tensor | slice) -> QuantizedFrame:
        """The Gaussians where the bool mask ``keep`` is true (or a slice of them)."""
        if isinstance(keep, Tensor) and keep.dtype == torch.bool and keep.device.type == "cpu" \
                and all(t.device.type == "cpu" for t in self.tensors()):
            index = np.flatnonzero(keep.numpy())
            return QuantizedFrame(*(_take_rows(t, index) for t in self.tensors()))
        return QuantizedFrame(self.means[keep], self.chol[keep], self.colors[keep])

    def concat(self, other: QuantizedFrame) -> QuantizedFrame:
        return QuantizedFrame(
            torch.cat([self.means, other.means]),
            torch.cat([self.chol, other.chol]),
            torch.cat([self.colors, other.colors]),
        )

    def equal(self, other: QuantizedFrame) -> bool:
        return all(torch.equal(a, b) for a, b in zip(self.tensors(), other.tensors()))

    def tensors(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.means, self.chol, self.colors

    def to(self, device: torch.device | str) -> QuantizedFrame:
        return QuantizedFrame(*(t.to(device) for t in self.tensors()))


def canonical_chol(chol: Tensor) -> Tensor:
    """The same covariance with ``l11 >= 0`` and ``l22 >= 0``."""
    flip = torch.where(chol[:, 0] < 0, -1.0, 1.0)
    return torch.stack([chol[:, 0] * flip, chol[:, 1] * flip, chol[:, 2].abs()], dim=1)


def rgb_to_ycc(rgb: Tensor) -> Tensor:
    r, g, b = rgb.unbind(-1)
    y = _KR * r + _KG * g + _KB * b
    return torch.stack([y, (b - y) / (2 * (1 - _KB)), (r - y) / (2 * (1 - _KR))], dim=-1)


def ycc_to_rgb(ycc: Tensor) -> Tensor:
    y, cb, cr = ycc.unbind(-1)
    r = y + (2 * (1 - _KR)) * cr
    b = y + (2 * (1 - _KB)) * cb
    g = (y - _KR * r - _KB * b) / _KG
    return torch.stack([r, g, b], dim=-1)


def _color_steps(spec: QuantSpec, like: Tensor) -> Tensor:
    return torch.tensor([spec.luma_step, spec.chroma_step, spec.chroma_step], dtype=like.dtype, device=like.device)


def quantize(frame: GaussianFrame, spec: QuantSpec) -> QuantizedFrame:
    """Round a frame's attributes to the grids of ``spec``."""
    return QuantizedFrame(
        means=torch.round(frame.means / spec.pos_step).to(torch.int64),
        chol=torch.round(canonical_chol(frame.chol) / spec.chol_step).to(torch.int64),
        colors=torch.round(rgb_to_ycc(frame.colors) / _color_steps(spec, frame.colors)).to(torch.int64),
    )


def dequantize(q: QuantizedFrame, spec: QuantSpec, height: int, width: int) -> GaussianFrame:
    """Float32 Gaussians from grid indices (deterministic elementwise arithmetic)."""
    f32 = torch.float32

    def as_float(values: Tensor) -> Tensor:  # row-major in the same pass (decoded frames are column-major views)
        return values.to(f32, memory_format=torch.contiguous_format)

    colors_ycc = as_float(q.colors) * _color_steps(spec, torch.zeros((), dtype=f32, device=q.colors.device))
    return GaussianFrame(
        means=(as_float(q.means) * spec.pos_step).contiguous(),
        chol=(as_float(q.chol) * spec.chol_step).contiguous(),
        colors=ycc_to_rgb(colors_ycc).contiguous(),
        height=height,
        width=width,
    )


def _straight_through(value: Tensor, rounded: Tensor) -> Tensor:
    return value + (rounded - value).detach()


def fake_quantize(means: Tensor, chol: Tensor, colors: Tensor, spec: QuantSpec) -> tuple[Tensor, Tensor, Tensor]:
    """Quantise-dequantise with straight-through gradients, for quantisation-aware
    fine-tuning: the forward sees exactly the decoder's values, the backward
    passes gradients through the rounding unchanged."""
    q_means = torch.round(means / spec.pos_step) * spec.pos_step
    canon = canonical_chol(chol)
    q_chol = torch.round(canon / spec.chol_step) * spec.chol_step
    steps = _color_steps(spec, colors)
    ycc = rgb_to_ycc(colors)
    q_colors = ycc_to_rgb(torch.round(ycc / steps) * steps)
    return (
        _straight_through(means, q_means),
        _straight_through(canon, q_chol),
        _straight_through(colors, q_colors),
    )
