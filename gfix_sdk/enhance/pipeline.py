"""Enhancer entry points for the encoder and the decoder.

Encoder: :func:`fit_adapter` trains an adapter on (decoded Gaussian frame,
original frame) pairs and codes it. Decoder: :func:`load_enhancer` rebuilds
the enhancer from a local base model and a coded adapter. Both sides enhance
frames with :func:`enhance_frame`, so the encoder's evaluation and the
decoder's output are computed the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from gfix_sdk.enhance.adapter import CodedAdapter, apply_adapter, decode_adapter, encode_adapter
from gfix_sdk.enhance.base import base_hash, load_base
from gfix_sdk.enhance.model import AdapterConfig, Enhancer, enhance_by_patches
from gfix_sdk.enhance.train import TrainConfig, TrainResult, train_enhancer


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class EnhanceSettings:
    """How ``gfix encode --enhance`` builds and trains the enhancer."""

    base: str | None = None  #: local SD-Turbo directory (None: $GFIX_BASE)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str | None = None  #: None: CUDA when available, else CPU


@dataclass
class FittedAdapter:
    payload: bytes  #: the ENHANCER section payload
    enhancer: Enhancer  #: holding exactly the decoded adapter
    result: TrainResult  #: training record
    coded: CodedAdapter  #: the payload, parsed back


def fit_adapter(
    originals: np.ndarray,
    rendered: np.ndarray,
    settings: EnhanceSettings = EnhanceSettings(),
    *,
    progress: bool = True,
) -> FittedAdapter:
    """Train and code an adapter for one video (``(T, H, W, 3)`` uint8 arrays)."""
    base = load_base(settings.base)
    digest = base_hash(base)
    device = torch.device(settings.device) if settings.device else default_device()
    enhancer = Enhancer(base, settings.adapter).to(device)
    result = train_enhancer(enhancer, rendered, originals, settings.train, progress=progress)
    payload = encode_adapter(enhancer, result.steps, digest, result.mixture_hints)
    coded = decode_adapter(payload)
    apply_adapter(enhancer, coded, digest)  # evaluate exactly what the decoder will rebuild
    return FittedAdapter(payload=payload, enhancer=enhancer.eval(), result=result, coded=coded)


def load_enhancer(payload: bytes, base: str | os.PathLike[str] | None = None,
                  device: str | torch.device | None = None) -> tuple[Enhancer, CodedAdapter]:
    """Rebuild the enhancer of a coded adapter on a local base model."""
    coded = decode_adapter(payload)
    model = load_base(base)
    digest = base_hash(model)  # before Enhancer injects adapters into the base's modules
    enhancer = Enhancer(model, coded.config)
    apply_adapter(enhancer, coded, digest)
    return enhancer.to(torch.device(device) if device else default_device()).eval(), coded


@torch.no_grad()
def enhance_frame(run: Callable[[Tensor], Tensor], frame: Tensor, patch: int, *, batch: int = 4) -> Tensor:
    """Enhance one ``(H, W, 3)`` uint8 frame with ``run`` (a batch-of-patches
    function: an enhancer backend, or ``enhancer_runner(enhancer)``); returns
    uint8 on the frame's device. Encoder and decoder both enhance through here."""
    image = frame.to(torch.float32) / 255.0
    out = enhance_by_patches(run, image, patch, batch=batch)
    return (out * 255.0).round().to(torch.uint8)


def enhancer_runner(enhancer: Enhancer) -> Callable[[Tensor], Tensor]:
    """The batch function of a PyTorch enhancer (inputs moved to its device)."""
    device = enhancer.t.device

    def run(patches: Tensor) -> Tensor:
        with torch.no_grad():
            return enhancer(patches.to(device))

    return run
