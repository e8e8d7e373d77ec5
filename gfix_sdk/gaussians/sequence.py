"""Fitting and coding a video frame by frame (GSVC-style reuse, closed loop).

Key frames start from an image-guided initialisation. Every other frame
starts from the previous *decoded* frame (what the decoder will hold): it
prunes Gaussians that contribute little, adds new ones where the error is
large, fine-tunes all of them with a rate penalty that keeps the kept
Gaussians close to their reference (small residuals code cheaply), then
fine-tunes on the quantisation grid (straight-through rounding) and codes the
result as integer residuals. A quality floor (``max_drift_db``) lowers that
penalty for the next frame whenever a frame falls too far below its key
frame, so quality holds along the GOP instead of drifting down. A new key frame starts at every GOP boundary
(frames 0, gop, 2 gop, ...: fixed, so that GOPs are independent of each other
and can be encoded in parallel, see :mod:`gfix_sdk.scale`) and wherever the
reference explains the new frame much worse than it explained the last one (a
scene cut, :func:`is_scene_cut`; the next key frame is still at the next
boundary).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from gfix_sdk.gaussians.code import encode_intra, encode_predicted
from gfix_sdk.gaussians.fit import FitConfig, fit_frame, psnr
from gfix_sdk.gaussians.init import init_from_image, sample_positions
from gfix_sdk.gaussians.model import GaussianFrame
from gfix_sdk.gaussians.quantize import (
    QuantizedFrame,
    QuantSpec,
    canonical_chol,
    dequantize,
    fake_quantize,
    quantize,
)
from gfix_sdk.gaussians.reconstruct import reconstruct, to_uint8


@dataclass(frozen=True)
class SequenceConfig:
    """Knobs of the Gaussian video codec (see :data:`PRESETS`)."""

    gaussians: int = 3000  #: Gaussians per frame (target)
    gop: int = 16  #: GOP length: key frames at every multiple of ``gop`` (and at scene cuts)
    key_iterations: int = 800  #: float fitting steps of a key frame
    p_iterations: int = 120  #: float fitting steps of a predicted frame
    qat_iterations: int = 100  #: steps on the quantisation grid, every frame
    quant: QuantSpec = field(default_factory=QuantSpec)
    prune_ratio: float = 0.02  #: prune Gaussians contributing < ratio x median
    add_fraction: float = 0.02  #: Gaussians replaced per predicted frame, x gaussians
    residual_weight: float = 2e-4  #: L1 penalty per grid step a kept Gaussian moves
    scene_cut_db: float = 10.0  #: PSNR drop of the reference that forces a key frame (see is_scene_cut)
    p_lr_scale: float = 1.5  #: predicted-frame learning rates relative to key frames (chosen by BD-rate, see README)
    max_drift_db: float | None = 0.9  #: quality floor: predicted frames aim at >= key frame's PSNR - this (None: fixed penalty; see next_residual_scale)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.gaussians < 1:
            raise ValueError(f"gaussians must be >= 1, got {self.gaussians}")
        if self.gop < 1:
            raise ValueError(f"gop must be >= 1, got {self.gop}")
        for name in ("key_iterations", "p_iterations", "qat_iterations"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.max_drift_db is not None and not self.max_drift_db > 0:
            raise ValueError(f"max_drift_db must be > 0 or None, got {self.max_drift_db}")


PRESETS: dict[str, SequenceConfig] = {
    "fast": SequenceConfig(key_iterations=400, p_iterations=60, qat_iterations=50),
    "medium": SequenceConfig(),
    "slow": SequenceConfig(key_iterations=2000, p_iterations=300, qat_iterations=200),
}


#: The reference quality a scene cut's drop is measured from, at most. Above
#: about 30 dB an unmoved reference's error on the next frame is the motion
#: between the frames, not its coding error: measured from a 38 dB reference
#: (Big Buck Bunny 1280x720, 64k Gaussians) ordinary motion fell 11 dB and
#: made every frame a key frame.
SCENE_CUT_BASELINE_DB = 30.0

#: Quality floor (``SequenceConfig.max_drift_db``): each this many dB a
#: predicted frame falls below the floor halves the next frame's residual
#: penalty; it never goes below MIN_RESIDUAL_SCALE x ``residual_weight``.
FLOOR_DB_PER_OCTAVE = 0.25
MIN_RESIDUAL_SCALE = 1.0 / 64


def is_scene_cut(prediction_psnr: float, reference_psnr: float, drop_db: float) -> bool:
    """True when the reference's render explains the new frame (``prediction_psnr``)
    more than ``drop_db`` worse than it explained its own frame
    (``reference_psnr``, counted as at most :data:`SCENE_CUT_BASELINE_DB`)."""
    return prediction_psnr < min(reference_psnr, SCENE_CUT_BASELINE_DB) - drop_db


def next_residual_scale(scale: float, frame_psnr: float, floor_psnr: float) -> float:
    """The quality floor's controller: the residual penalty's scale (x
    ``residual_weight``) for the next predicted frame, given this frame's.

    It is halved for every :data:`FLOOR_DB_PER_OCTAVE` dB the frame fell
    below ``floor_psnr`` (the key frame's PSNR - ``max_drift_db``) and
    doubled for every one it stayed above, within [:data:`MIN_RESIDUAL_SCALE`,
    1]: the penalty is lowered only as far as holding the floor needs, and
    never raised above the fixed one."""
    scale *= 2.0 ** ((frame_psnr - floor_psnr) / FLOOR_DB_PER_OCTAVE)
    return min(1.0, max(MIN_RESIDUAL_SCALE, scale))


@dataclass
class CodedFrame:
    """One coded frame and the encoder's view of what the decoder will show."""

    index: int  #: frame number in the sequence
    key: bool  #: intra-coded (random-access point)
    payload: bytes  #: the frame's bitstream payload
    quantized: QuantizedFrame  #: decoded Gaussians, in decoded order
    reconstruction: Tensor  #: (H, W, 3) uint8 frame the decoder outputs
    psnr: float  #: PSNR of the reconstruction against the input frame, dB

    @property
    def num_gaussians(self) -> int:
        return self.quantized.num_gaussians


def contribution(frame: GaussianFrame) -> Tensor:
    """How much each Gaussian adds to the image: |colour| x its integral
    (2 pi |l11 l22| pixels)."""
    area = 2 * math.pi * (frame.chol[:, 0] * frame.chol[:, 2]).abs()
    return frame.colors.norm(dim=1) * area


def _visible(frame: GaussianFrame) -> Tensor:
    m, c = frame.means, canonical_chol(frame.chol)
    rx = 3 * c[:, 0]
    ry = 3 * torch.sqrt(c[:, 1] ** 2 + c[:, 2] ** 2)
    return (m[:, 0] + rx > 0) & (m[:, 0] - rx < frame.width) & (m[:, 1] + ry > 0) & (m[:, 1] - ry < frame.height)


def _new_gaussians(target: Tensor, render: Tensor, count: int, seed: int) -> GaussianFrame:
    """Gaussians placed where the error is largest, coloured with the residual."""
    height, width, _ = target.shape
    residual = target - render
    error = (residual**2).sum(-1)
    error = torch.nn.functional.avg_pool2d(error[None, None], 5, stride=1, padding=2, count_include_pad=False)[0, 0]
    gen = torch.Generator(device=target.device).manual_seed(seed)
    means, density = sample_positions(error + 1e-8, count, gen)
    sigma = torch.sqrt(1.0 / (math.pi * density)).clamp(0.5, 4.0)
    zeros = torch.zeros_like(sigma)
    xi = means[:, 0].long().clamp(0, width - 1)
    yi = means[:, 1].long().clamp(0, height - 1)
    colors = 0.5 * residual[yi, xi]
    return GaussianFrame(means, torch.stack([sigma, zeros, sigma], 1), colors.contiguous(), height, width)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch device ("cpu", "cuda", "cuda:1"; None: CUDA when
    available, else the CPU); raises ``ValueError`` for one that is not there."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"invalid device {device!r}: {exc}") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but PyTorch sees no CUDA device")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return resolved


