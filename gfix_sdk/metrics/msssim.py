"""Per-frame MS-SSIM through the ``pytorch-msssim`` package.

What is computed
----------------
``pytorch_msssim.ms_ssim`` on the RGB frame as a 3-channel image: five
scales (four 2x average-pool halvings) with the standard weights
``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)`` of Wang, Simoncelli & Bovik
(2003), a Gaussian window of sigma 1.5, ``K = (0.01, 0.03)``, and
``data_range`` matching the input (255 for ``uint8``, 1.0 for float tensors).
The three channels are scored separately and averaged.

The window
----------
The standard window is 11x11. pytorch-msssim requires the smaller side to
exceed ``(win_size - 1) * 2**4``, i.e. 160 pixels for 11 taps, so that the
window still fits after the four halvings. For smaller frames the window is
narrowed (same sigma 1.5, the kernel truncated and renormalised) to the
largest odd size the package accepts, keeping all five scales and weights:

==================  ===========
smaller side (px)   window
==================  ===========
> 160               11 (standard MS-SSIM)
129 .. 160          9
97 .. 128           7
65 .. 96            5   (e.g. 160x90)
<= 64               ValueError
==================  ===========

Dropping scales instead (custom ``weights`` of fewer entries) does not help:
pytorch-msssim 1.0 checks the size against four halvings whatever the
number of weights, so a 90-pixel frame is refused at 7 taps even with three
scales. Five taps is the floor: three taps (sigma 1.5 cut at +-0.67 sigma)
is a near-box 3x3 window whose statistics are too noisy to call MS-SSIM.
Scores from a narrowed window are comparable with each other, not with
standard 11-tap scores; :func:`ms_ssim_win_size` tells which one applies.
"""

from __future__ import annotations

import pytorch_msssim
import torch

from gfix_sdk.metrics._frames import Frame, check_pair, to_nchw

STANDARD_WIN_SIZE = 11
MIN_WIN_SIZE = 5
_HALVINGS = 4  # five scales


def ms_ssim_win_size(height: int, width: int) -> int:
    """Gaussian window size :func:`ms_ssim` uses for ``height x width`` frames.

    The largest odd size up to 11 with ``min(height, width) > (size - 1) * 16``.

    Raises:
        ValueError: the smaller side is 64 pixels or less (see the module doc).
    """
    side = min(int(height), int(width))
    # Largest odd w with (w - 1) * 16 < side, capped at the standard 11.
    fit = (side - 1) // (2**_HALVINGS) + 1
    if fit % 2 == 0:
        fit -= 1
    win_size = min(STANDARD_WIN_SIZE, fit)
    if win_size < MIN_WIN_SIZE:
        raise ValueError(
            f"a {width}x{height} frame is too small for MS-SSIM: its smaller side must be "
            f"larger than {(MIN_WIN_SIZE - 1) * 2**_HALVINGS} pixels (five scales with a "
            f"window of at least {MIN_WIN_SIZE} taps)"
        )
    return win_size


def ms_ssim(x: Frame, y: Frame) -> float:
    """Multi-scale SSIM of two RGB frames, in ``[0, 1]`` (1 for identical frames).

    See the module documentation for exactly what is computed, including the
    narrower window used for frames whose smaller side is 160 pixels or less.

    Args:
        x, y: ``(H, W, 3)`` RGB frames of one shape and kind: ``uint8`` numpy
            arrays (scored with ``data_range=255``), or floating torch tensors
            in ``[0, 1]`` (``data_range=1``; computed on their device, not
            differentiable).

    Raises:
        ValueError: unsupported or mismatched inputs (as for
            :func:`gfix_sdk.metrics.psnr`), or a frame whose smaller side
            is 64 pixels or less.
    """
    data_range = check_pair(x, y)
    return _ms_ssim(x, y, data_range, ms_ssim_win_size(x.shape[0], x.shape[1]))


def _ms_ssim(x: Frame, y: Frame, data_range: float, win_size: int) -> float:
    """MS-SSIM of an already checked pair with a known window."""
    with torch.no_grad():
        value = pytorch_msssim.ms_ssim(
            to_nchw(x), to_nchw(y), data_range=data_range, size_average=True, win_size=win_size
        )
    return float(value)
