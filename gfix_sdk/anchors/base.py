"""What every codec under evaluation returns, and the interface it follows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True, eq=False)
class EncodedClip:
    """One clip encoded at one rate point, with its decoded frames.

    ``num_bytes`` is what rate is counted on (``bitrate_kbps``, ``bpp``); each
    codec documents which bytes those are. ``data`` is the codec's own
    output, decodable on its own.
    """

    codec: str
    """Name of the codec that made it (e.g. ``"h264"``)."""
    data: bytes
    """The encoded bitstream."""
    num_bytes: int
    """Bytes counted as the bitstream size."""
    decoded: np.ndarray
    """The decoded frames, ``(T, H, W, 3)`` ``uint8`` RGB."""
    fps: float
    """Frame rate the clip was encoded at; with ``T`` it gives the duration."""
    container_bytes: int | None = None
    """Size of the same stream in a container file, for reference (None: no container)."""
    params: Mapping[str, int | float | str] = field(default_factory=dict)
    """The rate parameters used (e.g. ``{"crf": 23}``)."""

    def __post_init__(self) -> None:
        decoded = self.decoded
        if not (
            isinstance(decoded, np.ndarray)
            and decoded.ndim == 4
            and decoded.shape[-1] == 3
            and decoded.dtype == np.uint8
            and decoded.shape[0] > 0
        ):
            raise ValueError(
                "decoded must be a non-empty (T, H, W, 3) uint8 array, got "
                f"{getattr(decoded, 'shape', None)} {getattr(decoded, 'dtype', type(decoded))}"
            )
        if isinstance(self.num_bytes, bool) or not isinstance(self.num_bytes, int):
            raise ValueError(f"num_bytes must be an int, got {self.num_bytes!r}")
        if self.num_bytes <= 0:
            raise ValueError(f"num_bytes must be positive, got {self.num_bytes}")
        if not (self.fps > 0):
            raise ValueError(f"fps must be positive, got {self.fps!r}")

    @property
    def num_frames(self) -> int:
        """``T``, the number of frames."""
        return int(self.decoded.shape[0])

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return int(self.decoded.shape[1])

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return int(self.decoded.shape[2])

    @property
    def duration_s(self) -> float:
        """``T / fps`` seconds."""
        return self.num_frames / self.fps

    @property
    def bitrate_kbps(self) -> float:
        """``8 * num_bytes / duration_s / 1000`` (kilobits of 1000 bits per second)."""
        return 8.0 * self.num_bytes / self.duration_s / 1000.0

    @property
    def bpp(self) -> float:
        """Bits per pixel: ``8 * num_bytes / (T * W * H)``."""
        return 8.0 * self.num_bytes / (self.num_frames * self.width * self.height)


@runtime_checkable
class Codec(Protocol):
    """The interface the anchors follow and a codec under test can follow too.

    Each codec also has an ``encode(frames, fps, **rate_parameters)`` whose
    rate parameters are its own (CRF or QP for H.264), so it is not part of
    this protocol.
    """

    name: str
    """Short identifier used in reports (``"h264"``)."""

    def encode_at_bitrate(self, frames: np.ndarray, fps: float, target_kbps: float) -> EncodedClip:
        """Encode ``(T, H, W, 3)`` ``uint8`` RGB frames as close to ``target_kbps`` as it can."""
        ...
