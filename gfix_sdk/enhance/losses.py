"""Distortion losses for adapter training.

Difix's objective is L2 + LPIPS + 0.5 x Gram (style loss on VGG features).
LPIPS and Gram need VGG16 weights, which cannot be downloaded here: pass a
local LPIPS-VGG weights file (see :mod:`gfix_sdk.perceptual`) to get them.
Without one the loss says so once and uses L2 + (1 - MS-SSIM) instead
(single-scale SSIM for patches too small for five MS-SSIM scales).
"""

from __future__ import annotations

import os
import warnings

import torch
from pytorch_msssim import ms_ssim, ssim
from torch import Tensor, nn

GRAM_WEIGHT = 0.5


def _gram(features: Tensor) -> Tensor:
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


class DistortionLoss(nn.Module):
    """``forward(output, target)`` on ``(B, 3, H, W)`` images in [0, 1]."""

    def __init__(self, lpips_weights: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.lpips = None
        if lpips_weights is not None:
            from gfix_sdk.perceptual import load_lpips

            self.lpips = load_lpips(lpips_weights, net="vgg").requires_grad_(False)
        else:
            warnings.warn(
                "no LPIPS/VGG weights given: training with L2 + MS-SSIM instead of Difix's "
                "L2 + LPIPS + Gram (pass lpips_weights=... / --lpips PATH to use them)",
                stacklevel=2,
            )

    @property
    def description(self) -> str:
        return "L2 + LPIPS + 0.5 Gram" if self.lpips is not None else "L2 + (1 - MS-SSIM)"

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        l2 = torch.mean((output - target) ** 2)
        if self.lpips is not None:
            dist, feats_out, feats_ref = self.lpips(output, target, return_features=True)
            gram = sum(torch.mean((_gram(a) - _gram(b)) ** 2) for a, b in zip(feats_out, feats_ref))
            return l2 + dist.mean() + GRAM_WEIGHT * gram
        return l2 + (1 - structural_similarity(output.clamp(0, 1), target))


def structural_similarity(output: Tensor, target: Tensor) -> Tensor:
    """MS-SSIM where the patch allows five scales (window 7 needs > 96 px),
    otherwise SSIM with a window that fits."""
    side = min(output.shape[-2:])
    if side > 96:
        return ms_ssim(output, target, data_range=1.0, win_size=7 if side <= 160 else 11)
    win = 7 if side >= 7 else (side if side % 2 else side - 1)
    return ssim(output, target, data_range=1.0, win_size=max(1, win))
