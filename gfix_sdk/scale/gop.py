"""One GOP as a unit of work: splitting a frame stream at GOP boundaries and
coding one GOP on its own (no Ray here: the function a task runs)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from gfix_sdk.gaussians.sequence import CodedFrame, SequenceConfig, SequenceEncoder, check_frame


def gop_chunks(frames: Iterable[np.ndarray], *, gop: int, height: int, width: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first frame number, (n, H, W, 3) uint8 frames)`` for each GOP
    of ``frames`` (``n == gop`` except perhaps for the last one).

    Frames are checked here, on the caller's side, so that a wrong frame gets
    the same ``ValueError`` as a sequential encode, and copied (readers may
    reuse their buffers).
    """
    if gop < 1:
        raise ValueError(f"gop must be >= 1, got {gop}")
    start, batch = 0, []
    for rgb in frames:
        batch.append(check_frame(rgb, height, width).numpy())
        if len(batch) == gop:
            yield start, np.stack(batch)
            start, batch = start + gop, []
    if batch:
        yield start, np.stack(batch)


def encode_gop(frames: np.ndarray, *, start_index: int, config: SequenceConfig, device: str = "cpu",
               threads: int | None = None) -> list[CodedFrame]:
    """Code the frames of one GOP, the first being frame ``start_index`` of the
    sequence (a multiple of ``config.gop``), exactly as a sequential encode of
    the whole sequence codes them.

    Args:
        frames: ``(n, H, W, 3)`` uint8 frames.
        start_index: number of the first frame in the sequence.
        config: codec settings (the same for every GOP of a file).
        device: where to fit ("cpu" or "cuda").
        threads: torch CPU threads to use (the CPUs a task was given); None
            leaves torch's setting alone.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    _, height, width, _ = frames.shape
    encoder = SequenceEncoder(config, height, width, device=device, start_index=start_index)
    return [encoder.encode(rgb) for rgb in frames]


__all__ = ["encode_gop", "gop_chunks"]
