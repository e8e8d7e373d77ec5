"""GFix (the Gaussian codec plus its per-video diffusion enhancer) as an evaluation anchor.

Rate knob: Gaussians per frame, as for :class:`~gfix_sdk.anchors.GaussianAnchor`;
the enhancer's lambda preset, training steps, learning rate and patch size
are fixed per anchor (by default the base model's: the paper's 2,000 steps,
lr 0.05 and 512-pixel patches for SD-Turbo, measured values for the stand-in). Each rate point encodes the Gaussian stream, trains the adapter on
its decoded frames, stores both in one ``.gfix`` file and decodes it with
:class:`gfix_sdk.runtime.Decoder` on the same base model, enhanced. Rate
counts the whole file, adapter included.

The enhancer needs a local base model: SD-Turbo (``base=`` or
``$GFIX_BASE``; see the README) or, offline,
:meth:`GFixAnchor.with_tiny_base`, the shipped tiny pretrained stand-in,
whose numbers show the pipeline at work but say nothing about SD-Turbo's
quality.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gfix_sdk.anchors.base import EncodedClip, RateValue, check_frames
from gfix_sdk.anchors.gaussian import (
    default_gaussian_points,
    encode_gfix_file,
    positive_int,
    resolve_preset,
    search_gaussians,
)
from gfix_sdk.io._checks import check_fps

if TYPE_CHECKING:
    from gfix_sdk.enhance.pipeline import EnhanceSettings
    from gfix_sdk.gaussians.sequence import SequenceConfig

class GFixAnchor:
    """GFix swept over Gaussians per frame; see the module doc.

    Args:
        base: local diffusers base-model directory (SD-Turbo); None reads
            ``$GFIX_BASE``.
        preset, gop: the Gaussian codec's settings (as :class:`GaussianAnchor`).
        steps: adapter training steps (None: the base's default; paper: 2000).
        rate_point: lambda preset 1 (fewest adapter bits) .. 5
            (:data:`gfix_sdk.enhance.train.LAMBDA_PRESETS`).
        lmbda: distortion weight; overrides ``rate_point``.
        lr: adapter learning rate (None: the base's default; paper: 0.05).
        patch: patch side, a multiple of 8 (None: the base's default; paper: 512).
        adapter: ``"mlora"`` (GFix) or ``"lora"`` (the ablation).
        lpips_weights: LPIPS-VGG weights for Difix's training loss (None:
            the installed ones; see :func:`gfix_sdk.enhance.losses.make_loss`).
        device: where the enhancer trains and decodes (None: CUDA when available).
        backend: the decoder's enhancer backend (``"torch"``, the default,
            decodes exactly what the encoder evaluated; ``"auto"``,
            ``"onnxruntime"``, ``"tensorrt"``: see :mod:`gfix_sdk.runtime.backends`).
        progress: show the encoder's and trainer's progress bars.
    """

    name = "gfix"
    rate_knob = "gaussians"

    def __init__(
        self,
        base: str | os.PathLike[str] | None = None,
        *,
        preset: str | SequenceConfig = "medium",
        gop: int | None = None,
        steps: int | None = None,
        rate_point: int = 3,
        lmbda: float | None = None,
        lr: float | None = None,
        patch: int | None = None,
        adapter: str = "mlora",
        lpips_weights: str | os.PathLike[str] | None = None,
        device: str | None = None,
        backend: str = "torch",
        progress: bool = False,
    ) -> None:
        from dataclasses import replace

        from gfix_sdk.enhance.base import check_base_dir, resolve_base_path
        from gfix_sdk.enhance.model import AdapterConfig
        from gfix_sdk.enhance.train import LAMBDA_PRESETS, TrainConfig

        base_path = resolve_base_path(base)
        check_base_dir(base_path)  # fail now, not after the first Gaussian encode
        if lmbda is None:
            if rate_point not in LAMBDA_PRESETS:
                raise ValueError(f"rate_point must be one of {sorted(LAMBDA_PRESETS)}, got {rate_point!r}")
            lmbda = LAMBDA_PRESETS[rate_point]
        self.base = base_path
        self.preset_name, config = resolve_preset(preset)
        if gop is not None:
            config = replace(config, gop=positive_int(gop, "gop"))
        self.config: SequenceConfig = config
        self.rate_point = rate_point
        self.adapter_config = AdapterConfig(mode=adapter, patch=None if patch is None else positive_int(patch, "patch"))
        self.train_config = TrainConfig(steps=None if steps is None else positive_int(steps, "steps"),
                                        lmbda=float(lmbda), lr=None if lr is None else float(lr),
                                        lpips_weights=None if lpips_weights is None else str(lpips_weights))
        self.device = device
        self.backend = backend
        self.progress = bool(progress)

    @classmethod
    def with_tiny_base(cls, directory: str | os.PathLike[str], **options: object) -> GFixAnchor:
        """An anchor on the shipped tiny stand-in, installed into ``directory``
        (its own recorded patch, learning rate and steps apply unless ``options``
        override them; ``options`` set the other arguments too)."""
        from gfix_sdk.enhance.tiny import install_tiny_base

        return cls(install_tiny_base(Path(directory)), **options)  # type: ignore[arg-type]

    def settings(self) -> EnhanceSettings:
        """The enhancer settings every rate point uses."""
        from gfix_sdk.enhance.pipeline import EnhanceSettings

        return EnhanceSettings(base=str(self.base), adapter=self.adapter_config, train=self.train_config,
                               device=self.device)

    def encode(self, frames: np.ndarray, fps: float, *, gaussians: int) -> EncodedClip:
        """Encode with ``gaussians`` per frame plus a trained adapter; decode enhanced.

        Raises:
            ValueError: invalid frames, fps or Gaussian count.
        """
        from dataclasses import replace

        from gfix_sdk.enhance.pipeline import default_device

        frames = check_frames(frames)
        fps = check_fps(fps)
        config = replace(self.config, gaussians=positive_int(gaussians, "gaussians"))
        device = self.device or str(default_device())
        data, decoded, report = encode_gfix_file(frames, fps, config, enhance=self.settings(), base=self.base,
                                                 device=device, backend=self.backend, progress=self.progress)
        history = getattr(report.training, "history", None) or [{}]
        timestep = history[-1].get("t")
        decision = report.enhancer_decision
        params: dict[str, int | float | str] = {
            "gaussians": int(gaussians), "preset": self.preset_name, "lambda": self.train_config.lmbda,
            "adapter": self.adapter_config.mode, "adapter_bytes": int(report.enhancer_bytes),
            "adapter_kept": int(bool(decision is not None and decision.kept)),
        }
        for name, value in (("steps", self.train_config.steps), ("lr", self.train_config.lr),
                            ("patch", self.adapter_config.patch)):
            if value is not None:
                params[name] = value
        if timestep is not None:
            params["t"] = float(timestep)
        return EncodedClip(codec=self.name, data=data, num_bytes=len(data), decoded=decoded, fps=fps,
                           params=params)

    def rate_points(self, count: int, width: int, height: int) -> list[RateValue]:
        """The Gaussian codec's default counts (see :mod:`gfix_sdk.anchors.gaussian`), fewest first."""
        return list(default_gaussian_points(count, width, height))

    def encode_point(self, frames: np.ndarray, fps: float, value: RateValue) -> EncodedClip:
        """:meth:`encode` at ``gaussians=value`` (the :class:`~gfix_sdk.anchors.RatePointCodec` entry)."""
        return self.encode(frames, fps, gaussians=value)  # type: ignore[arg-type]

    def encode_at_bitrate(self, frames: np.ndarray, fps: float, target_kbps: float) -> EncodedClip:
        """Encode at the Gaussian count whose total bitrate is closest to the target.

        Each try trains an adapter: very slow; prefer :meth:`encode`.
        """
        frames = check_frames(frames)
        height, width = frames.shape[1:3]
        return search_gaussians(lambda n: self.encode(frames, fps, gaussians=n), target_kbps, width, height)
