"""Exceptions raised by gfix_sdk.

Each subclasses both :class:`GFixError` and the builtin it refines, so callers
can catch either (as PyAV does with ``InvalidDataError(FFmpegError, ValueError)``).
"""

from __future__ import annotations


class GFixError(Exception):
    """Base class of every error gfix_sdk raises on purpose."""


class GFixFormatError(GFixError, ValueError):
    """A ``.gfix`` file (or one of its sections) is malformed, truncated,
    corrupted or of an unsupported version. The message says what and where."""


class VideoReadError(GFixError, ValueError):
    """An input video exists but cannot be read or decoded."""


class VideoWriteError(GFixError, OSError):
    """An output video cannot be written."""


class ResourceLimitError(GFixError, ValueError):
    """A file asks for more than the decoder's resource limits allow (e.g. a
    frame larger than ``max_pixels``); refused before anything of that size is
    allocated. The message names the limit and how to raise it."""


class MissingDependencyError(GFixError, ImportError):
    """An optional dependency that the requested feature needs is not
    installed; the message names the package extra to install."""
