"""Sequence-level LPIPS: the mean of per-frame LPIPS distances.

Built on :mod:`gfix_sdk.perceptual` (LPIPS v0.1 in plain torch). Frames are
``uint8`` RGB; each pair is scaled to ``[0, 1]`` and scored whole (no
cropping or resizing), and the sequence score is the mean over frames. Lower
is better (0 for identical frames).

Weights are never downloaded. The file is the one
``python -m gfix_sdk.perceptual.convert --net alex --out lpips_alex.pt``
writes (AlexNet is the published default for *evaluation*; VGG is the usual
choice as a training loss), passed as ``weights=`` or through
``$GFIX_LPIPS``. Without one the metric is omitted: :func:`sequence_lpips`
returns a :class:`~gfix_sdk.metrics.MetricResult` with ``value=None`` and a
reason saying how to create the file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from gfix_sdk.metrics._sequences import Frames, batched, check_batch_size, iter_pairs
from gfix_sdk.metrics.result import MetricResult, MetricUnavailable, resolve_weights_file

ENV_VAR = "GFIX_LPIPS"
"""Environment variable naming the LPIPS weights file when no path is given."""
NAME = "lpips"

_HOW_TO = (
    "create it once with\n"
    "    python -m gfix_sdk.perceptual.convert --net alex --install\n"
    "(it converts the published LPIPS weights to where they are found without flags; see `--help`), "
    f"or write it elsewhere with --out PATH and pass that path or set ${ENV_VAR}"
)


def resolve_lpips_weights(weights: str | os.PathLike[str] | None = None) -> Path:
    """The LPIPS weights file to use: ``weights``, else ``$GFIX_LPIPS``, else
    the AlexNet weights the set-up installed (:func:`gfix_sdk.paths.lpips_weights`).

    Raises:
        MetricUnavailable: none of them is there; the message says how to create it.
    """
    if weights is None and not os.environ.get(ENV_VAR, "").strip():
        from gfix_sdk.paths import lpips_weights

        weights = lpips_weights("alex")
    return resolve_weights_file(weights, ENV_VAR, "LPIPS weights file", _HOW_TO)


class SequenceLPIPS:
    """LPIPS of whole sequences with one loaded model; see the module doc.

    Build it with :meth:`load`. Calling it scores one pair of sequences.

    Args:
        model: a loaded :class:`gfix_sdk.perceptual.LPIPS`.
        device: where the frames are scored (``"cpu"`` or ``"cuda"``).
        batch_size: frame pairs per forward pass.
    """

    name = NAME
    higher_is_better = False

    def __init__(self, model: torch.nn.Module, *, device: str | torch.device = "cpu", batch_size: int = 8) -> None:
        self.device = torch.device(device)
        self.batch_size = check_batch_size(batch_size)
        self.model = model.to(self.device).eval()
        self.net: str = str(getattr(model, "net", "?"))
        self.weights: Path | None = None
        """The file the model was loaded from (set by :meth:`load`)."""

    @classmethod
    def load(
        cls,
        weights: str | os.PathLike[str] | None = None,
        *,
        net: Literal["alex", "vgg"] | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 8,
    ) -> SequenceLPIPS:
        """Load the model from ``weights`` (or ``$GFIX_LPIPS``).

        Args:
            net: expected backbone; None takes it from the file.

        Raises:
            MetricUnavailable: no weights file (the message says how to make one).
            ValueError: the file exists but is not LPIPS weights of ``net``.
        """
        from gfix_sdk.perceptual import load_lpips

        path = resolve_lpips_weights(weights)
        scorer = cls(load_lpips(path, net=net), device=device, batch_size=batch_size)
        scorer.weights = path
        return scorer

    def __call__(self, reference: Frames, decoded: Frames) -> MetricResult:
        """Mean LPIPS of ``decoded`` against ``reference`` (``uint8`` RGB frames).

        Raises:
            ValueError: invalid or mismatched frames (see
                :func:`gfix_sdk.metrics.sequence_metrics`), or no frames.
        """
        from gfix_sdk.perceptual.backbones import MIN_SIDE

        scores: list[float] = []
        for chunk in batched(iter_pairs(reference, decoded), self.batch_size):
            height, width = chunk[0][0].shape[:2]
            side = MIN_SIDE.get(self.net, 1)
            if min(height, width) < side:
                return MetricResult.omitted(
                    NAME, f"LPIPS-{self.net} omitted: {width}x{height} frames are smaller than {side} px"
                )
            ref = _to_batch([pair[0] for pair in chunk], self.device)
            dec = _to_batch([pair[1] for pair in chunk], self.device)
            with torch.no_grad():
                scores.extend(float(v) for v in self.model(dec, ref).cpu())
        if not scores:
            raise ValueError("no frames to compare: both sequences are empty")
        return MetricResult(name=NAME, value=math.fsum(scores) / len(scores), per_frame=tuple(scores))


def _to_batch(frames: list[np.ndarray], device: torch.device) -> torch.Tensor:
    stacked = torch.from_numpy(np.ascontiguousarray(np.stack(frames)))
    return stacked.to(device).permute(0, 3, 1, 2).to(torch.float32) / 255.0


def sequence_lpips(
    reference: Frames,
    decoded: Frames,
    *,
    weights: str | os.PathLike[str] | None = None,
    net: Literal["alex", "vgg"] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
) -> MetricResult:
    """Mean per-frame LPIPS of two ``uint8`` RGB sequences (lower is better).

    Loads the model on every call; use :class:`SequenceLPIPS` to score many
    sequences with one model.

    Args:
        reference, decoded: ``(T, H, W, 3)`` ``uint8`` arrays or iterables of
            ``(H, W, 3)`` ``uint8`` frames, one length and size.
        weights: LPIPS weights file; None reads ``$GFIX_LPIPS``.
        net: expected backbone (``"alex"``/``"vgg"``); None takes the file's.

    Returns:
        The score and per-frame distances, or, when no weights file is
        present, ``value=None`` with the reason (never an exception, never a
        download).

    Raises:
        ValueError: invalid frames, or a weights file that is not LPIPS weights.
    """
    try:
        scorer = SequenceLPIPS.load(weights, net=net, device=device, batch_size=batch_size)
    except MetricUnavailable as exc:
        return MetricResult.omitted(NAME, str(exc))
    return scorer(reference, decoded)