class SequenceEncoder:
    """Encodes frames one at a time; holds only the reference frame between calls.

    Initialisation, fitting, pruning/adding and quantisation-aware fine-tuning
    run on ``device`` (default: CUDA when available; it makes encoding an
    order of magnitude faster); the
    integer Gaussians are coded on the host. The bitstream format is the same
    on every device; the CPU path is deterministic.

    ``start_index`` is the number of the first frame to be coded: a GOP
    encoded on its own (``start_index`` a multiple of ``config.gop``) yields
    exactly the frames that encoding the whole sequence yields there, since
    key frames fall on fixed boundaries and every random seed derives from
    ``config.seed`` and the frame number."""

    def __init__(self, config: SequenceConfig, height: int, width: int, *, progress: bool = False,
                 device: str | torch.device | None = None, start_index: int = 0) -> None:
        if start_index < 0:
            raise ValueError(f"start_index must be >= 0, got {start_index}")
        self.config = config
        self.height, self.width = height, width
        self.progress = progress
        self.device = resolve_device(device)
        self._ref: QuantizedFrame | None = None
        self._ref_psnr = 0.0
        self._key_psnr = 0.0
        self._residual_scale = 1.0
        self._index = start_index

    def encode(self, rgb: np.ndarray | Tensor) -> CodedFrame:
        """Code the next frame (``(H, W, 3)`` uint8)."""
        target = _as_float_image(rgb, self.height, self.width).to(self.device)
        cfg = self.config
        # Fixed boundaries (not "gop frames after the last key frame"): a scene
        # cut must not shift later GOPs, or GOPs could not be coded apart.
        key = self._ref is None or self._index % cfg.gop == 0
        if not key:
            ref_render = reconstruct(self._ref, cfg.quant, self.height, self.width, device=self.device)
            if is_scene_cut(psnr(ref_render, target), self._ref_psnr, cfg.scene_cut_db):
                key = True  # the reference no longer explains the frame
        if key:
            payload, quantized = self._encode_key(target)
        else:
            payload, quantized = self._encode_predicted(target, ref_render)
        recon = reconstruct(quantized, cfg.quant, self.height, self.width, device=self.device)
        coded = CodedFrame(
            index=self._index,
            key=key,
            payload=payload,
            quantized=quantized,
            reconstruction=to_uint8(recon).cpu(),
            psnr=psnr(recon, target),
        )
        self._ref, self._ref_psnr = quantized, coded.psnr
        self._steer_residual_penalty(key, coded.psnr)
        self._index += 1
        return coded

    def _steer_residual_penalty(self, key: bool, frame_psnr: float) -> None:
        # Reset at every key frame and driven only by the GOP's own frames:
        # GOPs stay independent and the bytes deterministic.
        if key:
            self._key_psnr, self._residual_scale = frame_psnr, 1.0
        elif self.config.max_drift_db is not None:
            self._residual_scale = next_residual_scale(self._residual_scale, frame_psnr,
                                                       self._key_psnr - self.config.max_drift_db)

    def _fit_config(self, iterations: int, scale: float) -> FitConfig:
        base = FitConfig()
        return FitConfig(
            iterations=iterations,
            lr_means=base.lr_means * scale,
            lr_chol=base.lr_chol * scale,
            lr_colors=base.lr_colors * scale,
        )

    def _encode_key(self, target: Tensor) -> tuple[bytes, QuantizedFrame]:
        cfg = self.config
        init = init_from_image(target, cfg.gaussians, seed=cfg.seed + self._index)
        fitted = fit_frame(target, init, self._fit_config(cfg.key_iterations, 1.0),
                           progress=self.progress, desc=f"frame {self._index} (key)").frame
        frame = self._fit_on_grid(target, fitted, anchor=None, scale=0.2)
        return encode_intra(quantize(frame, cfg.quant).to("cpu"))

    def _encode_predicted(self, target: Tensor, ref_render: Tensor) -> tuple[bytes, QuantizedFrame]:
        cfg = self.config
        ref = dequantize(self._ref, cfg.quant, self.height, self.width).to(self.device)
        # Keep the visible, contributing Gaussians, at most `budget` of them
        # (the strongest), so that `add_fraction` of the count is renewed.
        score = contribution(ref)
        candidate = _visible(ref) & (score >= cfg.prune_ratio * score.median())
        budget = cfg.gaussians - int(cfg.add_fraction * cfg.gaussians)
        if int(candidate.sum()) > budget:
            threshold = torch.topk(torch.where(candidate, score, -1.0), budget).values[-1]
            candidate &= score >= threshold
        keep = candidate
        kept = ref.select(keep)
        n_new = max(0, cfg.gaussians - kept.num_gaussians)
        new = _new_gaussians(target, ref_render, n_new, cfg.seed + self._index)
        start = kept.concat(new)
        anchor = (kept.num_gaussians, kept)
        fitted = self._fit_with_anchor(target, start, anchor, cfg.p_iterations, cfg.p_lr_scale)
        frame = self._fit_on_grid(target, fitted, anchor=anchor, scale=0.2 * cfg.p_lr_scale)
        q = quantize(frame, cfg.quant).to("cpu")
        k = kept.num_gaussians
        return encode_predicted(self._ref, keep.cpu(), q.select(slice(0, k)), q.select(slice(k, None)))

    def _fit_with_anchor(self, target, start, anchor, iterations, scale, *, on_grid=False) -> GaussianFrame:
        """Fit with MSE + residual_weight x (grid steps the first k Gaussians
        move away from ``anchor``), optionally through straight-through
        quantisation (the forward pass then sees the decoder's values)."""
        cfg = self.config
        penalty = None
        if anchor is not None and cfg.residual_weight > 0:
            k, ref = anchor
            ref_chol = canonical_chol(ref.chol)
            weight = cfg.residual_weight * self._residual_scale

            def moved_penalty(means: Tensor, chol: Tensor, colors: Tensor) -> Tensor:
                moved = (
                    (means[:k] - ref.means).abs().sum() / cfg.quant.pos_step
                    + (canonical_chol(chol[:k]) - ref_chol).abs().sum() / cfg.quant.chol_step
                    + (colors[:k] - ref.colors).abs().sum() / cfg.quant.luma_step
                )
                return weight * moved / cfg.gaussians

            penalty = moved_penalty

        transform = (lambda m, c, col: fake_quantize(m, c, col, cfg.quant)) if on_grid else None
        return fit_frame(target, start, self._fit_config(iterations, scale), progress=False,
                         transform=transform, penalty=penalty).frame

    def _fit_on_grid(self, target, frame, *, anchor, scale) -> GaussianFrame:
        """Quantisation-aware fine-tuning: the forward pass sees the grid values."""
        if self.config.qat_iterations == 0:
            return frame
        return self._fit_with_anchor(target, frame, anchor, self.config.qat_iterations, scale, on_grid=True)


def check_frame(rgb: np.ndarray | Tensor, height: int, width: int) -> Tensor:
    """``rgb`` as a uint8 tensor (no copy); ``ValueError`` unless it is ``(height, width, 3)`` uint8."""
    image = torch.as_tensor(rgb)
    if image.shape != (height, width, 3) or image.dtype != torch.uint8:
        raise ValueError(f"frames must be ({height}, {width}, 3) uint8, got {tuple(image.shape)} {image.dtype}")
    return image


def _as_float_image(rgb: np.ndarray | Tensor, height: int, width: int) -> Tensor:
    return check_frame(rgb, height, width).to(torch.float32) / 255.0


__all__ = ["SequenceConfig", "SequenceEncoder", "CodedFrame", "PRESETS", "check_frame", "contribution", "next_residual_scale",
           "resolve_device"]
