"""Quantisation and the differentiable rate proxy of the adapter.

Training follows the usual split (GFix Sec. II-D, after NVRC): the
*distortion* path sees values rounded to the grid with a straight-through
gradient; the *rate* path sees the values plus uniform noise of one step
width and is charged their information content under a zero-mean Laplace
density per group (its scale is learned jointly), integrated over the bin:

    bits(x) = -log2( F(x + step/2) - F(x - step/2) ),   F = Laplace CDF.

After training the values are rounded and coded with
:func:`gfix_sdk.coding.encode_symbols` (empirical histogram, discrete Laplace
or raw bits, whichever is smallest), whose size tracks this estimate.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def ste_round(values: Tensor, step: float) -> Tensor:
    """Round to multiples of ``step`` with a straight-through gradient."""
    return values + (torch.round(values / step) * step - values).detach()


def add_uniform_noise(values: Tensor, step: float) -> Tensor:
    """``values + U(-step/2, step/2)``: the training stand-in for rounding."""
    return values + (torch.rand_like(values) - 0.5) * step


def laplace_bin_bits(values: Tensor, scale: Tensor, step: float) -> Tensor:
    """Bits of each value's bin ``[x - step/2, x + step/2]`` under Laplace(0, scale)."""
    half = step / 2
    a = values.abs()
    # By symmetry use |x|; split on whether the bin straddles zero, and write
    # each case with decaying exponentials only (no 1 - F cancellation). Each
    # branch gets inputs clamped to its own domain so that the branch not
    # taken cannot overflow (an inf there would turn gradients into NaN).
    a_far, a_near = a.clamp_min(half), a.clamp_max(half)
    far = 0.5 * (torch.exp(-(a_far - half) / scale) - torch.exp(-(a_far + half) / scale))
    near = 1 - 0.5 * torch.exp(-(half - a_near) / scale) - 0.5 * torch.exp(-(a_near + half) / scale)
    prob = torch.where(a >= half, far, near).clamp_min(1e-12)
    return -torch.log2(prob)


class LaplaceRate(nn.Module):
    """Per-group rate proxy: a zero-mean mixture of a narrow and a wide Laplace.

    Trained adapters are sparse (a spike at zero) with a few large values, which
    one Laplace fits badly; the two-component mixture tracks the empirical
    entropy that the coder achieves closely. ``bits(group, values, step)``.
    """

    def __init__(self, groups: tuple[str, ...], init_scale: float = 1e-2) -> None:
        super().__init__()
        self.log_scale = nn.ParameterDict(
            {g: nn.Parameter(torch.tensor([math.log(init_scale / 4), math.log(init_scale * 4)])) for g in groups})
        self.logit = nn.ParameterDict({g: nn.Parameter(torch.tensor(0.0)) for g in groups})

    def bits(self, group: str, values: Tensor, step: float) -> Tensor:
        scales = self.log_scale[group].exp()
        weight = torch.sigmoid(self.logit[group])
        prob_narrow = torch.exp2(-laplace_bin_bits(values, scales[0], step))
        prob_wide = torch.exp2(-laplace_bin_bits(values, scales[1], step))
        prob = (weight * prob_narrow + (1 - weight) * prob_wide).clamp_min(1e-12)
        return -torch.log2(prob).sum()

    def mixture_hint(self, group: str, step: float) -> tuple[float, float, float]:
        """This group's mixture as discrete-Laplace ratios per grid step and the
        narrow component's weight (a starting point for the coder's own fit)."""
        scales = self.log_scale[group].exp().detach().tolist()
        narrow, wide = sorted(math.exp(-step / s) for s in scales)
        weight = float(torch.sigmoid(self.logit[group].detach()))
        if math.exp(-step / scales[0]) > math.exp(-step / scales[1]):
            weight = 1 - weight  # the first component was the wider one
        return narrow, wide, weight

    def refit(self, values: dict[str, Tensor], steps: dict[str, float], iterations: int = 300) -> None:
        """Fit the mixtures to fixed (quantised) values by minimising their bits."""
        optimizer = torch.optim.Adam(self.parameters(), lr=0.05)
        for _ in range(iterations):
            total = sum(self.bits(g, v, steps[g]) for g, v in values.items())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
