"""Metrics of a decoded sequence against its reference, one frame pair at a time."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import TypedDict, cast

from gfix_sdk.metrics._frames import Frame, check_pair
from gfix_sdk.metrics.msssim import _ms_ssim, ms_ssim_win_size
from gfix_sdk.metrics.pixel import _mse, psnr_from_mse


class SequenceMetrics(TypedDict):
    """What :func:`sequence_metrics` returns."""

    num_frames: int
    mse: list[float]
    """Per-frame MSE over RGB, in the frames' own units (see ``metrics.mse``)."""
    psnr: list[float]
    """Per-frame RGB PSNR in dB (``inf`` for an identical frame)."""
    ms_ssim: list[float]
    """Per-frame MS-SSIM."""
    mean_mse: float
    mean_psnr: float
    """Mean of the per-frame PSNRs (``inf`` if any frame is identical)."""
    psnr_of_mean_mse: float
    """PSNR of ``mean_mse``: the sequence-level PSNR some papers report."""
    mean_ms_ssim: float
    ms_ssim_win_size: int
    """Gaussian window MS-SSIM used (11 is standard; see ``metrics.msssim``)."""


_MISSING = object()


def sequence_metrics(
    reference_frames: Iterable[Frame], decoded_frames: Iterable[Frame]
) -> SequenceMetrics:
    """PSNR, MSE and MS-SSIM of every frame pair, and their means.

    Both iterables are consumed once, in step, one frame pair at a time, so
    generators (e.g. :func:`gfix_sdk.io.open_video` readers) are never held in
    memory whole; ``(T, H, W, 3)`` arrays work too. Frames follow the rules of
    :func:`gfix_sdk.metrics.psnr`: ``uint8`` RGB numpy arrays or float tensors
    in ``[0, 1]``, one kind per pair.

    Two sequence PSNRs are given because papers differ: ``mean_psnr`` is the
    mean of the per-frame PSNRs (the usual convention for video codecs, and
    the one to compare with per-frame averaged numbers), ``psnr_of_mean_mse``
    the PSNR of the MSE averaged over all frames (always <= ``mean_psnr``, by
    Jensen's inequality). The data range is 255 for ``uint8`` frames and 1
    for float tensors.

    Raises:
        ValueError: no frames, sequences of different lengths, a frame pair of
            different shapes, a frame whose size differs from the first one,
            or a frame that :func:`gfix_sdk.metrics.psnr` rejects; the
            message names the frame index.
    """
    mses: list[float] = []
    psnrs: list[float] = []
    ssims: list[float] = []
    shape: tuple[int, ...] | None = None
    data_range = 0.0
    win_size = 0
    pairs = itertools.zip_longest(reference_frames, decoded_frames, fillvalue=_MISSING)
    for index, (ref_item, dec_item) in enumerate(pairs):
        if ref_item is _MISSING or dec_item is _MISSING:
            longer = "decoded" if ref_item is _MISSING else "reference"
            raise ValueError(
                f"the sequences differ in length: the {longer} sequence has a frame {index} "
                f"but the other ends after {index} frame(s)"
            )
        try:
            pair_range = check_pair(ref_item, dec_item, what="reference and decoded frames")
        except ValueError as exc:
            raise ValueError(f"frame {index}: {exc}") from exc
        ref, dec = cast(Frame, ref_item), cast(Frame, dec_item)
        if shape is None:
            shape, data_range = tuple(ref.shape), pair_range
            win_size = ms_ssim_win_size(shape[0], shape[1])  # fails on frame 0 if too small
        elif tuple(ref.shape) != shape:
            raise ValueError(
                f"frame {index} is {ref.shape[1]}x{ref.shape[0]} but frame 0 is "
                f"{shape[1]}x{shape[0]}; all frames must have one size"
            )
        elif pair_range != data_range:
            raise ValueError(f"frame {index} is not of the kind (uint8 array / tensor) of frame 0")
        value = _mse(ref, dec)
        mses.append(value)
        psnrs.append(psnr_from_mse(value, data_range))
        ssims.append(_ms_ssim(ref, dec, data_range, win_size))
    if shape is None:
        raise ValueError("no frames to compare: both sequences are empty")

    count = len(mses)
    mean_mse = math.fsum(mses) / count
    return SequenceMetrics(
        num_frames=count,
        mse=mses,
        psnr=psnrs,
        ms_ssim=ssims,
        mean_mse=mean_mse,
        mean_psnr=math.fsum(psnrs) / count,
        psnr_of_mean_mse=psnr_from_mse(mean_mse, data_range),
        mean_ms_ssim=math.fsum(ssims) / count,
        ms_ssim_win_size=win_size,
    )
