"""BT.601 limited-range conversion between planar YUV 4:2:0 and RGB.

Limited ("TV") range puts luma in ``16..235`` and chroma in ``16..240``
(scaled by 4 for 10-bit: ``64..940`` and ``64..960``). This is the matrix and
range swscale (and so PyAV's ``to_ndarray(format="rgb24")``) assumes for
untagged YUV, which is why raw ``.yuv`` files are read with it.

Chroma planes of a ``W x H`` picture are ``ceil(W/2) x ceil(H/2)``. Going to
RGB they are upsampled by pixel replication; going to YUV each chroma sample
is the mean of its 2x2 block (of the pixels that exist, at odd edges).
"""

from __future__ import annotations

import numpy as np

from gfix_sdk.io._checks import check_bit_depth

# BT.601 luma weights; green's follows from them.
KR = 0.299
KB = 0.114
KG = 1.0 - KR - KB


def chroma_shape(width: int, height: int) -> tuple[int, int]:
    """``(rows, cols)`` of each 4:2:0 chroma plane of a ``width x height`` picture."""
    return (height + 1) // 2, (width + 1) // 2


def _levels(bit_depth: int) -> tuple[float, float, float, float]:
    """``(luma offset, luma span, chroma offset, chroma span)`` of limited range."""
    scale = 1 << (bit_depth - 8)
    return 16.0 * scale, 219.0 * scale, 128.0 * scale, 224.0 * scale


def yuv420_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, *, bit_depth: int = 8) -> np.ndarray:
    """Convert one BT.601 limited-range YUV 4:2:0 picture to 8-bit RGB.

    Args:
        y: luma plane ``(H, W)`` of unsigned integers.
        u: Cb plane ``(ceil(H/2), ceil(W/2))``.
        v: Cr plane, same shape as ``u``.
        bit_depth: 8 or 10; 10-bit samples are expected in ``0..1023``.

    Returns:
        ``(H, W, 3)`` ``uint8`` RGB, rounded to nearest and clipped to
        ``0..255``. For 10-bit input, values shifted left by 2 from an 8-bit
        picture give exactly the 8-bit result.
    """
    bit_depth = check_bit_depth(bit_depth)
    y, u, v = np.asarray(y), np.asarray(u), np.asarray(v)
    if y.ndim != 2:
        raise ValueError(f"y must be 2-D (H, W), got shape {y.shape}")
    height, width = y.shape
    expected = chroma_shape(width, height)
    for name, plane in (("u", u), ("v", v)):
        if plane.shape != expected:
            raise ValueError(
                f"{name} must have shape {expected} for a {width}x{height} picture, "
                f"got {plane.shape}"
            )
    for name, plane in (("y", y), ("u", u), ("v", v)):
        if not np.issubdtype(plane.dtype, np.unsignedinteger):
            raise ValueError(f"{name} must hold unsigned integers, got {plane.dtype}")

    y_off, y_span, c_off, c_span = _levels(bit_depth)
    # Normalise by division rather than by a pre-computed reciprocal: for a
    # 10-bit sample 4k the quotient (4k - 64) / 876 is then the same float as
    # (k - 16) / 219, so shifted 8-bit input reproduces the 8-bit output.
    yn = (y.astype(np.float32) - y_off) / y_span
    un = (u.astype(np.float32) - c_off) / c_span
    vn = (v.astype(np.float32) - c_off) / c_span
    # Nearest-neighbour chroma upsampling; crop the extra row/column of odd sizes.
    un = un.repeat(2, axis=0).repeat(2, axis=1)[:height, :width]
    vn = vn.repeat(2, axis=0).repeat(2, axis=1)[:height, :width]

    rgb = np.empty((height, width, 3), dtype=np.float32)
    rgb[..., 0] = yn + (2.0 * (1.0 - KR)) * vn
    rgb[..., 2] = yn + (2.0 * (1.0 - KB)) * un
    rgb[..., 1] = (yn - KR * rgb[..., 0] - KB * rgb[..., 2]) / KG
    rgb *= 255.0
    np.rint(rgb, out=rgb)
    np.clip(rgb, 0.0, 255.0, out=rgb)
    return rgb.astype(np.uint8)


def rgb_to_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert 8-bit RGB ``(H, W, 3)`` to BT.601 limited-range YUV 4:2:0.

    Returns:
        ``(y, u, v)`` ``uint8`` planes, ``y`` of shape ``(H, W)`` and the
        chroma planes ``(ceil(H/2), ceil(W/2))``. Each chroma sample is the
        rounded mean of the full-resolution chroma over its 2x2 block.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be a (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"rgb must not be empty, got shape {rgb.shape}")

    f = rgb.astype(np.float64) / 255.0
    luma = KR * f[..., 0] + KG * f[..., 1] + KB * f[..., 2]
    cb = (f[..., 2] - luma) / (2.0 * (1.0 - KB))
    cr = (f[..., 0] - luma) / (2.0 * (1.0 - KR))

    y = 16.0 + 219.0 * luma
    u = 128.0 + 224.0 * _block_mean_2x2(cb)
    v = 128.0 + 224.0 * _block_mean_2x2(cr)
    return tuple(np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y, u, v))


def _block_mean_2x2(plane: np.ndarray) -> np.ndarray:
    """Mean of each 2x2 block; partial blocks at odd edges average what exists."""
    height, width = plane.shape
    # Edge replication makes a 1-wide block's mean equal to the mean of the
    # pixels that really exist there.
    padded = np.pad(plane, ((0, height % 2), (0, width % 2)), mode="edge")
    rows, cols = padded.shape[0] // 2, padded.shape[1] // 2
    return padded.reshape(rows, 2, cols, 2).mean(axis=(1, 3))
