"""Dense pure-PyTorch reference of the rasterizer, for tests and benchmarks.

Evaluates every Gaussian at every pixel (O(N * H * W), chunked over Gaussians
to bound memory) with the same model as the native kernels
(csrc/gaussian_setup.h): pixel centres at ``(x + 0.5, y + 0.5)``, weight
``exp(-0.5 |L^-1 d|^2)``, contribution only inside the 3-sigma box
``|dx| <= 3|a|, |dy| <= 3 sqrt(b^2 + c^2)``, diagonal of ``L`` clamped to at
least ``MIN_CHOL_DIAG`` pixels, non-finite Gaussians ignored. Differentiable
through PyTorch's autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor

MIN_CHOL_DIAG = 1e-3  # pixels; mirrors gfix::kMinCholDiag
BOX_SIGMAS = 3.0


def clamp_diag(value: Tensor) -> Tensor:
    """``sign(v) * max(|v|, MIN_CHOL_DIAG)`` with the sign of +0/-0 kept."""
    return value.abs().clamp_min(MIN_CHOL_DIAG).copysign(value)


def rasterize_dense(
    means: Tensor,
    chol: Tensor,
    colors: Tensor,
    height: int,
    width: int,
    *,
    chunk_elements: int = 1 << 24,
) -> Tensor:
    """Render ``(H, W, 3)`` from means ``(N, 2)``, Cholesky factors ``(N, 3)``
    and colours ``(N, 3)`` by brute force. ``chunk_elements`` bounds the size
    of the per-chunk ``(K, H, W)`` intermediates."""
    device, dtype = means.device, means.dtype
    px = torch.arange(width, device=device, dtype=dtype) + 0.5
    py = torch.arange(height, device=device, dtype=dtype) + 0.5
    out = torch.zeros(height, width, colors.shape[1], device=device, dtype=dtype)
    n = means.shape[0]
    step = max(1, chunk_elements // max(1, height * width))
    for start in range(0, n, step):
        sl = slice(start, start + step)
        mx, my = means[sl, 0], means[sl, 1]
        a, b, c = clamp_diag(chol[sl, 0]), chol[sl, 1], clamp_diag(chol[sl, 2])
        finite = torch.isfinite(means[sl]).all(1) & torch.isfinite(chol[sl]).all(1)
        rx = BOX_SIGMAS * a.abs()
        ry = BOX_SIGMAS * torch.sqrt(b * b + c * c)
        dx = px[None, None, :] - mx[:, None, None]  # (K, 1, W)
        dy = py[None, :, None] - my[:, None, None]  # (K, H, 1)
        inside = (
            (dx.abs() <= rx[:, None, None])
            & (dy.abs() <= ry[:, None, None])
            & finite[:, None, None]
        )
        u = dx / a[:, None, None]
        v = (dy - b[:, None, None] * u) / c[:, None, None]
        weight = torch.where(inside, torch.exp(-0.5 * (u * u + v * v)), 0.0)
        out = out + torch.einsum("khw,kc->hwc", weight, colors[sl])
    return out
