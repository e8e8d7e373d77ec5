"""Modulated LoRA (mLoRA) and vanilla LoRA adapters for Linear and Conv2d layers.

mLoRA (GFix, Sec. II-C): for a layer with weight W reshaped to
``out x (in * k * k)``, take the truncated SVD ``W ~ U_r S_r V_r^T`` and fix

    A = U_r S_r^(1/2)   (out x r)        B = S_r^(1/2) V_r^T   (r x in k k)

Both are frozen and rebuilt by the decoder from its own copy of the base
weights; only the ``r x r`` modulation map ``M`` (initialised to zero) is
trained and transmitted:  ``y = W x + A M (B x)``, computed as ``(W + A M B) x`` (one
layer, as the folded ``W' = W + A M B`` that export writes).
The rank is capped at the layer's own rank ``min(out, in k k)``.

The SVD must give the decoder exactly the encoder's A and B. It is computed
in float64 on the CPU and each singular pair gets a fixed sign (the largest
entry of ``u_i`` positive) before rounding to float32; the same process on
the same machine is bit-for-bit repeatable, and across LAPACK builds the
float32 rounding absorbs float64 last-bit differences except in the rare
case of (near-)repeated singular values, where the basis itself is ambiguous.

The SVD is the costly part of building an adapted model (minutes on
SD-Turbo's U-Net), so the factors can be computed once per base and passed
in (``factors=``, see :mod:`gfix_sdk.runtime.factors`): they must be exactly
:func:`low_rank_factors`' output, which :func:`check_factors` checks by shape.

Vanilla LoRA (the paper's ablation v1.1): ``y = W x + U (D x)`` with ``D``
(r x in k k) random and ``U`` (out x r) zero, both trained and transmitted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MODES = ("mlora", "lora")


def layer_rank_cap(weight: Tensor) -> int:
    """Largest possible rank of a weight reshaped to ``out x (in k k)``."""
    return min(weight.shape[0], int(weight[0].numel()))


def low_rank_factors(weight: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """Deterministic ``(A, B)`` with ``A @ B`` the best rank-``r`` approximation
    of ``weight`` (reshaped to 2-D), ``r = min(rank, layer rank cap)``."""
    matrix = weight.detach().to("cpu", torch.float64).reshape(weight.shape[0], -1)
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    r = min(rank, layer_rank_cap(weight))
    u, s, vh = u[:, :r], s[:r], vh[:r]
    pivot = u.abs().argmax(dim=0)
    sign = torch.sign(u[pivot, torch.arange(r)])
    sign[sign == 0] = 1.0
    u, vh = u * sign, vh * sign[:, None]
    root = s.sqrt()
    return (u * root).to(torch.float32).contiguous(), (root[:, None] * vh).to(torch.float32).contiguous()


def check_factors(factors: tuple[Tensor, Tensor], weight_shape: tuple[int, ...], rank: int, what: str) -> None:
    """Raise ValueError unless ``factors`` have the shapes :func:`low_rank_factors`
    gives for a weight of ``weight_shape`` at ``rank``."""
    out, fan_in = weight_shape[0], math.prod(weight_shape[1:])
    r = min(rank, out, fan_in)
    a, b = factors
    if tuple(a.shape) != (out, r) or tuple(b.shape) != (r, fan_in):
        raise ValueError(f"{what}: precomputed factors have shapes {tuple(a.shape)} and {tuple(b.shape)}, "
                         f"expected {(out, r)} and {(r, fan_in)}")
    if a.dtype != torch.float32 or b.dtype != torch.float32:
        raise ValueError(f"{what}: precomputed factors must be float32")


class _AdaptedLayer(nn.Module):
    """Base layer (frozen) + low-rank update; subclasses say how to apply it."""

    def __init__(self, base: nn.Module, rank: int, mode: str,
                 factors: tuple[Tensor, Tensor] | None = None) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.base = base.requires_grad_(False)
        self.mode = mode
        self.transform: Callable[[Tensor], Tensor] | None = None
        weight = base.weight
        if mode == "mlora":
            if factors is None:
                a, b = low_rank_factors(weight, rank)
            else:
                check_factors(factors, tuple(weight.shape), rank, type(base).__name__)
                a, b = (f.to(weight.device) for f in factors)
            self.register_buffer("A", a, persistent=False)
            self.register_buffer("B", b, persistent=False)
            self.M = nn.Parameter(torch.zeros(a.shape[1], a.shape[1]))
        else:
            r = min(rank, layer_rank_cap(weight))
            fan_in = weight[0].numel()
            gen = torch.Generator().manual_seed(r * 1000003 + fan_in)  # reproducible init
            self.down = nn.Parameter(torch.randn(r, fan_in, generator=gen) / math.sqrt(fan_in))
            self.up = nn.Parameter(torch.zeros(weight.shape[0], r))

    @property
    def rank(self) -> int:
        return int(self.M.shape[0] if self.mode == "mlora" else self.down.shape[0])

    def trainable(self) -> list[nn.Parameter]:
        """What is trained and transmitted for this layer."""
        return [self.M] if self.mode == "mlora" else [self.down, self.up]

    def factors(self) -> tuple[Tensor, Tensor]:
        """``(left, right)`` with ``delta W = left @ right``. The trainable
        tensors pass through ``self.transform`` first when it is set (the
        enhancer sets it to straight-through quantisation while training)."""
        values = self.trainable()
        if self.transform is not None:
            values = [self.transform(v) for v in values]
        if self.mode == "mlora":
            return self.A, values[0] @ self.B
        return values[1], values[0]

    def delta_weight(self) -> Tensor:
        left, right = self.factors()
        return (left @ right).reshape(self.base.weight.shape)

    def fold(self) -> nn.Module:
        """A plain layer with ``W + delta W`` (no adapter ops left)."""
        folded = _copy_layer(self.base)
        with torch.no_grad():
            folded.weight.add_(self.delta_weight().to(folded.weight.dtype))
        return folded


class AdaptedLinear(_AdaptedLayer):
    def forward(self, x: Tensor) -> Tensor:
        # W + A M B is formed first: one matrix product per forward instead of
        # two extra layers over every token (the factors are far smaller than the activations).
        weight = self.base.weight + self.delta_weight().to(self.base.weight.dtype)
        return F.linear(x, weight, self.base.bias)


class AdaptedConv2d(_AdaptedLayer):
    def __init__(self, base: nn.Conv2d, rank: int, mode: str,
                 factors: tuple[Tensor, Tensor] | None = None) -> None:
        if base.groups != 1:
            raise ValueError("grouped convolutions are not supported")
        super().__init__(base, rank, mode, factors)

    def forward(self, x: Tensor) -> Tensor:
        # One convolution with W + A M B (see AdaptedLinear), the same as the folded layer.
        conv = self.base
        weight = conv.weight + self.delta_weight().to(conv.weight.dtype)
        return conv._conv_forward(x, weight, conv.bias)


class ModulatedMatrix(nn.Module):
    """A fixed matrix E (e.g. the prompt embedding) adapted as ``E + A M B``."""

    def __init__(self, value: Tensor, rank: int, factors: tuple[Tensor, Tensor] | None = None) -> None:
        super().__init__()
        self.register_buffer("E", value.detach().to(torch.float32).clone(), persistent=False)
        if factors is None:
            a, b = low_rank_factors(value, rank)
        else:
            check_factors(factors, tuple(value.shape), rank, "prompt embedding")
            a, b = factors
        self.register_buffer("A", a, persistent=False)
        self.register_buffer("B", b, persistent=False)
        self.M = nn.Parameter(torch.zeros(a.shape[1], a.shape[1]))
        self.transform: Callable[[Tensor], Tensor] | None = None

    def forward(self) -> Tensor:
        m = self.M if self.transform is None else self.transform(self.M)
        return self.E + self.A @ m @ self.B


def _copy_layer(layer: nn.Module) -> nn.Module:
    if isinstance(layer, nn.Linear):
        out = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    elif isinstance(layer, nn.Conv2d):
        out = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                        layer.padding, layer.dilation, layer.groups, layer.bias is not None, layer.padding_mode)
    else:
        raise TypeError(f"cannot fold into {type(layer).__name__}")
    out.load_state_dict(layer.state_dict())
    return out.to(layer.weight.device, layer.weight.dtype)


def matches(name: str, targets: Iterable[str]) -> bool:
    """True when the module path ``name`` ends with one of the ``targets``
    (whole dotted components: ``"conv"`` matches ``up.0.conv``, not ``conv1``)."""
    return any(name == t or name.endswith("." + t) for t in targets)


def find_targets(model: nn.Module, targets: Iterable[str]) -> list[str]:
    """Names of the Linear/Conv2d layers of ``model`` matching ``targets``, sorted."""
    targets = tuple(targets)
    return sorted(
        name for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.Conv2d)) and matches(name, targets)
    )


def inject(model: nn.Module, names: Sequence[str], rank: int, mode: str = "mlora",
           factors: Mapping[str, tuple[Tensor, Tensor]] | None = None) -> dict[str, _AdaptedLayer]:
    """Replace each named layer of ``model`` by its adapted version, in place.
    ``factors``: precomputed mLoRA ``(A, B)`` by layer name (else each layer's SVD is computed)."""
    adapted: dict[str, _AdaptedLayer] = {}
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = getattr(parent, child)
        pair = factors[name] if factors is not None and mode == "mlora" else None
        kind = AdaptedLinear if isinstance(layer, nn.Linear) else AdaptedConv2d
        wrapper = kind(layer, rank, mode, pair)
        setattr(parent, child, wrapper)
        adapted[name] = wrapper
    return adapted


def fold_into(model: nn.Module, adapted: dict[str, _AdaptedLayer]) -> None:
    """Replace every adapted layer of ``model`` by its folded plain layer, in place."""
    for name, wrapper in adapted.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, wrapper.fold())
