"""Reading videos as streams of RGB frames: ``open_video`` and ``read_video``.

The input kind is chosen from the path:

* a directory, or a glob pattern (``"shots/*.png"``): a PNG sequence, sorted
  by file name;
* a file ending in ``.yuv``: headerless planar YUV 4:2:0, BT.601 limited
  range, 8-bit or 10-bit little-endian (``size=(W, H)`` required);
* any other file: whatever PyAV/FFmpeg can demux and decode.

Every reader yields ``(H, W, 3)`` ``uint8`` RGB arrays, one at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import TracebackType

import numpy as np

from gfix_sdk.io._checks import check_bit_depth, check_count, check_fps, check_size
from gfix_sdk.io._container import ContainerSource
from gfix_sdk.io._png import PngSequenceSource, looks_like_glob
from gfix_sdk.io._raw import RawYuvSource
from gfix_sdk.io.info import FrameSource, VideoInfo

RAW_YUV_SUFFIX = ".yuv"
DEFAULT_FPS = 25.0  # for inputs that do not store a rate (raw YUV, PNG)


class VideoReader:
    """A single pass over a video's frames; use it as a context manager.

    ``info`` is available as soon as the reader exists. Iterating decodes one
    frame per step, so memory does not grow with the video's length. The
    underlying file or container is closed when the ``with`` block ends, when
    the frames run out, or on :meth:`close`.
    """

    def __init__(self, source: FrameSource) -> None:
        self._source = source
        self._frames = source.frames()
        self._closed = False
        self.info: VideoInfo = source.info
        """Size, rate and frame count of the video."""

    def __iter__(self) -> Iterator[np.ndarray]:
        return self

    def __next__(self) -> np.ndarray:
        if self._closed:
            raise StopIteration
        try:
            return next(self._frames)
        except BaseException:
            # Exhausted or failed: either way nothing more will be read.
            self.close()
            raise

    @property
    def closed(self) -> bool:
        """True once the underlying file or container has been released."""
        return self._closed

    def close(self) -> None:
        """Release the input; further iteration yields nothing. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._frames.close()
        self._source.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<VideoReader {state} {self.info}>"


def open_video(
    path: str | os.PathLike[str],
    *,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    bit_depth: int = 8,
    max_frames: int | None = None,
) -> VideoReader:
    """Open a video for streaming RGB frames.

    Args:
        path: a video file, a raw ``.yuv`` file, a directory of PNGs or a glob
            pattern of PNGs.
        size: ``(width, height)`` of a raw ``.yuv`` file (required there, and
            only accepted there: other inputs store their size).
        fps: frame rate to report; overrides the container's. Defaults to
            the container's average rate, or 25.0 for raw YUV and PNGs.
        bit_depth: 8 or 10, the sample depth of a raw ``.yuv`` file. Other
            inputs accept only the default 8 (they are decoded to 8-bit RGB
            whatever their depth).
        max_frames: stop after this many frames (positive); None reads all.

    Returns:
        A :class:`VideoReader`; its frames are ``(H, W, 3)`` ``uint8`` RGB.

    Raises:
        FileNotFoundError: ``path`` does not exist (or a pattern matches nothing).
        ValueError: an invalid option, or ``size`` missing for a ``.yuv`` file.
        gfix_sdk.errors.VideoReadError: the input exists but cannot be read.
    """
    if size is not None:
        size = check_size(size)
    if fps is not None:
        fps = check_fps(fps)
    bit_depth = check_bit_depth(bit_depth)
    if max_frames is not None:
        max_frames = check_count(max_frames, "max_frames")

    name = os.fspath(path)
    is_pattern = not os.path.exists(name) and looks_like_glob(name)
    if not is_pattern and not os.path.exists(name):
        raise FileNotFoundError(f"no such file or directory: {name}")

    if not is_pattern and name.lower().endswith(RAW_YUV_SUFFIX) and not os.path.isdir(name):
        if size is None:
            raise ValueError(
                f"{name} is raw YUV without a header: pass size=(W, H) (and fps=, "
                "bit_depth= if not 25 fps / 8-bit)"
            )
        return VideoReader(
            RawYuvSource(
                name,
                size=size,
                fps=DEFAULT_FPS if fps is None else fps,
                bit_depth=bit_depth,
                max_frames=max_frames,
            )
        )

    # Everything else states its own size and depth; refuse rather than ignore.
    if size is not None:
        raise ValueError(f"size= applies only to raw .yuv input, not to {name}")
    if bit_depth != 8:
        raise ValueError(f"bit_depth= applies only to raw .yuv input, not to {name}")
    if is_pattern or os.path.isdir(name):
        source: FrameSource = PngSequenceSource(
            name, fps=DEFAULT_FPS if fps is None else fps, max_frames=max_frames
        )
    else:
        source = ContainerSource(name, fps=fps, max_frames=max_frames)
    return VideoReader(source)


def read_video(
    path: str | os.PathLike[str],
    *,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    bit_depth: int = 8,
    max_frames: int | None = None,
) -> tuple[np.ndarray, VideoInfo]:
    """Read a whole video into memory (see :func:`open_video` for the options).

    Returns:
        ``(frames, info)`` with ``frames`` a ``(T, H, W, 3)`` ``uint8`` array and
        ``info.num_frames == T``.
    """
    with open_video(path, size=size, fps=fps, bit_depth=bit_depth, max_frames=max_frames) as reader:
        info = reader.info
        frames = list(reader)
    stacked = np.stack(frames) if frames else np.empty((0, info.height, info.width, 3), np.uint8)
    return stacked, VideoInfo(
        width=info.width,
        height=info.height,
        fps=info.fps,
        num_frames=len(frames),
        source=info.source,
    )
