"""One GOP as a unit of work: splitting a frame stream at GOP boundaries and
coding one GOP on its own (no Ray here: the function a task runs), and the
thread settings every GOP is fitted with.

The bytes of a GOP depend on torch's intra-op thread count (float reductions
are split per thread), not on the rasterizer's. So GOPs are fitted with torch
on ``threads_per_gop`` threads (default :data:`THREADS_PER_GOP`), whatever the
number of workers, while the rasterizer uses every CPU the GOP was given:
``workers=1`` and ``workers=N`` write the same file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from gfix_sdk.gaussians.sequence import CodedFrame, SequenceConfig, SequenceEncoder, check_frame
from gfix_sdk.raster.rasterize import raster_threads

#: torch intra-op threads a GOP is fitted with unless told otherwise. One:
#: the only count every machine and every split into workers can give each GOP.
THREADS_PER_GOP = 1


def check_threads_per_gop(threads_per_gop: int) -> int:
    """``threads_per_gop`` if it is a positive int, else ``ValueError``."""
    if isinstance(threads_per_gop, bool) or not isinstance(threads_per_gop, int) or threads_per_gop < 1:
        raise ValueError(f"threads_per_gop must be a positive int, got {threads_per_gop!r}")
    return threads_per_gop


@contextlib.contextmanager
def gop_threads(threads_per_gop: int = THREADS_PER_GOP, cpus: int | None = None) -> Iterator[None]:
    """Inside the block torch runs on ``threads_per_gop`` intra-op threads (the
    bytes depend on it) and the CPU rasterizer on ``cpus`` threads (None: torch's
    count before the block; its results do not depend on it). Both are
    restored on exit."""
    check_threads_per_gop(threads_per_gop)
    before = torch.get_num_threads()
    torch.set_num_threads(threads_per_gop)
    try:
        with raster_threads(cpus or before):
            yield
    finally:
        torch.set_num_threads(before)


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
               threads: int | None = None, threads_per_gop: int = THREADS_PER_GOP) -> list[CodedFrame]:
    """Code the frames of one GOP, the first being frame ``start_index`` of the
    sequence (a multiple of ``config.gop``), exactly as a sequential encode of
    the whole sequence codes them.

    Args:
        frames: ``(n, H, W, 3)`` uint8 frames.
        start_index: number of the first frame in the sequence.
        config: codec settings (the same for every GOP of a file).
        device: where to fit ("cpu" or "cuda").
        threads: the CPUs a task was given: the rasterizer's threads (None:
            torch's thread count).
        threads_per_gop: torch's intra-op threads while fitting (see
            :func:`gop_threads`); the bytes depend on it.
    """
    _, height, width, _ = frames.shape
    with gop_threads(threads_per_gop, threads):
        encoder = SequenceEncoder(config, height, width, device=device, start_index=start_index)
        return [encoder.encode(rgb) for rgb in frames]


__all__ = ["THREADS_PER_GOP", "check_threads_per_gop", "encode_gop", "gop_chunks", "gop_threads"]
