"""Anchor codecs that GFix is compared against, and the interface they share.

Every codec returns an :class:`EncodedClip` (bitstream, the bytes counted
as its size, decoded frames, bitrate and bits per pixel) and offers
``encode_at_bitrate`` (:class:`Codec`). The conventional anchors run in-process
through PyAV and count their elementary stream's bytes:
:class:`H264Anchor` is x264 at ``preset medium`` / ``profile main``,
:class:`H265Anchor` x265 at ``preset medium`` / ``profile main``, and
:class:`AV1Anchor` SVT-AV1 at ``preset 8``; they share
:class:`~gfix_sdk.anchors.pyav.PyAVAnchor`.

For the evaluation suite (``gfix eval``, :mod:`gfix_sdk.eval`) every codec
also follows :class:`RatePointCodec`: a named rate knob, default rate points
and ``encode_point``. :class:`H264Anchor`, :class:`H265Anchor` and
:class:`AV1Anchor` sweep CRF; :class:`GaussianAnchor`
(our Gaussian codec) and :class:`GFixAnchor` (Gaussian codec + enhancer)
sweep Gaussians per frame. A codec of your own joins a report by
implementing :class:`RatePointCodec` (see its docstring).
"""

from gfix_sdk.anchors.av1 import AV1Anchor, decode_av1_obu
from gfix_sdk.anchors.base import Codec, EncodedClip, RatePointCodec, RateValue
from gfix_sdk.anchors.gaussian import GaussianAnchor
from gfix_sdk.anchors.gfix import GFixAnchor
from gfix_sdk.anchors.h264 import H264Anchor, decode_annexb
from gfix_sdk.anchors.h265 import H265Anchor, decode_hevc
from gfix_sdk.anchors.pyav import PyAVAnchor, decode_elementary_stream

__all__ = [
    "AV1Anchor",
    "Codec",
    "EncodedClip",
    "GFixAnchor",
    "GaussianAnchor",
    "H264Anchor",
    "H265Anchor",
    "PyAVAnchor",
    "RatePointCodec",
    "RateValue",
    "decode_annexb",
    "decode_av1_obu",
    "decode_elementary_stream",
    "decode_hevc",
]
