"""The ``.gfix`` container: a checksummed header and typed sections.

:class:`GFixWriter` writes a file atomically; :class:`GFixReader` validates
one and reads its sections one at a time. The format is specified in
:mod:`gfix_sdk.bitstream.format`.
"""

from gfix_sdk.bitstream.format import (
    FORMAT_MAJOR,
    FORMAT_MINOR,
    MAGIC,
    FrameFlag,
    SectionFlag,
    SectionType,
)
from gfix_sdk.bitstream.header import StreamHeader
from gfix_sdk.bitstream.reader import GFixReader
from gfix_sdk.bitstream.sections import SectionEntry
from gfix_sdk.bitstream.writer import GFixWriter

__all__ = [
    "FORMAT_MAJOR",
    "FORMAT_MINOR",
    "MAGIC",
    "FrameFlag",
    "GFixReader",
    "GFixWriter",
    "SectionEntry",
    "SectionFlag",
    "SectionType",
    "StreamHeader",
]
