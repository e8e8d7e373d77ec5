"""Per-video adapter training under a rate-distortion loss (GFix Sec. II-E).

    loss = R / (frames x pixels)  +  lambda x D(enhance(rendered), original)

``R`` is the Laplace rate proxy of the transmitted tensors in bits (so the
first term is the adapter's bits per pixel of the video), ``D`` Difix's
distortion (see :mod:`gfix_sdk.enhance.losses`). Batches are random
``patch x patch`` crops of (Gaussian-decoded frame, original frame) pairs.
The paper's schedule is the default: 2,000 steps, batch 2, learning rate 0.05
with cosine decay, Adam. After training the quantisation step is chosen by a
small grid search on a fixed validation batch (C3's practice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from gfix_sdk.enhance.base import BaseDefaults
from gfix_sdk.enhance.crops import CropSampler
from gfix_sdk.enhance.losses import DistortionLoss, make_loss
from gfix_sdk.enhance.model import GROUPS, Enhancer
from gfix_sdk.enhance.rate import LaplaceRate, add_uniform_noise, ste_round

#: Five rate points, as in the paper (larger lambda: more adapter bits, less
#: distortion). The paper's own values are not given; recalibrate on SD-Turbo.
LAMBDA_PRESETS = {1: 0.03, 2: 0.1, 3: 0.3, 4: 1.0, 5: 3.0}


@dataclass(frozen=True)
class TrainConfig:
    """Adapter training settings."""

    steps: int | None = None  #: optimisation steps; None: the base's default (SD-Turbo: 2,000)
    batch: int = 2  #: patches per step
    crop: int | None = None  #: side of the training crops; None: the base's default (SD-Turbo: the patch)
    lr: float | None = None  #: Adam learning rate of the transmitted tensors (cosine decay); None: the base's
    lr_t: float = 2.0  #: Adam learning rate of the timestep, in timestep units
    lmbda: float = 1.0  #: distortion weight (see LAMBDA_PRESETS)
    step: float = 2.0**-8  #: initial quantisation step of every group
    step_search: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)  #: multipliers tried after training
    loss: str = "auto"  #: "auto", "difix" or "l2-msssim" (see gfix_sdk.enhance.losses.make_loss)
    l2_weight: float | None = None  #: weight of the loss's L2 term; None: the base's default (Difix's 1)
    vmaf_weight: float | None = None  #: weight of the VMAF-NEG fidelity term; None: the base's default (0: none)
    lpips_weights: str | None = None  #: LPIPS-VGG weights file; None: the installed one
    seed: int = 0
    autocast: bool = True  #: bf16 autocast on CUDA (ignored on CPU)

    def __post_init__(self) -> None:
        if (self.steps is not None and self.steps < 0) or (self.lr is not None and self.lr <= 0):
            raise ValueError("steps >= 0 and lr > 0 are required")
        if self.crop is not None and (self.crop < 8 or self.crop % 8):
            raise ValueError(f"crop must be a positive multiple of 8, got {self.crop}")
        if self.vmaf_weight is not None and not self.vmaf_weight >= 0:
            raise ValueError(f"vmaf_weight must be >= 0, got {self.vmaf_weight}")
        if self.batch < 1 or self.lmbda <= 0 or self.step <= 0:
            raise ValueError("batch >= 1 and positive lmbda and step are required")

    def resolved(self, defaults: BaseDefaults) -> TrainConfig:
        """This configuration with the base's defaults filled in (steps and learning rate)."""
        return replace(self, steps=self.steps if self.steps is not None else defaults.steps,
                       lr=self.lr if self.lr is not None else defaults.lr,
                       crop=self.crop if self.crop is not None else defaults.crop,
                       l2_weight=self.l2_weight if self.l2_weight is not None else defaults.l2_weight,
                       vmaf_weight=self.vmaf_weight if self.vmaf_weight is not None else defaults.vmaf_weight)


@dataclass
class TrainResult:
    """What training produced."""

    steps: dict[str, float]  #: chosen quantisation step per group
    estimated_bits: float  #: rate proxy of the final quantised adapter
    history: list[dict[str, float]] = field(default_factory=list)  #: per-logged-step losses
    loss_description: str = ""
    mixture_hints: dict[str, tuple[float, float, float]] = field(default_factory=dict)  #: rate model per group
    initial_distortion: float = float("nan")  #: D on the validation batch before training
    final_distortion: float = float("nan")  #: D on the validation batch after quantisation


def _rate_bits(enhancer: Enhancer, rate: LaplaceRate, steps: dict[str, float], *, noisy: bool) -> torch.Tensor:
    total = torch.zeros(())
    for group, tensors in enhancer.groups().items():
        for tensor in tensors:
            values = add_uniform_noise(tensor, steps[group]) if noisy else torch.round(tensor / steps[group]) * steps[group]
            total = total + rate.bits(group, values.reshape(-1), steps[group])
    return total


