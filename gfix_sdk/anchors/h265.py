"""The HEVC anchor: x265 (``preset medium``, ``profile main``, yuv420p) via PyAV.

Encoding runs in-process through PyAV's bundled ``libx265``; the colour path
(BT.601 limited-range 4:2:0 both ways, by the SDK's own conversion) and the
byte counting are those of every PyAV anchor
(:mod:`gfix_sdk.anchors.pyav`).

What is counted
---------------
``EncodedClip.data`` is the HEVC Annex-B elementary stream (start codes,
VPS/SPS/PPS in-band at each IRAP picture), exactly the packets x265
produced, concatenated: what an ``.hevc`` / ``.265`` file holds
(``av.open(io.BytesIO(data), format="hevc")``). ``num_bytes`` is its
length and rate is counted on it, without container overhead;
``container_bytes`` is the size of the same packets in MP4, for reference.

x265 settings
-------------
``preset=medium``, ``profile=main``, ``pix_fmt=yuv420p`` and x265's own
defaults otherwise (keyint 250, 4 B-frames, CRF 28 when no rate is given),
as the ``ffmpeg`` command line gives, with two ``x265-params``:

* ``log-level=error``: x265 prints its banner and settings to stderr on
  every encoder it opens (it does not go through FFmpeg's logging); only
  errors are kept.
* ``info=0``: no "encoder settings" SEI. x265 writes its version and full
  option string into the first access unit, about 2.3 kB of text (x264's
  is 0.7 kB), which on a short low-resolution clip is a large share of the
  stream (55 % at CRF 44 on the 16-frame bundled clip: 4230 bytes with it,
  1902 without) and is no part of coding the pictures.

CRF and QP run from 0 to 51 (x265's range; 0 is not lossless, which needs
x265's separate ``lossless`` switch).

Default evaluation points: CRF 44..24. On the bundled clip (320x180, 16
frames, one thread) they give 24.1 dB RGB PSNR at 23.8 kbps and 33.1 dB at
360 kbps, the span x264's default CRF 42..22 covers (24.2-32.7 dB), so
x265's curve brackets the Gaussian codec's (26.5-33.0 dB) and BD-rates
against it are defined.

Threads: x265 runs its own thread pool, and its bytes depend on the pool
size (frame-parallel encoding limits motion search); ``threads=N`` sets
``pools=N``, 0 leaves the pool to x265's choice from the core count. Pin it
for reproducible bytes (the evaluation suite uses one thread).
"""

from __future__ import annotations


import numpy as np

from gfix_sdk.anchors.pyav import PyAVAnchor, decode_elementary_stream

PRESET = "medium"
PROFILE = "main"
MIN_RATE_PARAM = 0
MAX_RATE_PARAM = 51
DEFAULT_CRF = 28  # x265's (and ffmpeg's) default
# Default evaluation sweep, lowest rate first: about 24-33 dB RGB PSNR on the
# bundled clip, as x264's 42..22 (see the module doc).
EVAL_CRF_RANGE = (44, 24)
# Quiet, and without the 2.3 kB encoder-settings SEI (see the module doc).
X265_PARAMS = "log-level=error:info=0"


class H265Anchor(PyAVAnchor):
    """HEVC anchor codec (x265 medium / main / yuv420p); see the module doc.

    ``encode(frames, fps, crf=..., qp=...)`` takes a CRF or constant QP in
    0..51 (default CRF 28); ``encode_at_bitrate`` bisects CRF 0..51;
    ``rate_points`` spreads the evaluation over CRF 44..24 (about 24-33 dB
    RGB PSNR on the bundled clip), or 51..0 when more than 21 points are
    asked for.

    Args:
        threads: x265 thread-pool size (``pools``); 0 (the default) lets
            x265 choose from the core count. The bytes depend on it.

    Example::

        anchor = H265Anchor(threads=1)
        clip = anchor.encode(frames, fps=25, crf=30)
        clip.bitrate_kbps, clip.decoded.shape
    """

    name = "h265"
    rate_knob = "crf"
    encoder = "libx265"
    encoder_label = "x265"
    stream_label = "HEVC"
    stream_format = "hevc"
    rate_range = (MIN_RATE_PARAM, MAX_RATE_PARAM)
    default_crf = DEFAULT_CRF
    eval_range = EVAL_CRF_RANGE

    def _settings(self) -> dict[str, int | float | str]:
        return {"preset": PRESET, "profile": PROFILE}

    def _extra_options(self) -> dict[str, str]:
        return {"x265-params": X265_PARAMS + (f":pools={self.threads}" if self.threads else "")}


def decode_hevc(data: bytes) -> np.ndarray:
    """Decode an HEVC Annex-B stream to ``(T, H, W, 3)`` ``uint8`` RGB.

    Pictures are taken as ``yuv420p`` planes and converted by
    :func:`gfix_sdk.io.yuv420_to_rgb` (BT.601 limited range), whatever the
    stream's colour tags say.

    Raises:
        gfix_sdk.errors.VideoReadError: the data does not decode, holds no
            picture, or is not 8-bit 4:2:0.
    """
    return decode_elementary_stream(data, "hevc", "HEVC")
