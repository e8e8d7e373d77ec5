"""Frame source for headerless planar YUV 4:2:0 files (``.yuv``).

Each frame is the Y plane then U then V, with no padding between planes or
frames. 10-bit files store every sample in a little-endian 16-bit word, as
the UVG dataset does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from gfix_sdk.errors import VideoReadError
from gfix_sdk.io.info import VideoInfo
from gfix_sdk.io.yuv import chroma_shape, yuv420_to_rgb


class RawYuvSource:
    """Reads one frame at a time from an open ``.yuv`` file."""

    def __init__(
        self,
        path: str,
        *,
        size: tuple[int, int],
        fps: float,
        bit_depth: int,
        max_frames: int | None,
    ) -> None:
        width, height = size
        self._path = path
        self._bit_depth = bit_depth
        self._dtype = np.dtype("<u2") if bit_depth > 8 else np.dtype(np.uint8)
        c_rows, c_cols = chroma_shape(width, height)
        self._luma = width * height
        self._chroma = c_rows * c_cols
        self._shapes = ((height, width), (c_rows, c_cols))
        self._frame_bytes = (self._luma + 2 * self._chroma) * self._dtype.itemsize

        file_size = os.path.getsize(path)
        complete, partial = divmod(file_size, self._frame_bytes)
        wanted = complete if max_frames is None else min(complete, max_frames)
        described = (
            f"{width}x{height} {bit_depth}-bit YUV 4:2:0 frames of {self._frame_bytes} bytes each"
        )
        if file_size == 0:
            raise VideoReadError(f"{path} is empty: no {described}")
        # A trailing partial frame usually means a wrong size or bit depth,
        # so only tolerate it when the caller asked to stop before it.
        if partial and (max_frames is None or max_frames > complete):
            raise VideoReadError(
                f"{path} is {file_size} bytes, not a whole number of {described} "
                f"({complete} complete frame(s) and {partial} bytes left over); "
                "check size=(W, H) and bit_depth"
            )
        self.info = VideoInfo(width=width, height=height, fps=fps, num_frames=wanted, source=path)
        self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()

    def frames(self) -> Iterator[np.ndarray]:
        """Yield RGB frames converted with BT.601 limited range."""
        (height, width), chroma = self._shapes
        for index in range(self.info.num_frames or 0):
            data = self._file.read(self._frame_bytes)
            if len(data) != self._frame_bytes:
                raise VideoReadError(
                    f"{self._path}: frame {index} is truncated "
                    f"({len(data)} of {self._frame_bytes} bytes); was the file changed?"
                )
            samples = np.frombuffer(data, dtype=self._dtype)
            if self._bit_depth == 10 and int(samples.max()) > 1023:
                raise VideoReadError(
                    f"{self._path}: frame {index} has samples above 1023, so it is "
                    "not 10-bit little-endian YUV (big-endian or 16-bit data?)"
                )
            y = samples[: self._luma].reshape(height, width)
            u = samples[self._luma : self._luma + self._chroma].reshape(chroma)
            v = samples[self._luma + self._chroma :].reshape(chroma)
            yield yuv420_to_rgb(y, u, v, bit_depth=self._bit_depth)

    def close(self) -> None:
        """Close the file."""
        self._file.close()