def train_enhancer(
    enhancer: Enhancer,
    rendered: np.ndarray,
    original: np.ndarray,
    config: TrainConfig = TrainConfig(),
    *,
    loss_fn: DistortionLoss | None = None,
    progress: bool = True,
    log_every: int = 25,
) -> TrainResult:
    """Fit ``enhancer``'s adapter so that it maps ``rendered`` frames (the
    Gaussian decoder's output) to ``original`` ones. Both ``(T, H, W, 3)`` uint8.
    ``config``'s unset steps and learning rate come from the enhancer's base;
    ``loss_fn`` defaults to the loss ``config`` names.
    Leaves the enhancer holding its final *quantised* values."""
    config = config.resolved(enhancer.base_defaults)
    torch.manual_seed(config.seed)
    device = enhancer.t.device
    sampler = CropSampler(rendered, original, config.crop or enhancer.config.patch, config.seed)
    pixels = float(np.prod(rendered.shape[:3]))
    if loss_fn is None:
        loss_fn = make_loss(config.loss, config.lpips_weights, l2_weight=config.l2_weight,
                            vmaf_weight=config.vmaf_weight or 0.0)
    loss_fn = loss_fn.to(device)
    rate = LaplaceRate(GROUPS).to(device)
    steps = {g: config.step for g in GROUPS}
    val_in, val_ref = sampler.sample(max(2, config.batch))
    val_in, val_ref = val_in.to(device), val_ref.to(device)

    def validation_distortion() -> float:
        with torch.no_grad():
            return float(loss_fn(enhancer(val_in), val_ref))

    result = TrainResult(steps=steps, estimated_bits=0.0, loss_description=loss_fn.description)
    result.initial_distortion = validation_distortion()
    tensors = [p for group in enhancer.groups().values() for p in group]
    optimizer = torch.optim.Adam([
        {"params": tensors, "lr": config.lr},
        {"params": list(rate.parameters()), "lr": config.lr},
        {"params": [enhancer.t], "lr": config.lr_t},
    ])
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(1, config.steps))))
    use_autocast = config.autocast and device.type == "cuda"
    enhancer.set_transform({g: (lambda v, s=steps[g]: ste_round(v, s)) for g in GROUPS})
    bar = tqdm(range(config.steps), desc="train enhancer", disable=not progress, unit="step")
    try:
        for step in bar:
            rendered_batch, original_batch = (t.to(device) for t in sampler.sample(config.batch))
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_autocast):
                output = enhancer(rendered_batch)
            distortion = loss_fn(output.float(), original_batch)
            bits = _rate_bits(enhancer, rate, steps, noisy=True)
            loss = bits / pixels + config.lmbda * distortion
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if step % log_every == 0 or step == config.steps - 1:
                record = {"step": step, "distortion": distortion.item(), "bits": bits.item(), "t": enhancer.t.item()}
                result.history.append(record)
                bar.set_postfix(D=f"{record['distortion']:.4f}", kbit=f"{record['bits'] / 1000:.1f}",
                                t=f"{record['t']:.1f}")
        bar.close()
        result.steps = _choose_step(enhancer, rate, steps, loss_fn, val_in, val_ref, pixels, config)
    finally:
        enhancer.set_transform(None)
    # Leave the enhancer exactly as the decoder will rebuild it, and estimate
    # the rate of those final values with the proxy refitted to them.
    with torch.no_grad():
        for group, group_tensors in enhancer.groups().items():
            for tensor in group_tensors:
                tensor.copy_(torch.round(tensor / result.steps[group]) * result.steps[group])
    final = {g: torch.cat([t.detach().reshape(-1) for t in ts]) for g, ts in enhancer.groups().items()}
    rate.refit(final, result.steps)
    with torch.no_grad():
        result.estimated_bits = float(_rate_bits(enhancer, rate, result.steps, noisy=False))
    result.mixture_hints = {g: rate.mixture_hint(g, result.steps[g]) for g in GROUPS}
    result.final_distortion = validation_distortion()
    return result


def _choose_step(enhancer, rate, steps, loss_fn, val_in, val_ref, pixels, config) -> dict[str, float]:
    """Grid search of one shared multiplier of the steps, on R + lambda D."""
    best, best_steps = None, steps
    for factor in config.step_search:
        candidate = {g: s * factor for g, s in steps.items()}
        enhancer.set_transform({g: (lambda v, s=candidate[g]: torch.round(v / s) * s) for g in GROUPS})
        with torch.no_grad():
            objective = float(_rate_bits(enhancer, rate, candidate, noisy=False)) / pixels + config.lmbda * float(
                loss_fn(enhancer(val_in), val_ref))
        if best is None or objective < best:
            best, best_steps = objective, candidate
    return best_steps
