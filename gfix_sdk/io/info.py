"""``VideoInfo`` and the internal protocol every frame source implements."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    """What a reader knows about its input before decoding the frames."""

    width: int
    """Frame width in pixels."""

    height: int
    """Frame height in pixels."""

    fps: float
    """Frames per second: the ``fps`` option if given, else the container's
    average frame rate, else 25.0 for PNG sequences and raw YUV."""

    num_frames: int | None
    """Number of frames the reader will yield (``max_frames`` included), or
    None when the container does not say. For containers this is the count in
    the header, which a damaged file may not honour."""

    source: str
    """The path or glob pattern the video was opened from."""


class FrameSource(Protocol):
    """One opened input: known ``info``, a single pass of RGB frames, ``close``."""

    info: VideoInfo

    def frames(self) -> Iterator[np.ndarray]:
        """Yield ``(H, W, 3)`` ``uint8`` RGB frames, at most ``info.num_frames``."""
        ...

    def close(self) -> None:
        """Release the file or container; safe to call more than once."""
        ...
