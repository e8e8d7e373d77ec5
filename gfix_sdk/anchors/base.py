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


RateValue = int | float
"""A value of a codec's rate knob (a CRF, a Gaussian count, ...)."""


@runtime_checkable
class RatePointCodec(Protocol):
    """A codec the evaluation suite (``gfix eval``) can sweep over rate points.

    Every codec in a report follows it: :class:`~gfix_sdk.anchors.H264Anchor`
    (knob ``crf``), :class:`~gfix_sdk.anchors.GaussianAnchor` and
    :class:`~gfix_sdk.anchors.GFixAnchor` (knob ``gaussians``).

    Adding your own codec: write a class with these four members, e.g.::

        class MyCodec:
            name = "mycodec"          # unique; names the CSV rows and plot lines
            rate_knob = "qp"

            def rate_points(self, count, width, height):
                return [40, 34, 28, 22][:count]       # lowest rate first

            def encode_point(self, frames, fps, value):
                data = my_encode(frames, fps, qp=value)          # your bitstream
                return EncodedClip(codec=self.name, data=data, num_bytes=len(data),
                                   decoded=my_decode(data), fps=fps, params={"qp": value})

    and pass an instance to :func:`gfix_sdk.eval.run_eval` (``anchors=["h264",
    MyCodec()]``) or name it on the command line as ``module:attribute``
    (``gfix eval clip.mp4 --anchors h264,mypackage.codecs:MyCodec``; a class
    is instantiated without arguments). ``isinstance(obj, RatePointCodec)``
    checks the members are there.
    """

    name: str
    """Short, unique identifier used in reports (``"h264"``, ``"gs"``, ``"gfix"``)."""
    rate_knob: str
    """Name of the rate parameter (``"crf"``, ``"gaussians"``)."""

    def rate_points(self, count: int, width: int, height: int) -> list[RateValue]:
        """``count`` distinct knob values for ``width x height`` video, lowest rate first."""
        ...

    def encode_point(self, frames: np.ndarray, fps: float, value: RateValue) -> EncodedClip:
        """Encode ``(T, H, W, 3)`` ``uint8`` RGB frames at one knob value and decode them back.

        ``decoded`` must have the input's shape; ``num_bytes`` is what the
        report's rate counts.
        """
        ...


def check_point_count(count: object) -> int:
    """``count`` (a number of rate points) as a positive int; ValueError otherwise."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"the number of rate points must be a positive int, got {count!r}")
    return count


def check_frames(frames: object) -> np.ndarray:
    """``frames`` as a validated non-empty ``(T, H, W, 3)`` ``uint8`` array; ValueError otherwise."""
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a (T, H, W, 3) uint8 numpy array, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}")
    if 0 in frames.shape:
        raise ValueError(f"frames must not be empty, got shape {frames.shape}")
    return frames
