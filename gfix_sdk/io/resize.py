"""Area-averaging (box) downscale of 8-bit images, in numpy.

Each output pixel is the mean of the source area it covers, source pixels
cut by the output grid contributing in proportion to the covered fraction.
For integer factors (1280x720 -> 320x180) that is the exact box mean.
"""

from __future__ import annotations

import numpy as np

from gfix_sdk.io._checks import check_size


def _area_weights(src: int, dst: int) -> np.ndarray:
    """``(dst, src)`` matrix whose row ``i`` averages the source interval
    ``[i * src / dst, (i + 1) * src / dst)``."""
    # Work in units of 1/dst source pixels so every boundary is an integer
    # and integer factors give exact weights (1/factor).
    lo = np.arange(dst)[:, None] * src  # output interval bounds, scaled by dst
    hi = lo + src
    left = np.arange(src)[None, :] * dst  # source pixel bounds, scaled by dst
    right = left + dst
    overlap = np.clip(np.minimum(hi, right) - np.maximum(lo, left), 0, None)
    return overlap / float(src)


def area_downscale(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Downscale ``(..., H, W, C)`` ``uint8`` images to ``size = (W', H')``.

    ``W' <= W`` and ``H' <= H`` are required (this is not an upscaler).
    Leading axes (e.g. time) are carried through. The result is rounded to
    nearest (ties to even) and returned as ``uint8``.
    """
    image = np.asarray(image)
    if image.ndim < 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be a (..., H, W, C) uint8 array, got {image.shape} {image.dtype}"
        )
    width, height = check_size(size)
    src_h, src_w = image.shape[-3], image.shape[-2]
    if width > src_w or height > src_h:
        raise ValueError(
            f"area_downscale only shrinks: cannot go from {src_w}x{src_h} to {width}x{height}"
        )
    if (width, height) == (src_w, src_h):
        return image.copy()
    wy = _area_weights(src_h, height)
    wx = _area_weights(src_w, width)
    out = np.einsum("ih,...hwc,jw->...ijc", wy, image.astype(np.float64), wx, optimize=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
