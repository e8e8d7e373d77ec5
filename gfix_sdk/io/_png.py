"""PNG sequences: listing, decoding and encoding single PNGs with PyAV's codec.

Frames go through PyAV's ``png`` codec directly (not through a demuxer, whose
image2 format would read ``%d`` in a file name as a pattern), so Pillow is not
needed.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from gfix_sdk.errors import VideoReadError
from gfix_sdk.io.info import VideoInfo

PNG_SUFFIX = ".png"
_GLOB_CHARS = frozenset("*?[")


def looks_like_glob(path: str) -> bool:
    """True when ``path`` contains glob wildcards (``*``, ``?`` or ``[``)."""
    return any(ch in _GLOB_CHARS for ch in path)


def list_pngs(path: str) -> list[Path]:
    """The ``.png`` files of a directory or glob pattern, sorted by name.

    Raises:
        FileNotFoundError: a glob pattern that matches nothing.
        VideoReadError: a directory or pattern without any ``.png`` file.
    """
    if Path(path).is_dir():
        files = sorted(
            (p for p in Path(path).iterdir() if p.suffix.lower() == PNG_SUFFIX and p.is_file()),
            key=lambda p: p.name,
        )
        if not files:
            raise VideoReadError(f"{path} is a directory without any .png file")
        return files
    matches = [Path(p) for p in glob.glob(path)]
    if not matches:
        raise FileNotFoundError(f"no file matches the pattern {path}")
    files = sorted(
        (p for p in matches if p.suffix.lower() == PNG_SUFFIX and p.is_file()),
        key=lambda p: p.name,
    )
    if not files:
        raise VideoReadError(f"the pattern {path} matches no .png file")
    return files


def decode_png(path: Path) -> np.ndarray:
    """Decode one PNG file to ``(H, W, 3)`` ``uint8`` RGB (alpha dropped)."""
    try:
        decoder = av.CodecContext.create("png", "r")
        frames = decoder.decode(av.Packet(path.read_bytes()))
        frames += decoder.decode(None)
    except av.error.FFmpegError as exc:
        raise VideoReadError(f"cannot decode {path}: {exc}") from exc
    if not frames:
        raise VideoReadError(f"cannot decode {path}: no picture in it")
    return frames[0].to_ndarray(format="rgb24")


class PngEncoder:
    """Encodes ``(H, W, 3)`` ``uint8`` RGB frames of one size to PNG bytes."""

    def __init__(self, width: int, height: int) -> None:
        self._codec = av.CodecContext.create("png", "w")
        self._codec.width = width
        self._codec.height = height
        self._codec.pix_fmt = "rgb24"

    def encode(self, rgb: np.ndarray) -> bytes:
        """The complete PNG file for one frame."""
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        # PNG is intra-only: one packet per frame, emitted immediately.
        packets = self._codec.encode(frame)
        return b"".join(bytes(p) for p in packets)


class PngSequenceSource:
    """Decodes a sorted list of PNG files one at a time."""

    def __init__(self, path: str, *, fps: float, max_frames: int | None) -> None:
        files = list_pngs(path)
        if max_frames is not None:
            files = files[:max_frames]
        self._files = files
        # Decoding the first picture up front gives the size for ``info``.
        self._first: np.ndarray | None = decode_png(files[0])
        height, width = self._first.shape[:2]
        self.info = VideoInfo(
            width=width, height=height, fps=fps, num_frames=len(files), source=path
        )

    def frames(self) -> Iterator[np.ndarray]:
        """Yield each PNG's RGB pixels, checking they all have one size."""
        for index, file in enumerate(self._files):
            if index == 0 and self._first is not None:
                rgb, self._first = self._first, None
            else:
                rgb = decode_png(file)
            if rgb.shape[:2] != (self.info.height, self.info.width):
                raise VideoReadError(
                    f"{file} is {rgb.shape[1]}x{rgb.shape[0]} but the sequence "
                    f"started at {self.info.width}x{self.info.height} "
                    f"({self._files[0].name}); all frames must have one size"
                )
            yield rgb

    def close(self) -> None:
        """Drop the cached first frame; no file stays open between frames."""
        self._first = None
