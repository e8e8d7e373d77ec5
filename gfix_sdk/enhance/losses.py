"""Distortion losses for adapter training.

Difix's objective is L2 + LPIPS + 0.5 x Gram (style loss on VGG features).
LPIPS and Gram need VGG16 weights, which are never downloaded at run time:
the set-up converts them once (``python -m gfix_sdk.perceptual.convert --net
vgg --install``) to where :func:`gfix_sdk.paths.lpips_weights` finds them,
or pass a file. :func:`make_loss` picks the loss by name: ``"difix"`` (needs
the weights), ``"l2-msssim"`` (L2 + (1 - MS-SSIM); single-scale SSIM for
patches too small for five MS-SSIM scales), or ``"auto"`` (Difix's when the
weights are found, else L2 + MS-SSIM with a warning saying how to get them).

A fidelity term can be added to either: ``vmaf_weight x (1 - VMAF-NEG / 100)``
on the frames' BT.601 luma, computed by vmaf-torch (a differentiable
re-implementation of libvmaf's features and SVM; on held-out training
sequences it reads within 0.03 points of libvmaf). Perceptual losses buy
LPIPS with detail that is not the original's, which VMAF's VIF and ADM
features count as lost fidelity; the term makes the adapter pay for that.
It uses VMAF's *NEG* model (no enhancement gain), so the adapter cannot
raise it by sharpening or boosting contrast, and motion is off (crops have
no neighbours in time; VMAF's motion feature reads the original only).
"""

from __future__ import annotations

import os
import warnings

import torch
from pytorch_msssim import ms_ssim, ssim
from torch import Tensor, nn

from gfix_sdk.io.yuv import KB, KG, KR  # the BT.601 conversion the VMAF metric's y4m uses

GRAM_WEIGHT = 0.5


def _gram(features: Tensor) -> Tensor:
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


class DistortionLoss(nn.Module):
    """``forward(output, target)`` on ``(B, 3, H, W)`` images in [0, 1]."""

    def __init__(self, lpips_weights: str | os.PathLike[str] | None = None, *, l2_weight: float = 1.0,
                 vmaf_weight: float = 0.0) -> None:
        super().__init__()
        if not l2_weight > 0:
            raise ValueError(f"l2_weight must be positive, got {l2_weight}")
        if not vmaf_weight >= 0:
            raise ValueError(f"vmaf_weight must be >= 0, got {vmaf_weight}")
        self.l2_weight = float(l2_weight)
        self.vmaf_weight = float(vmaf_weight)
        self.lpips = None
        if lpips_weights is not None:
            from gfix_sdk.perceptual import load_lpips

            self.lpips = load_lpips(lpips_weights, net="vgg").requires_grad_(False)
        self.vmaf = VmafNeg() if self.vmaf_weight > 0 else None

    @property
    def description(self) -> str:
        l2 = "L2" if self.l2_weight == 1 else f"{self.l2_weight:g} L2"
        text = f"{l2} + LPIPS + 0.5 Gram" if self.lpips is not None else f"{l2} + (1 - MS-SSIM)"
        return text + (f" + {self.vmaf_weight:g} (1 - VMAF-NEG/100)" if self.vmaf is not None else "")

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        loss = self.l2_weight * torch.mean((output - target) ** 2)
        if self.lpips is not None:
            dist, feats_out, feats_ref = self.lpips(output, target, return_features=True)
            gram = sum(torch.mean((_gram(a) - _gram(b)) ** 2) for a, b in zip(feats_out, feats_ref))
            loss = loss + dist.mean() + GRAM_WEIGHT * gram
        else:
            loss = loss + (1 - structural_similarity(output.clamp(0, 1), target))
        if self.vmaf is not None:
            loss = loss + self.vmaf_weight * (1 - self.vmaf(output, target).mean() / 100)
        return loss


class VmafNeg(nn.Module):
    """Differentiable VMAF-NEG (v0.6.1 features, no enhancement gain) of
    ``(B, 3, H, W)`` RGB images in [0, 1], per image, motion off."""

    def __init__(self) -> None:
        super().__init__()
        try:
            from vmaf_torch import VMAF
        except ImportError as exc:  # a dependency of gfix-sdk; only a broken install lacks it
            raise ImportError("the VMAF fidelity term needs vmaf-torch (pip install vmaf-torch), "
                              "or train with vmaf_weight=0 (--vmaf-weight 0)") from exc
        self.model = VMAF(enable_motion=False, NEG=True).eval().requires_grad_(False)

    @staticmethod
    def luma(rgb: Tensor) -> Tensor:
        """BT.601 limited-range Y in [16, 235] of RGB in [0, 1] (clamped first, as the frames are stored)."""
        rgb = rgb.clamp(0, 1).float()
        return 16 + 219 * (KR * rgb[:, 0:1] + KG * rgb[:, 1:2] + KB * rgb[:, 2:3])

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return self.model(self.luma(target), self.luma(output)).reshape(-1)


LOSSES = ("auto", "difix", "l2-msssim")
_HOW_TO_GET = ("convert them once with `python -m gfix_sdk.perceptual.convert --net vgg --install` "
               "(or pass --lpips PATH)")


def make_loss(kind: str = "auto", lpips_weights: str | os.PathLike[str] | None = None, *,
              l2_weight: float = 1.0, vmaf_weight: float = 0.0) -> DistortionLoss:
    """The distortion loss called ``kind`` (see the module docstring), its L2 term weighted by ``l2_weight``,
    plus the VMAF-NEG fidelity term weighted by ``vmaf_weight`` (0: none)."""
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
    if kind == "l2-msssim":
        return DistortionLoss(None, l2_weight=l2_weight, vmaf_weight=vmaf_weight)
    from gfix_sdk.paths import lpips_weights as installed

    weights = lpips_weights if lpips_weights is not None else installed("vgg")
    if weights is None:
        if kind == "difix":
            raise FileNotFoundError(f"Difix's loss needs the LPIPS-VGG weights, which are not installed: {_HOW_TO_GET}")
        warnings.warn("LPIPS-VGG weights not found: training with L2 + MS-SSIM instead of Difix's "
                      f"L2 + LPIPS + Gram; {_HOW_TO_GET}", stacklevel=2)
        return DistortionLoss(None, l2_weight=l2_weight, vmaf_weight=vmaf_weight)
    return DistortionLoss(weights, l2_weight=l2_weight, vmaf_weight=vmaf_weight)


def structural_similarity(output: Tensor, target: Tensor) -> Tensor:
    """MS-SSIM where the patch allows five scales (window 7 needs > 96 px),
    otherwise SSIM with a window that fits."""
    side = min(output.shape[-2:])
    if side > 96:
        return ms_ssim(output, target, data_range=1.0, win_size=7 if side <= 160 else 11)
    win = 7 if side >= 7 else (side if side % 2 else side - 1)
    return ssim(output, target, data_range=1.0, win_size=max(1, win))
