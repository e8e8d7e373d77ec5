"""The H.264 anchor: x264 (``preset medium``, ``profile main``, yuv420p) via PyAV.

Encoding runs in-process through PyAV's bundled ``libx264``; no ``ffmpeg``
binary is needed. The encoder loop, colour path and byte counting are shared
with the HEVC and AV1 anchors (:class:`gfix_sdk.anchors.pyav.PyAVAnchor`).

Colour path
-----------
RGB frames are converted to BT.601 limited-range YUV 4:2:0 by
:func:`gfix_sdk.io.rgb_to_yuv420` (2x2 box-averaged chroma) and handed to
x264 as ``yuv420p`` planes; the stream is tagged BT.601 (matrix
``bt470bg``) limited range, as :func:`gfix_sdk.io.write_video` tags its
H.264. Decoded pictures come back as ``yuv420p`` planes and are converted to
RGB by :func:`gfix_sdk.io.yuv420_to_rgb`, the inverse of that conversion. So
both directions are ours and match: the quality measured is the codec's,
plus the 4:2:0 subsampling every 4:2:0 codec pays, and not swscale's
``rgb24`` path (about one level darker than the exact matrix, see
``tests/test_io.py``).

What is counted
---------------
``EncodedClip.data`` is the H.264 Annex-B elementary stream (start codes,
SPS/PPS in-band at each IDR picture, the x264 version/settings SEI of about
0.7 kB in the first access unit), exactly the packets x264 produced
concatenated: what an ``.h264`` file holds, decodable by any H.264 decoder
(``av.open(io.BytesIO(data), format="h264")``). ``num_bytes`` is its length,
the sum of the packet sizes, and rate (``bitrate_kbps``, ``bpp``) is counted
on it: container overhead is excluded. ``container_bytes`` is the size of
the same packets muxed into MP4, for reference.

x264 settings
-------------
``preset=medium``, ``profile=main`` (so no 8x8 transform, and no lossless
coding: CRF and QP run from 1 to 51), ``pix_fmt=yuv420p``, and x264's own
defaults otherwise (keyint 250, 3 B-frames, mb-tree, CRF 23 when no rate is
given), as the ``ffmpeg`` command line gives. Threading is frame-based like
the command line's (PyAV's default thread type would switch x264 to sliced
threads, which code every frame as several slices and cost bits). x264 is
deterministic for a given thread count; the count defaults to x264's
automatic choice, so bytes can differ slightly between machines with
different core counts; pass ``threads`` to pin it.
"""

from __future__ import annotations


import av
import numpy as np

from gfix_sdk.anchors.pyav import PIX_FMT as PIX_FMT  # re-exported: it was defined here
from gfix_sdk.anchors.pyav import PreparedFrames, PyAVAnchor, decode_elementary_stream, mp4_size

PRESET = "medium"
PROFILE = "main"
# Main profile cannot code losslessly, and CRF 0 / QP 0 mean lossless in 8 bits.
MIN_RATE_PARAM = 1
MAX_RATE_PARAM = 51
DEFAULT_CRF = 23  # x264's (and ffmpeg's) default
# Default evaluation sweep: from x264's low-quality end (about 24 dB RGB PSNR
# on the bundled clip) to a high-quality point (about 33 dB), which brackets
# the Gaussian codec's range on the same clip so that BD-rate curves overlap.
EVAL_CRF_RANGE = (42, 22)


class H264Anchor(PyAVAnchor):
    """H.264 anchor codec (x264 medium / main / yuv420p); see the module doc.

    ``encode(frames, fps, crf=..., qp=...)`` takes a CRF or constant QP in
    1..51 (default CRF 23). ``encode_at_bitrate`` bisects CRF 1..51 in about
    7 encodes; adjacent CRFs differ by roughly 8-16 % in rate at moderate
    CRFs (measured 8-12 % at 160x90 and 13-16 % at 320x180 on the bundled
    clip; less near CRF 51, where headers dominate), so a reachable target
    is hit within about half a step, i.e. some 4-8 %. ``rate_points``
    spreads the evaluation over CRF 42..22 (about 24-33 dB RGB PSNR on the
    bundled clip), or 51..1 when more than 21 points are asked for.

    Args:
        threads: x264 threads; 0 (the default) lets x264 choose from the
            core count, as the ``ffmpeg`` command line does.

    Example::

        anchor = H264Anchor()
        clip = anchor.encode(frames, fps=25, crf=28)
        clip.bitrate_kbps, clip.decoded.shape
    """

    name = "h264"
    rate_knob = "crf"
    encoder = "libx264"
    encoder_label = "x264"
    stream_label = "H.264"
    stream_format = "h264"
    rate_range = (MIN_RATE_PARAM, MAX_RATE_PARAM)
    range_note = " (0 is lossless, which profile main cannot code)"
    default_crf = DEFAULT_CRF
    eval_range = EVAL_CRF_RANGE

    def _settings(self) -> dict[str, int | float | str]:
        return {"preset": PRESET, "profile": PROFILE}

    def _container_size(self, prepared: PreparedFrames, packets: list[av.Packet], data: bytes) -> int:
        # Through an MP4 stream made for "h264", as before the HEVC and AV1
        # anchors came (a few bytes more than remux_mp4_size would give).
        return mp4_size(packets, prepared, "h264")


def decode_annexb(data: bytes) -> np.ndarray:
    """Decode an H.264 Annex-B stream to ``(T, H, W, 3)`` ``uint8`` RGB.

    Pictures are taken as ``yuv420p`` planes and converted by
    :func:`gfix_sdk.io.yuv420_to_rgb` (BT.601 limited range), whatever the
    stream's colour tags say.

    Raises:
        gfix_sdk.errors.VideoReadError: the data does not decode, holds no
            picture, or is not 8-bit 4:2:0.
    """
    return decode_elementary_stream(data, "h264", "H.264")
