"""Random Gaussians shaped like a fitted frame, for tests and benchmarks."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def box_area(chol: Tensor) -> Tensor:
    """Area in pixels of each Gaussian's 3-sigma box: (6 sigma_x)(6 sigma_y)."""
    sigma_x = chol[:, 0].abs()
    sigma_y = torch.sqrt(chol[:, 1] ** 2 + chol[:, 2] ** 2)
    return 36.0 * sigma_x * sigma_y


def random_gaussians(
    n: int,
    height: int,
    width: int,
    *,
    coverage: float = 4.0,
    log_scale_std: float = 0.4,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(means, chol, colors)`` for ``n`` random anisotropic Gaussians.

    Sizes are log-normal with random orientation, rescaled so that the mean
    3-sigma box area is exactly ``coverage * height * width / n`` (a fitted
    frame covers every pixel a few times over). Colours are uniform in
    ``[0, 1/coverage]`` so the rendered image stays in a natural range.
    """
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 2, generator=gen) * torch.tensor([width, height], dtype=torch.float32)
    log_s = log_scale_std * torch.randn(n, 2, generator=gen)
    theta = torch.rand(n, generator=gen) * math.pi
    var = torch.exp(2.0 * log_s)
    cos, sin = torch.cos(theta), torch.sin(theta)
    sxx = cos**2 * var[:, 0] + sin**2 * var[:, 1]
    syy = sin**2 * var[:, 0] + cos**2 * var[:, 1]
    sxy = cos * sin * (var[:, 0] - var[:, 1])
    a = torch.sqrt(sxx)
    b = sxy / a
    c = torch.sqrt(torch.clamp_min(syy - b * b, 1e-12))
    chol = torch.stack([a, b, c], dim=1)
    if n > 0:
        target = coverage * height * width / n
        chol = chol * math.sqrt(target / box_area(chol).mean().item())
    colors = torch.rand(n, 3, generator=gen) / coverage
    return means.contiguous(), chol.contiguous(), colors.contiguous()
