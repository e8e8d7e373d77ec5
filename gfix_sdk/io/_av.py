"""Moving 8-bit YUV 4:2:0 planes in and out of PyAV frames."""

from __future__ import annotations

import av
import numpy as np


def _plane_rows(plane: av.video.plane.VideoPlane) -> np.ndarray:
    # Planes may be padded: line_size can exceed the visible width.
    return np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(plane.height, plane.line_size)


def yuv420_frame(planes: tuple[np.ndarray, np.ndarray, np.ndarray], width: int, height: int) -> av.VideoFrame:
    """A ``yuv420p`` frame holding exactly the given Y, U, V planes."""
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, data in zip(frame.planes, planes, strict=True):
        _plane_rows(plane)[:, : plane.width] = data
    return frame


def frame_planes(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of a ``yuv420p`` frame's visible Y, U, V planes."""
    y, u, v = (_plane_rows(plane)[:, : plane.width] for plane in frame.planes)
    return y, u, v
