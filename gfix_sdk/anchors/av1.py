"""The AV1 anchor: SVT-AV1 (``preset 8``, main profile, yuv420p) via PyAV.

Encoding runs in-process through PyAV's bundled ``libsvtav1``; decoding uses
FFmpeg's default AV1 decoder in that build (``libdav1d``). The colour path
(BT.601 limited-range 4:2:0 both ways, by the SDK's own conversion) and the
byte counting are those of every PyAV anchor (:mod:`gfix_sdk.anchors.pyav`).

What is counted
---------------
``EncodedClip.data`` is the AV1 stream in the low-overhead OBU format
(AV1 spec section 5: a temporal delimiter, the sequence header in the first
temporal unit, then frame OBUs), exactly the packets SVT-AV1 produced,
concatenated: what an ``.obu`` file holds, read by FFmpeg's ``obu`` demuxer
(``av.open(io.BytesIO(data), format="obu")``). ``num_bytes`` is its length
and rate is counted on it, without container overhead (IVF would add 32
bytes plus 12 per frame); ``container_bytes`` is the size of the same
packets in MP4, for reference.

SVT-AV1 settings
----------------
``preset=8`` by default, ``pix_fmt=yuv420p`` (main profile, 8 bits) and
SVT-AV1's own defaults otherwise (random-access prediction structure,
``tune`` PSNR, CRF 35 when no rate is given), as the ``ffmpeg`` command line
gives. SVT-AV1's presets run from 0 (slowest, best) to 13 (fastest). Preset
8 is chosen for a 2-core CPU: the evaluation encodes every rate point of
every clip (the UVG protocol: 7 sequences x 96 1080p frames x 4 points),
and presets 4-6, the usual choice in compression papers, cost several times
the encoding time for a few per cent of rate. On the bundled clip (320x180,
8 frames, CRF 45, 2 cores) presets 4 / 6 / 8 took 0.22 / 0.10 / 0.04 s for
348.8 / 352.7 / 360.1 kbps at 32.59 / 32.42 / 32.20 dB RGB PSNR. Pass
``preset`` (``gfix eval --av1-preset``) for another trade-off.

CRF and QP run from 1 to 63 (FFmpeg's SVT-AV1 wrapper reads 0 as "not
set").

Default evaluation points: CRF 63..35. Even SVT-AV1's coarsest setting
gives 25.5 dB RGB PSNR on the bundled clip (320x180, 16 frames, CRF 63:
32.6 kbps), so the sweep starts at CRF 63 and ends at 33.0 dB
(CRF 35, 293 kbps), overlapping x264's default 24.2-32.7 dB and bracketing
the Gaussian codec's 26.5-33.0 dB, so BD-rates against it are defined.

Logging: SVT-AV1 prints a banner and its settings to stderr (not through
FFmpeg) unless ``$SVT_LOG`` says otherwise; it reads the variable once per
process, when its first encoder opens. Before opening an encoder this
anchor sets ``SVT_LOG=1`` (errors only) unless the variable is already set,
so a run keeps quiet unless SVT-AV1 was used earlier in the process.

Threads: ``threads=N`` sets SVT-AV1's level of parallelism (``lp=N``), 0
leaves it to SVT-AV1. The bytes did not depend on it in our checks (``lp``
1 and 2 gave identical streams), but the evaluation suite pins it to 1 like
the other anchors.
"""

from __future__ import annotations

import numbers
import os

import numpy as np

from gfix_sdk.anchors.pyav import PyAVAnchor, decode_elementary_stream

DEFAULT_PRESET = 8
MIN_PRESET, MAX_PRESET = 0, 13
MIN_RATE_PARAM = 1
MAX_RATE_PARAM = 63
DEFAULT_CRF = 35  # SVT-AV1's default
# Default evaluation sweep, lowest rate first: about 25.5-33 dB RGB PSNR on
# the bundled clip (see the module doc).
EVAL_CRF_RANGE = (63, 35)
SVT_LOG_ENV = "SVT_LOG"
SVT_LOG_ERRORS_ONLY = "1"


class AV1Anchor(PyAVAnchor):
    """AV1 anchor codec (SVT-AV1 preset 8 / main / yuv420p); see the module doc.

    ``encode(frames, fps, crf=..., qp=...)`` takes a CRF or constant QP in
    1..63 (default CRF 35); ``encode_at_bitrate`` bisects CRF 1..63;
    ``rate_points`` spreads the evaluation over CRF 63..35 (about
    25.5-33 dB RGB PSNR on the bundled clip), or 63..1 when more than 29
    points are asked for.

    Args:
        preset: SVT-AV1 preset, an int in 0..13 (lower is slower and
            better); default 8 (see the module doc for why).
        threads: SVT-AV1's level of parallelism (``lp``); 0 (the default)
            lets SVT-AV1 choose from the core count.

    Example::

        anchor = AV1Anchor()
        clip = anchor.encode(frames, fps=25, crf=45)
        clip.bitrate_kbps, clip.decoded.shape
    """

    name = "av1"
    rate_knob = "crf"
    encoder = "libsvtav1"
    encoder_label = "SVT-AV1"
    stream_label = "AV1"
    stream_format = "obu"
    rate_range = (MIN_RATE_PARAM, MAX_RATE_PARAM)
    range_note = " (0 would mean SVT-AV1's default)"
    default_crf = DEFAULT_CRF
    eval_range = EVAL_CRF_RANGE

    def __init__(self, *, preset: int = DEFAULT_PRESET, threads: int = 0) -> None:
        super().__init__(threads=threads)
        if (
            isinstance(preset, bool)
            or not isinstance(preset, numbers.Integral)
            or not MIN_PRESET <= int(preset) <= MAX_PRESET
        ):
            raise ValueError(f"preset must be an int in {MIN_PRESET}..{MAX_PRESET}, got {preset!r}")
        self.preset: int = int(preset)

    def _settings(self) -> dict[str, int | float | str]:
        return {"preset": self.preset}

    def _extra_options(self) -> dict[str, str]:
        return {"svtav1-params": f"lp={self.threads}"} if self.threads else {}

    def _before_open(self) -> None:
        # SVT-AV1 reads $SVT_LOG once, when its first encoder opens.
        os.environ.setdefault(SVT_LOG_ENV, SVT_LOG_ERRORS_ONLY)


def decode_av1_obu(data: bytes) -> np.ndarray:
    """Decode an AV1 low-overhead OBU stream to ``(T, H, W, 3)`` ``uint8`` RGB.

    Pictures are taken as ``yuv420p`` planes and converted by
    :func:`gfix_sdk.io.yuv420_to_rgb` (BT.601 limited range), whatever the
    stream's colour tags say.

    Raises:
        gfix_sdk.errors.VideoReadError: the data does not decode, holds no
            picture, or is not 8-bit 4:2:0.
    """
    return decode_elementary_stream(data, "obu", "AV1")
