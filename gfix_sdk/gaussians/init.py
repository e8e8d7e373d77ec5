"""Image-guided initialisation of a key frame's Gaussians.

Positions are sampled with probability proportional to local detail (gradient
magnitude, blurred) plus a uniform floor, so edges and texture get more,
smaller Gaussians and flat areas fewer, larger ones. Each Gaussian starts
isotropic with an area matching its share of the image (sigma ~ 1/sqrt(local
density)); colours are then solved in closed form for summation rendering:
render the unit-colour coverage S(p) = sum_j w_j(p) once and set
c_i = I(mu_i) / S(mu_i), which makes the first render close to the image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from gfix_sdk.gaussians.model import GaussianFrame
from gfix_sdk.raster import rasterize


def detail_map(image: Tensor, *, blur: int = 2) -> Tensor:
    """``(H, W)`` non-negative map of local detail: Sobel gradient magnitude of
    the luma, box-blurred over ``2 * blur + 1`` pixels."""
    luma = (image * torch.tensor([0.299, 0.587, 0.114], device=image.device)).sum(-1)
    x = luma[None, None]
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=image.device) / 8
    gx = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kx[None, None])
    gy = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kx.T[None, None])
    mag = torch.sqrt(gx**2 + gy**2)
    if blur > 0:
        k = 2 * blur + 1
        mag = F.avg_pool2d(F.pad(mag, (blur,) * 4, mode="replicate"), k, stride=1)
    return mag[0, 0]


def sample_positions(
    weights: Tensor, n: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Sample ``n`` sub-pixel positions from an ``(H, W)`` weight map.

    Returns ``(means (n, 2), density (n,))`` where density is the expected
    number of samples per pixel at each position."""
    height, width = weights.shape
    if n == 0:  # nothing to place (a predicted frame that keeps every Gaussian)
        return weights.new_zeros((0, 2)), weights.new_zeros((0,))
    prob = (weights / weights.sum()).flatten()
    idx = torch.multinomial(prob, n, replacement=True, generator=generator)
    jitter = torch.rand(n, 2, generator=generator, device=weights.device)
    ys = torch.div(idx, width, rounding_mode="floor")
    xs = idx % width
    means = torch.stack([xs, ys], 1).to(torch.float32) + jitter
    return means, prob[idx] * n


def init_from_image(
    image: Tensor,
    num_gaussians: int,
    *,
    uniform_fraction: float = 0.3,
    seed: int = 0,
) -> GaussianFrame:
    """Image-guided initial Gaussians for an ``(H, W, 3)`` float image in [0, 1]."""
    if image.dim() != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {tuple(image.shape)}")
    if num_gaussians < 1:
        raise ValueError(f"num_gaussians must be >= 1, got {num_gaussians}")
    height, width, _ = image.shape
    gen = torch.Generator(device=image.device).manual_seed(seed)
    detail = detail_map(image)
    weights = (1 - uniform_fraction) * detail / detail.mean().clamp_min(1e-8) + uniform_fraction
    means, density = sample_positions(weights, num_gaussians, gen)
    # Each Gaussian owns about 1/density pixels; pick sigma so that its
    # 1-sigma disc covers that area.
    sigma = torch.sqrt(1.0 / (math.pi * density)).clamp(0.5, max(height, width) / 4)
    zeros = torch.zeros_like(sigma)
    chol = torch.stack([sigma, zeros, sigma], 1)
    coverage = rasterize(means, chol, torch.ones_like(means[:, :1]).expand(-1, 3).contiguous(), height, width)[..., 0]
    xi = means[:, 0].long().clamp(0, width - 1)
    yi = means[:, 1].long().clamp(0, height - 1)
    colors = image[yi, xi] / coverage[yi, xi, None].clamp_min(1e-3)
    return GaussianFrame(means.contiguous(), chol.contiguous(), colors.contiguous(), height, width)
