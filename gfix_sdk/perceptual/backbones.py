"""The two ImageNet backbones LPIPS reads features from, in plain torch.

Both are rebuilt from their architecture definitions (Krizhevsky et al. 2012
in its single-tower "one weird trick" form, and Simonyan & Zisserman 2015,
configuration D) with the same layer order and indices as the ``features``
block of the classic PyTorch model zoo. Keeping those indices means a
state dict of these layers uses the well-known keys (``features.0.weight`` is
the first convolution, and so on), which makes converted files easy to audit.

Only the layers up to the last ReLU that LPIPS taps are built: the trailing
max-pool of each ``features`` block has no parameters and does not feed any
LPIPS layer.
"""

from __future__ import annotations

from typing import Final

import torch
from torch import Tensor, nn

NETS: Final = ("alex", "vgg")

# Indices (into the ``features`` block) of the five ReLU outputs LPIPS compares.
# AlexNet: relu1..relu5. VGG16: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
TAPS: Final[dict[str, tuple[int, ...]]] = {
    "alex": (1, 4, 7, 9, 11),
    "vgg": (3, 8, 15, 22, 29),
}

# Channel counts of the tapped feature maps (the widths of the LPIPS heads).
CHANNELS: Final[dict[str, tuple[int, ...]]] = {
    "alex": (64, 192, 384, 256, 256),
    "vgg": (64, 128, 256, 512, 512),
}

# Smallest image side that leaves every tapped map at least 1x1: AlexNet's
# stride-4 11x11 stem and two 3x3/2 pools, VGG's four 2x2/2 pools.
MIN_SIDE: Final[dict[str, int]] = {"alex": 31, "vgg": 16}

# VGG16 ("configuration D") convolution widths; "M" is a 2x2 max-pool.
_VGG16_CFG: Final = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def _alexnet_layers() -> list[nn.Module]:
    return [
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(),
    ]


def _vgg16_layers() -> list[nn.Module]:
    layers: list[nn.Module] = []
    width = 3
    for item in _VGG16_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(width, int(item), kernel_size=3, padding=1), nn.ReLU()]
            width = int(item)
    return layers


class Backbone(nn.Sequential):
    """Convolution/ReLU/max-pool stack whose ``forward`` returns the tapped ReLU outputs.

    ReLUs are not in-place (unlike the model-zoo originals) because the tapped
    activations are kept for the loss and must survive the following layers.
    """

    def __init__(self, net: str) -> None:
        if net not in NETS:
            raise ValueError(f"unknown LPIPS backbone {net!r}; expected one of {NETS}")
        super().__init__(*(_alexnet_layers() if net == "alex" else _vgg16_layers()))
        self.net = net
        self.taps = TAPS[net]
        self.channels = CHANNELS[net]

    def conv_indices(self) -> list[int]:
        """Indices of the convolutions, in order (the order of the pretrained weights)."""
        return [i for i, layer in enumerate(self) if isinstance(layer, nn.Conv2d)]

    def forward(self, x: Tensor) -> list[Tensor]:  # type: ignore[override]
        taps = set(self.taps)
        out: list[Tensor] = []
        for i, layer in enumerate(self):
            x = layer(x)
            if i in taps:
                out.append(x)
        return out


def infer_net(state_dict: dict[str, torch.Tensor]) -> str | None:
    """Which backbone a state dict belongs to, judged from its last convolution's key."""
    if "features.28.weight" in state_dict:
        return "vgg"
    if "features.10.weight" in state_dict:
        return "alex"
    return None
