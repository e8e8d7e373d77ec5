"""The fixer stage of the stand-in's pretraining (Difix3D+'s recipe at toy size).

The whole single-step path — VAE encoder, U-Net at the timestep ``t``,
closed-form ``x0``, VAE decoder with the encoder->decoder skip convolutions —
is trained on (Gaussian-decoded frame, original frame) pairs under Difix's
L2 + LPIPS(VGG) + 0.5 Gram loss, at a fixed timestep and the base's prompt.
The skip convolutions trained here become base weights (``gfix/skips.safetensors``
in the base directory); per-video adapters then start from a model that
already removes our codec's artifacts instead of one that merely reconstructs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from gfix_sdk.enhance.base import BaseModel, prompt_embedding
from gfix_sdk.enhance.crops import CropSampler
from gfix_sdk.enhance.model import interpolate_alpha_bar, single_step, skip_weights


@dataclass(frozen=True)
class FixerConfig:
    """Settings of the fixer stage."""

    steps: int = 3000  #: optimisation steps
    batch: int = 8  #: crops per step
    crop: int = 96  #: crop side in pixels (multiple of 8)
    lr: float = 4e-4  #: AdamW peak learning rate (warm-up, cosine decay)
    t: float = 199.0  #: the timestep the fixer is trained at (Difix's)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch < 1 or self.crop < 8 or self.crop % 8 or self.lr <= 0:
            raise ValueError("fixer: steps >= 0, batch >= 1, crop a multiple of 8 and lr > 0 are required")


class FixerModel(nn.Module):
    """The single-step path with everything trainable (for pretraining only)."""

    def __init__(self, base: BaseModel, skips: nn.ModuleList, t: float) -> None:
        super().__init__()
        self.vae, self.unet, self.skips = base.vae, base.unet, skips
        self.prediction_type = base.prediction_type
        self.wiring = base.wiring
        self.register_buffer("prompt", prompt_embedding(base)[None], persistent=False)
        self.register_buffer("t", torch.tensor(float(t)), persistent=False)
        self.register_buffer("abar", interpolate_alpha_bar(base.alphas_cumprod, self.t.double()).float(),
                             persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return single_step(self.vae, self.unet, self.skips, self.prompt, self.t, self.abar, self.prediction_type, x,
                           wiring=self.wiring)


def train_fixer(
    model: FixerModel,
    rendered: np.ndarray,
    original: np.ndarray,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    config: FixerConfig = FixerConfig(),
    *,
    validate: Callable[[], dict[str, float]] | None = None,
    validate_every: int = 500,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict[str, float]]:
    """Train every parameter of ``model`` to map ``rendered`` to ``original``;
    returns the logged history (``validate()``'s scores every ``validate_every`` steps)."""
    torch.manual_seed(config.seed)
    sampler = CropSampler(rendered, original, config.crop, config.seed, flips=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    warmup = max(1, config.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then cosine decay to zero
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, config.steps)))))
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    running = None
    bar = tqdm(range(config.steps), desc="fixer", unit="step", disable=not progress)
    for step in bar:
        model.train()
        inputs, targets = sampler.sample(config.batch)
        loss = loss_fn(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.4f}")
        last = step == config.steps - 1
        if validate is not None and (step % validate_every == 0 or last):
            model.eval()
            with torch.no_grad():
                scores = validate()
            record = {"step": step, "loss": running, "seconds": time.perf_counter() - start, **scores}
            history.append(record)
            log("fixer " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                     for k, v in record.items()))
    model.eval()
    return history


def skip_convs(base: BaseModel, *, copy_weights: bool = True) -> nn.ModuleList:
    """The skip connections as plain 1x1 convolutions of the fixer: the base's
    weights (:func:`~gfix_sdk.enhance.model.skip_weights`), or with
    ``copy_weights=False`` only their shapes (PyTorch's default initialisation)."""
    weights = skip_weights(base)
    convs = nn.ModuleList(nn.Conv2d(w.shape[1], w.shape[0], 1, bias=False) for w in weights)
    if copy_weights:
        for conv, weight in zip(convs, weights, strict=True):
            conv.weight.data.copy_(weight)
    return convs


__all__ = ["FixerConfig", "FixerModel", "skip_convs", "train_fixer"]

