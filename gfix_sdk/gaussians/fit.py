"""Fitting a frame's Gaussians to an image by gradient descent on the L2 loss."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from gfix_sdk.gaussians.model import GaussianFrame
from gfix_sdk.raster import rasterize


@dataclass(frozen=True)
class FitConfig:
    """Optimiser settings for :func:`fit_frame` (Adam with cosine decay)."""

    iterations: int = 2000  #: gradient steps
    lr_means: float = 0.1  #: Adam step size for means (pixels)
    lr_chol: float = 0.1  #: Adam step size for Cholesky factors (pixels)
    lr_colors: float = 0.02  #: Adam step size for colours
    min_lr_ratio: float = 0.0  #: final learning rate as a fraction of the initial one

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        for name in ("lr_means", "lr_chol", "lr_colors"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")


@dataclass
class FitResult:
    """The fitted frame and how the fit went."""

    frame: GaussianFrame  #: fitted Gaussians (detached)
    psnr: float  #: PSNR in dB of the final render (clamped to [0, 1]) vs the target
    history: list[float] = field(default_factory=list)  #: training PSNR every ``log_every`` steps


def psnr(image: Tensor, target: Tensor) -> float:
    """PSNR in dB between float images in [0, 1] (``image`` is clamped first)."""
    mse = torch.mean((image.clamp(0, 1) - target) ** 2).item()
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


Params = tuple[Tensor, Tensor, Tensor]


def fit_frame(
    target: Tensor,
    init: GaussianFrame,
    config: FitConfig = FitConfig(),
    *,
    progress: bool = True,
    desc: str = "fit",
    log_every: int = 50,
    transform: Callable[[Tensor, Tensor, Tensor], Params] | None = None,
    penalty: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
) -> FitResult:
    """Optimise ``init``'s Gaussians so that their render matches ``target``.

    Args:
        target: ``(H, W, 3)`` float32 image in [0, 1], same size as ``init``.
        init: starting Gaussians (left unchanged).
        config: optimiser settings.
        progress: show a progress bar with the running PSNR.
        desc: progress-bar label.
        log_every: record the training PSNR every this many steps.
        transform: maps the parameters to what is rendered (e.g. straight-through
            quantisation for quantisation-aware fine-tuning).
        penalty: extra loss term on the rendered parameters (e.g. a rate proxy).
    """
    if target.shape != (init.height, init.width, 3):
        raise ValueError(
            f"target must have shape ({init.height}, {init.width}, 3), got {tuple(target.shape)}"
        )
    means = init.means.detach().clone().requires_grad_(True)
    chol = init.chol.detach().clone().requires_grad_(True)
    colors = init.colors.detach().clone().requires_grad_(True)
    history: list[float] = []
    if config.iterations > 0:
        optimizer = torch.optim.Adam(
            [
                {"params": [means], "lr": config.lr_means},
                {"params": [chol], "lr": config.lr_chol},
                {"params": [colors], "lr": config.lr_colors},
            ]
        )
        floor = config.min_lr_ratio
        schedule = torch.optim.lr_scheduler.LambdaLR(  # cosine decay from 1 to `floor`
            optimizer,
            lambda step: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * step / config.iterations)),
        )
        bar = tqdm(range(config.iterations), desc=desc, disable=not progress, leave=False, unit="it")
        for step in bar:
            params = transform(means, chol, colors) if transform is not None else (means, chol, colors)
            mse = torch.mean((rasterize(*params, init.height, init.width) - target) ** 2)
            loss = mse + penalty(*params) if penalty is not None else mse
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if step % log_every == 0 or step == config.iterations - 1:
                value = -10.0 * math.log10(max(mse.item(), 1e-12))
                history.append(value)
                bar.set_postfix(psnr=f"{value:.2f} dB")
        bar.close()
    frame = GaussianFrame(means.detach(), chol.detach(), colors.detach(), init.height, init.width)
    with torch.no_grad():
        final = psnr(frame.render(), target)
    return FitResult(frame=frame, psnr=final, history=history)
