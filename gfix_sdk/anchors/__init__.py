"""Anchor codecs that GFix is compared against, and the interface they share.

Every codec returns an :class:`EncodedClip` (bitstream, the bytes counted
as its size, decoded frames, bitrate and bits per pixel) and offers
``encode_at_bitrate`` (:class:`Codec`). :class:`H264Anchor` is x264 at
``preset medium`` / ``profile main`` through PyAV.
"""

from gfix_sdk.anchors.base import Codec, EncodedClip
from gfix_sdk.anchors.h264 import H264Anchor, decode_annexb

__all__ = ["Codec", "EncodedClip", "H264Anchor", "decode_annexb"]
