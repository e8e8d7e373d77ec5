"""Validation of the frame sequences the optional metrics take.

The sequence metrics (LPIPS, FID, VMAF) score 8-bit RGB frames, as a viewer
sees them: one ``(T, H, W, 3)`` array or tensor, or an iterable of
``(H, W, 3)`` frames, each a ``uint8`` numpy array or torch tensor, or a
floating torch tensor in ``[0, 1]`` (a renderer's output), which is rounded
to 8 bits (VMAF can only read 8-bit frames, and rounding every metric's input
the same way keeps them comparable). The two sequences of a comparison must
have one length and one frame size.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from gfix_sdk.metrics._frames import _check_unit_range

Frames = np.ndarray | torch.Tensor | Iterable[np.ndarray | torch.Tensor]
"""``(T, H, W, 3)`` frames, or an iterable of ``(H, W, 3)`` frames: ``uint8`` arrays or tensors, or float tensors in [0, 1]."""

_MISSING = object()


def check_frame(frame: object, what: str, index: int) -> np.ndarray:
    """``frame`` as a validated ``(H, W, 3)`` ``uint8`` array; ValueError otherwise.

    Torch tensors come to the CPU; floating ones must lie in ``[0, 1]`` and are
    rounded to 8 bits.
    """
    if isinstance(frame, torch.Tensor):
        frame = _tensor_to_uint8(frame, f"{what} frame {index}")
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        kind = getattr(frame, "dtype", type(frame).__name__)
        raise ValueError(
            f"{what} frame {index} must be uint8 RGB (numpy or torch) or a float torch tensor in [0, 1], got {kind}"
        )
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"{what} frame {index} must be one (H, W, 3) RGB frame, got shape {frame.shape}")
    return frame


def _tensor_to_uint8(frame: torch.Tensor, name: str) -> np.ndarray:
    frame = frame.detach()
    if frame.is_floating_point():
        _check_unit_range(frame, name)
        frame = (frame.float() * 255.0).round().to(torch.uint8)
    elif frame.dtype != torch.uint8:
        raise ValueError(f"{name} must be uint8 or floating point in [0, 1], got torch {frame.dtype}")
    return frame.cpu().numpy()


def iter_frames(frames: Frames, what: str) -> Iterator[np.ndarray]:
    """Validated frames of one sequence, all of the first frame's size."""
    if isinstance(frames, (np.ndarray, torch.Tensor)) and frames.ndim != 4:
        raise ValueError(f"{what} must be a (T, H, W, 3) array or an iterable of frames, got shape {frames.shape}")
    shape: tuple[int, ...] | None = None
    for index, item in enumerate(frames):
        frame = check_frame(item, what, index)
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise ValueError(
                f"{what} frame {index} is {frame.shape[1]}x{frame.shape[0]} but frame 0 is "
                f"{shape[1]}x{shape[0]}; all frames must have one size"
            )
        yield frame


def iter_pairs(reference: Frames, decoded: Frames) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Validated ``(reference, decoded)`` frame pairs, consumed in step.

    Raises:
        ValueError: a frame that is not ``(H, W, 3)`` ``uint8``, pairs of
            different sizes, or sequences of different lengths (naming the
            frame index).
    """
    refs = iter_frames(reference, "reference")
    decs = iter_frames(decoded, "decoded")
    for index, (ref, dec) in enumerate(itertools.zip_longest(refs, decs, fillvalue=_MISSING)):
        if ref is _MISSING or dec is _MISSING:
            longer = "decoded" if ref is _MISSING else "reference"
            raise ValueError(
                f"the sequences differ in length: the {longer} sequence has a frame {index} "
                f"but the other ends after {index} frame(s)"
            )
        if ref.shape != dec.shape:  # type: ignore[union-attr]
            raise ValueError(
                f"frame {index}: reference is {ref.shape} but decoded is {dec.shape}"  # type: ignore[union-attr]
            )
        yield ref, dec  # type: ignore[misc]


def batched(items: Iterator[tuple[np.ndarray, np.ndarray]], size: int) -> Iterator[list[tuple[np.ndarray, np.ndarray]]]:
    """Lists of up to ``size`` consecutive items."""
    while True:
        chunk = list(itertools.islice(items, size))
        if not chunk:
            return
        yield chunk


def check_batch_size(batch_size: object) -> int:
    """``batch_size`` as a positive int; ValueError otherwise."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return batch_size
