"""Anchor codecs that GFix is compared against, and the interface they share.

Every codec returns an :class:`EncodedClip` (bitstream, the bytes counted
as its size, decoded frames, bitrate and bits per pixel) and offers
``encode_at_bitrate`` (:class:`Codec`). :class:`H264Anchor` is x264 at
``preset medium`` / ``profile main`` through PyAV.

For the evaluation suite (``gfix eval``, :mod:`gfix_sdk.eval`) every codec
also follows :class:`RatePointCodec`: a named rate knob, default rate points
and ``encode_point``. :class:`H264Anchor` sweeps CRF; :class:`GaussianAnchor`
(our Gaussian codec) and :class:`GFixAnchor` (Gaussian codec + enhancer)
sweep Gaussians per frame. A codec of your own joins a report by
implementing :class:`RatePointCodec` (see its docstring).
"""

from gfix_sdk.anchors.base import Codec, EncodedClip, RatePointCodec, RateValue
from gfix_sdk.anchors.gaussian import GaussianAnchor
from gfix_sdk.anchors.gfix import GFixAnchor
from gfix_sdk.anchors.h264 import H264Anchor, decode_annexb

__all__ = [
    "Codec",
    "EncodedClip",
    "GFixAnchor",
    "GaussianAnchor",
    "H264Anchor",
    "RatePointCodec",
    "RateValue",
    "decode_annexb",
]
