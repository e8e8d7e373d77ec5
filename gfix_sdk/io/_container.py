"""Frame source for anything FFmpeg can demux (mp4, mkv, avi, y4m, mov, webm…).

Frames are converted with ``to_ndarray(format="rgb24")``, i.e. by swscale,
which honours the stream's colour tags and assumes BT.601 limited range for
untagged YUV.
"""

from __future__ import annotations

import itertools

from collections.abc import Iterator

import av
import numpy as np

from gfix_sdk.errors import VideoReadError
from gfix_sdk.io.info import VideoInfo


class ContainerSource:
    """Decodes the first video stream of a container one frame at a time."""

    def __init__(self, path: str, *, fps: float | None, max_frames: int | None) -> None:
        self._path = path
        self._max_frames = max_frames
        try:
            self._container = av.open(path, mode="r")
        except av.error.FFmpegError as exc:
            raise VideoReadError(f"cannot open {path} as a video: {exc}") from exc
        try:
            self.info = self._probe(fps)
        except BaseException:
            self._container.close()
            raise

    def _probe(self, fps: float | None) -> VideoInfo:
        if not self._container.streams.video:
            raise VideoReadError(f"{self._path} has no video stream")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads; output order unchanged
        self._decoded = self._decode(stream)
        # Peek at the first frame: it proves the stream decodes and gives the
        # real picture size, which headers sometimes misstate.
        self._first: av.VideoFrame | None = next(self._decoded, None)
        if self._first is None:
            raise VideoReadError(f"{self._path} has a video stream without any frame")

        if fps is None:
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise VideoReadError(f"{self._path} does not state its frame rate; pass fps=")
            fps = float(rate)
        num_frames = stream.frames or None
        if num_frames is not None and self._max_frames is not None:
            num_frames = min(num_frames, self._max_frames)
        return VideoInfo(
            width=self._first.width,
            height=self._first.height,
            fps=fps,
            num_frames=num_frames,
            source=self._path,
        )

    def _decode(self, stream: av.VideoStream) -> Iterator[av.VideoFrame]:
        frames = self._container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:
                raise VideoReadError(f"cannot decode {self._path}: {exc}") from exc
            yield frame

    def frames(self) -> Iterator[np.ndarray]:
        """Yield RGB frames, stopping at ``max_frames``."""
        first, self._first = self._first, None
        if first is None:  # already iterated or closed
            return
        limit = self._max_frames
        for index, frame in enumerate(itertools.chain((first,), self._decoded)):
            if frame.width != self.info.width or frame.height != self.info.height:
                raise VideoReadError(
                    f"{self._path}: frame {index} is {frame.width}x{frame.height} but "
                    f"the stream started at {self.info.width}x{self.info.height}"
                )
            try:
                rgb = frame.to_ndarray(format="rgb24")
            except av.error.FFmpegError as exc:
                raise VideoReadError(f"cannot convert {self._path} frame {index}: {exc}") from exc
            yield rgb
            if limit is not None and index + 1 >= limit:
                return

    def close(self) -> None:
        """Close the container (and with it the file)."""
        self._first = None
        self._container.close()

