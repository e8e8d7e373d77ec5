"""Decoding at run time: :class:`Decoder` and its stream information."""

from gfix_sdk.runtime.decoder import Decoder, StreamInfo

__all__ = ["Decoder", "StreamInfo"]
