"""Video I/O: read inputs as RGB frames, write RGB frames, and a sample clip.

Readers (:func:`open_video`, :func:`read_video`) accept container files
(anything FFmpeg decodes), raw YUV 4:2:0 ``.yuv`` files and PNG sequences;
:func:`write_video` writes H.264 / FFV1 / y4m files or PNG sequences,
atomically. All frames are ``(H, W, 3)`` ``uint8`` RGB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gfix_sdk.io.frames import VideoReader, open_video, read_video
from gfix_sdk.io.info import VideoInfo
from gfix_sdk.io.resize import area_downscale
from gfix_sdk.io.writers import write_png, write_video
from gfix_sdk.io.yuv import rgb_to_yuv420, yuv420_to_rgb

if TYPE_CHECKING:
    from gfix_sdk.io.sample import (
        bundled_clip_path,
        full_clip_path,
        load_bundled_clip,
        make_bundled_clip,
    )

__all__ = [
    "VideoInfo",
    "VideoReader",
    "open_video",
    "read_video",
    "write_video",
    "write_png",
    "yuv420_to_rgb",
    "rgb_to_yuv420",
    "area_downscale",
    "full_clip_path",
    "bundled_clip_path",
    "load_bundled_clip",
    "make_bundled_clip",
]

# The sample-clip helpers load lazily so that ``python -m gfix_sdk.io.sample``
# does not find its own module already imported by this package.
_SAMPLE_NAMES = frozenset(
    {"full_clip_path", "bundled_clip_path", "load_bundled_clip", "make_bundled_clip"}
)


def __getattr__(name: str) -> Any:
    if name in _SAMPLE_NAMES:
        from gfix_sdk.io import sample

        return getattr(sample, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
