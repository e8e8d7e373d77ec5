"""A frame of 2D Gaussians: the unit the codec fits, quantises and renders."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gfix_sdk.raster import rasterize


@dataclass
class GaussianFrame:
    """N 2D Gaussians describing one ``height x width`` frame.

    Rendered by accumulated summation (:func:`gfix_sdk.raster.rasterize`);
    colours are in the [0, 1] RGB scale of the target image.
    """

    means: Tensor  #: (N, 2) float32 centres (x, y) in pixels
    chol: Tensor  #: (N, 3) float32 Cholesky factors (l11, l21, l22) in pixels
    colors: Tensor  #: (N, 3) float32 RGB weights
    height: int  #: frame height in pixels
    width: int  #: frame width in pixels

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        for name, value, cols in (("means", self.means, 2), ("chol", self.chol, 3), ("colors", self.colors, 3)):
            if value.dim() != 2 or value.shape != (n, cols):
                raise ValueError(f"{name} must have shape ({n}, {cols}), got {tuple(value.shape)}")

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    def render(self) -> Tensor:
        """``(height, width, 3)`` float32 image (differentiable)."""
        return rasterize(self.means, self.chol, self.colors, self.height, self.width)

    def detach(self) -> GaussianFrame:
        return GaussianFrame(self.means.detach(), self.chol.detach(), self.colors.detach(), self.height, self.width)

    def clone(self) -> GaussianFrame:
        return GaussianFrame(self.means.clone(), self.chol.clone(), self.colors.clone(), self.height, self.width)

    def to(self, device: torch.device | str) -> GaussianFrame:
        return GaussianFrame(self.means.to(device), self.chol.to(device), self.colors.to(device), self.height, self.width)

    def select(self, keep: Tensor) -> GaussianFrame:
        """The Gaussians where the boolean mask (or index tensor) ``keep`` selects."""
        return GaussianFrame(self.means[keep], self.chol[keep], self.colors[keep], self.height, self.width)

    def concat(self, other: GaussianFrame) -> GaussianFrame:
        return GaussianFrame(
            torch.cat([self.means, other.means]),
            torch.cat([self.chol, other.chol]),
            torch.cat([self.colors, other.colors]),
            self.height,
            self.width,
        )
