"""What the conventional anchors (x264, x265, SVT-AV1) share: a PyAV encoder run in-process.

:class:`PyAVAnchor` does the work of :class:`~gfix_sdk.anchors.H264Anchor`,
:class:`~gfix_sdk.anchors.H265Anchor` and :class:`~gfix_sdk.anchors.AV1Anchor`;
each of those only names its encoder, its settings and its rate range.

Colour path
-----------
RGB frames are converted to BT.601 limited-range YUV 4:2:0 by
:func:`gfix_sdk.io.rgb_to_yuv420` (2x2 box-averaged chroma) and handed to the
encoder as ``yuv420p`` planes; the stream is tagged BT.601 (matrix
``bt470bg``) limited range. Decoded pictures come back as ``yuv420p`` planes
and are converted to RGB by :func:`gfix_sdk.io.yuv420_to_rgb`, the inverse of
that conversion. Both directions are ours and match, so the quality measured
is the codec's, plus the 4:2:0 subsampling every 4:2:0 codec pays, whatever
the decoder's own colour handling.

What is counted
---------------
``EncodedClip.data`` is the codec's elementary stream: exactly the packets
the encoder produced, concatenated (H.264 / HEVC Annex-B, AV1 low-overhead
OBUs), which the matching raw demuxer of FFmpeg reads back on its own
(:func:`decode_elementary_stream`). ``num_bytes`` is its length, the sum of
the packet sizes, and rate (``bitrate_kbps``, ``bpp``) is counted on it: no
container overhead. ``container_bytes`` is the size of the same packets
muxed into MP4 (:func:`remux_mp4_size`), for reference.

Rate knob
---------
CRF (``rate_knob = "crf"``), or a constant QP through ``encode(qp=...)``;
both are ints in the codec's :attr:`PyAVAnchor.rate_range`.
:meth:`PyAVAnchor.rate_points` spreads evaluation points over
:attr:`PyAVAnchor.eval_range`, chosen per codec so that the bundled clip's
PSNR spans about 24-33 dB, bracketing the Gaussian codec's range.
"""

from __future__ import annotations

import io
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from gfix_sdk.anchors.base import EncodedClip, RateValue, check_point_count
from gfix_sdk.anchors.ratesearch import closest_setting
from gfix_sdk.errors import VideoReadError, VideoWriteError
from gfix_sdk.io._av import frame_planes, yuv420_frame
from gfix_sdk.io._checks import check_fps
from gfix_sdk.io.yuv import rgb_to_yuv420, yuv420_to_rgb

PIX_FMT = "yuv420p"


@dataclass(frozen=True)
class PreparedFrames:
    """Validated input converted to YUV once, reused by every encode of a search."""

    planes: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    """Y, U, V planes of every frame (BT.601 limited range, 4:2:0)."""
    width: int
    height: int
    fps: float
    """The frame rate asked for (sets the duration used for the bitrate)."""
    rate: Fraction
    """``fps`` as the fraction given to the encoder (denominator at most 1001)."""


class PyAVAnchor:
    """Base of the anchors that run an FFmpeg encoder through PyAV; see the module doc.

    A subclass sets the class attributes below, :meth:`_settings` and, where
    the encoder needs more than those, :meth:`_extra_options`; :meth:`encode`,
    :meth:`encode_at_bitrate`, :meth:`rate_points` and :meth:`encode_point`
    (so :class:`~gfix_sdk.anchors.Codec` and
    :class:`~gfix_sdk.anchors.RatePointCodec`) come from here.

    Args:
        threads: encoder threads; 0 (the default) lets the encoder choose
            from the core count. Whether the bytes depend on it is the
            codec's business (x264 and x265: yes; see each class).
    """

    name: str
    """Short identifier used in reports (``"h264"``, ``"h265"``, ``"av1"``)."""
    rate_knob: str = "crf"
    """Name of the evaluation rate knob."""
    encoder: ClassVar[str]
    """PyAV / FFmpeg encoder name (``"libx264"``)."""
    encoder_label: ClassVar[str]
    """Encoder name used in messages (``"x264"``)."""
    stream_label: ClassVar[str]
    """Bitstream format used in messages (``"H.264"``)."""
    stream_format: ClassVar[str]
    """FFmpeg demuxer that reads the elementary stream (``"h264"``, ``"hevc"``, ``"obu"``)."""
    rate_range: ClassVar[tuple[int, int]]
    """Lowest and highest CRF / QP accepted (best quality first)."""
    range_note: ClassVar[str] = ""
    """Said after the range when a rate value is refused (e.g. why 0 is left out)."""
    default_crf: ClassVar[int]
    """CRF when ``encode`` gets neither ``crf`` nor ``qp`` (the encoder's own default)."""
    eval_range: ClassVar[tuple[int, int]]
    """Default evaluation sweep, ``(highest CRF, lowest CRF)``: lowest rate first."""

    def __init__(self, *, threads: int = 0) -> None:
        if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 0:
            raise ValueError(f"threads must be a non-negative int, got {threads!r}")
        self.threads: int = int(threads)

    # -- the public API -------------------------------------------------------------

    def encode(
        self, frames: np.ndarray, fps: float, *, crf: int | None = None, qp: int | None = None
    ) -> EncodedClip:
        """Encode RGB frames at one CRF or one constant QP and decode them back.

        Args:
            frames: ``(T, H, W, 3)`` ``uint8`` RGB, ``H`` and ``W`` even
                (4:2:0 chroma).
            fps: frame rate; it sets the duration ``T / fps`` used for the
                bitrate, and the timing written into the stream (as a
                fraction with a denominator of at most 1001).
            crf: constant rate factor, an int in :attr:`rate_range` (lower is
                better quality and more bits); :attr:`default_crf` when
                neither ``crf`` nor ``qp`` is given.
            qp: constant quantiser instead of CRF, an int in :attr:`rate_range`.

        Returns:
            The clip; ``params`` holds the encoder settings (preset, ...) and
            ``crf`` or ``qp``.

        Raises:
            ValueError: invalid frames, fps, or rate parameters (both given,
                not an int, or outside :attr:`rate_range`).
            gfix_sdk.errors.VideoWriteError: the encoder failed (e.g. frames
                smaller than it supports).
            gfix_sdk.errors.VideoReadError: the stream failed to decode.
        """
        if crf is not None and qp is not None:
            raise ValueError("give crf or qp, not both")
        if qp is not None:
            rate_params = {"qp": self._check_rate_param(qp, "qp")}
        else:
            rate_params = {"crf": self._check_rate_param(self.default_crf if crf is None else crf, "crf")}
        prepared = prepare_frames(frames, fps, self.stream_label)
        return self._finish(prepared, self._encode_packets(prepared, rate_params), rate_params)

    def encode_at_bitrate(self, frames: np.ndarray, fps: float, target_kbps: float) -> EncodedClip:
        """Encode at the integer CRF whose bitrate is closest to ``target_kbps``.

        Bisection over :attr:`rate_range` relies on the rate being
        non-increasing in CRF, which holds in practice (a higher CRF
        quantises more coarsely). It takes about ``log2(range) + 1`` encodes
        (7 for 1..51) and never repeats one; only the chosen one is decoded.
        "Closest" is in ratio (``|log(rate / target)|``), as close as integer
        CRF allows. A target above the lowest CRF's rate gives that CRF, one
        below the highest CRF's rate gives the highest: check ``bitrate_kbps``.

        Raises:
            ValueError: invalid frames or fps, or ``target_kbps`` not a
                positive finite number.
            gfix_sdk.errors.VideoWriteError / VideoReadError: as :meth:`encode`.
        """
        if (
            isinstance(target_kbps, bool)
            or not isinstance(target_kbps, numbers.Real)
            or not (math.isfinite(target_kbps) and target_kbps > 0)
        ):
            raise ValueError(f"target_kbps must be a positive finite number, got {target_kbps!r}")
        prepared = prepare_frames(frames, fps, self.stream_label)
        duration_s = len(prepared.planes) / prepared.fps
        streams: dict[int, list[av.Packet]] = {}

        def kbps(crf: int) -> float:
            streams[crf] = self._encode_packets(prepared, {"crf": crf})
            return 8.0 * packets_size(streams[crf]) / duration_s / 1000.0

        low, high = self.rate_range
        crf, _ = closest_setting(kbps, float(target_kbps), low, high)
        return self._finish(prepared, streams[crf], {"crf": crf})

    def rate_points(self, count: int, width: int = 0, height: int = 0) -> list[RateValue]:
        """``count`` CRFs for an evaluation sweep, lowest rate (highest CRF) first.

        Evenly spaced over :attr:`eval_range` (rounded; the size does not
        matter), or over the whole :attr:`rate_range` when more points are
        asked for than the evaluation range holds. Part of
        :class:`~gfix_sdk.anchors.RatePointCodec`.

        Raises:
            ValueError: ``count`` not a positive int, or above the number of
                CRF values.
        """
        count = check_point_count(count)
        low, high = self.rate_range
        if count > high - low + 1:
            raise ValueError(
                f"{self.encoder_label} has only {high - low + 1} CRF values, {count} points were asked for"
            )
        top, bottom = self.eval_range
        if count > top - bottom + 1:
            top, bottom = high, low
        if count == 1:
            return [round((top + bottom) / 2)]
        return [round(top - i * (top - bottom) / (count - 1)) for i in range(count)]

    def encode_point(self, frames: np.ndarray, fps: float, value: RateValue) -> EncodedClip:
        """:meth:`encode` at ``crf=value`` (the :class:`~gfix_sdk.anchors.RatePointCodec` entry)."""
        return self.encode(frames, fps, crf=value)  # type: ignore[arg-type]

    def decode(self, data: bytes) -> np.ndarray:
        """Decode this codec's elementary stream to ``(T, H, W, 3)`` ``uint8`` RGB.

        See :func:`decode_elementary_stream`.
        """
        return decode_elementary_stream(data, self.stream_format, self.stream_label)

    # -- what a subclass provides ----------------------------------------------------

    def _settings(self) -> dict[str, int | float | str]:
        """Fixed encoder settings reported in ``EncodedClip.params`` (preset, profile, ...)."""
        raise NotImplementedError

    def _extra_options(self) -> dict[str, str]:
        """Encoder options beyond :meth:`_settings` (threads, logging, ...)."""
        return {}

    def _options(self, rate_params: Mapping[str, int]) -> dict[str, str]:
        """FFmpeg encoder options for one rate point (``{"crf": 23}`` or ``{"qp": 30}``):
        the settings, the extra options, then the rate parameters."""
        options = {key: str(value) for key, value in self._settings().items()}
        options.update(self._extra_options())
        options.update({key: str(value) for key, value in rate_params.items()})
        return options

    def _container_size(self, prepared: PreparedFrames, packets: list[av.Packet], data: bytes) -> int:
        """``container_bytes``: the packets remuxed into MP4 (see :func:`remux_mp4_size`)."""
        return remux_mp4_size(packets, prepared, data, self.stream_format)

    def _before_open(self) -> None:
        """Called before the encoder is created (e.g. to quiet its logging)."""

    # -- the work ------------------------------------------------------------------

    def _check_rate_param(self, value: object, name: str) -> int:
        low, high = self.rate_range
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= int(value) <= high:
            raise ValueError(f"{name} must be an int in {low}..{high}{self.range_note}, got {value!r}")
        return int(value)

    def _encode_packets(self, prepared: PreparedFrames, rate_params: Mapping[str, int]) -> list[av.Packet]:
        """Run the encoder over the prepared frames; return its packets in output order."""
        options = self._options(rate_params)
        self._before_open()
        try:
            ctx = av.CodecContext.create(self.encoder, "w")
            ctx.width, ctx.height, ctx.pix_fmt = prepared.width, prepared.height, PIX_FMT
            ctx.time_base = 1 / prepared.rate
            ctx.framerate = prepared.rate
            # Colour tags written into the stream: what rgb_to_yuv420 produced.
            ctx.colorspace = Colorspace.ITU601
            ctx.color_range = ColorRange.MPEG
            # AUTO = frame threads where the encoder has them (x264), as with
            # the ffmpeg command line; PyAV's default (SLICE) would turn on
            # x264's sliced threads.
            ctx.thread_type = "AUTO"
            ctx.thread_count = self.threads
            ctx.options = options
            packets: list[av.Packet] = []
            for index, planes in enumerate(prepared.planes):
                frame = yuv420_frame(planes, prepared.width, prepared.height)
                frame.pts = index
                frame.time_base = ctx.time_base
                packets.extend(ctx.encode(frame))
            packets.extend(ctx.encode(None))  # drain the look-ahead and B-frames
        except av.error.FFmpegError as exc:
            raise VideoWriteError(f"{self.encoder_label} failed with options {options}: {exc}") from exc
        if not packets:
            raise VideoWriteError(f"{self.encoder_label} produced no output with options {options}")
        return packets

    def _finish(
        self, prepared: PreparedFrames, packets: list[av.Packet], rate_params: Mapping[str, int]
    ) -> EncodedClip:
        """Package the packets: elementary-stream bytes, decoded frames, MP4 size."""
        data = b"".join(bytes(packet) for packet in packets)
        decoded = self.decode(data)
        if decoded.shape[0] != len(prepared.planes):
            raise VideoReadError(
                f"the {self.stream_label} stream decoded to {decoded.shape[0]} frames, "
                f"not the {len(prepared.planes)} encoded"
            )
        return EncodedClip(
            codec=self.name,
            data=data,
            num_bytes=packets_size(packets),
            decoded=decoded,
            fps=prepared.fps,
            container_bytes=self._container_size(prepared, packets, data),
            params={**self._settings(), **rate_params},
        )


def decode_elementary_stream(data: bytes, stream_format: str, label: str | None = None) -> np.ndarray:
    """Decode an elementary stream to ``(T, H, W, 3)`` ``uint8`` RGB.

    Args:
        data: the stream (e.g. ``EncodedClip.data`` of a PyAV anchor).
        stream_format: FFmpeg's raw demuxer for it: ``"h264"``, ``"hevc"``
            or ``"obu"`` (AV1 low-overhead OBUs).
        label: name of the format in error messages (default: ``stream_format``).

    Pictures are taken as ``yuv420p`` planes and converted by
    :func:`gfix_sdk.io.yuv420_to_rgb` (BT.601 limited range), whatever the
    stream's colour tags say.

    Raises:
        gfix_sdk.errors.VideoReadError: the data does not decode, holds no
            picture, or is not 8-bit 4:2:0.
    """
    label = label or stream_format
    frames: list[np.ndarray] = []
    try:
        with av.open(io.BytesIO(data), mode="r", format=stream_format) as container:
            for frame in container.decode(video=0):
                if frame.format.name != PIX_FMT:
                    raise VideoReadError(f"the {label} stream decodes to {frame.format.name}, not {PIX_FMT}")
                frames.append(yuv420_to_rgb(*frame_planes(frame)))
    except av.error.FFmpegError as exc:
        raise VideoReadError(f"cannot decode the {label} stream: {exc}") from exc
    if not frames:
        raise VideoReadError(f"the {label} stream holds no picture")
    return np.stack(frames)


def prepare_frames(frames: np.ndarray, fps: float, label: str) -> PreparedFrames:
    """Validate the frames and fps, and convert every frame to YUV 4:2:0 once.

    Raises:
        ValueError: not a non-empty ``(T, H, W, 3)`` ``uint8`` array, an odd
            width or height, or an invalid fps.
    """
    fps = check_fps(fps)
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a (T, H, W, 3) uint8 numpy array, got {type(frames)}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}")
    count, height, width = frames.shape[:3]
    if count == 0 or height == 0 or width == 0:
        raise ValueError(f"frames must not be empty, got shape {frames.shape}")
    if height % 2 or width % 2:
        raise ValueError(
            f"{label} with 4:2:0 chroma needs an even width and height, got {width}x{height}; "
            "crop or pad the frames"
        )
    # Encoders need a rational rate; 1001 keeps the NTSC rates (30000/1001) exact.
    rate = Fraction(fps).limit_denominator(1001)
    if rate == 0:
        raise ValueError(f"fps={fps} is too small to encode")
    planes = [rgb_to_yuv420(frame) for frame in frames]
    return PreparedFrames(planes=planes, width=width, height=height, fps=fps, rate=rate)


def packets_size(packets: list[av.Packet]) -> int:
    """Total payload bytes of the packets."""
    return sum(packet.size for packet in packets)


def remux_mp4_size(packets: list[av.Packet], prepared: PreparedFrames, data: bytes, stream_format: str) -> int:
    """Bytes of an MP4 file holding these packets (muxed in memory).

    The MP4 stream's parameters come from FFmpeg's raw demuxer reading
    ``data`` (the packets concatenated, in ``stream_format``), so no encoder
    is opened; the timestamps are the encoder's. The MP4 muxer rewrites
    Annex-B to length-prefixed NAL units (AV1: drops temporal delimiters) and
    builds its decoder configuration box from the first packet.
    """
    buffer = io.BytesIO()
    try:
        with av.open(io.BytesIO(data), mode="r", format=stream_format) as source:
            # bitexact: no random IDs or tool versions, so the size is reproducible.
            with av.open(buffer, mode="w", format="mp4", options={"fflags": "+bitexact"}) as out:
                # opaque: take the demuxer's codec (a decoder) as it is, not an encoder of its name.
                stream = out.add_stream_from_template(source.streams.video[0], opaque=True)
                stream.time_base = 1 / prepared.rate
                _mux_copies(out, stream, packets)
    except (av.error.FFmpegError, ValueError) as exc:
        raise VideoWriteError(f"cannot mux the {stream_format} stream into MP4: {exc}") from exc
    return len(buffer.getvalue())


def mp4_size(packets: list[av.Packet], prepared: PreparedFrames, codec: str) -> int:
    """Bytes of an MP4 file holding these packets, through an MP4 stream made for ``codec``.

    The H.264 anchor's way (PyAV opens an unfed ``codec`` encoder for the
    stream); :func:`remux_mp4_size` opens none.
    """
    buffer = io.BytesIO()
    try:
        # bitexact: no random IDs or tool versions, so the size is reproducible.
        with av.open(buffer, mode="w", format="mp4", options={"fflags": "+bitexact"}) as out:
            stream = out.add_stream(codec, rate=prepared.rate)
            stream.width, stream.height = prepared.width, prepared.height
            stream.time_base = 1 / prepared.rate
            # The MP4 muxer rewrites Annex-B to length-prefixed NAL units.
            _mux_copies(out, stream, packets)
    except av.error.FFmpegError as exc:
        raise VideoWriteError(f"cannot mux the {codec} stream into MP4: {exc}") from exc
    return len(buffer.getvalue())


def decode_timestamps(pts: list[int], dts: list[int | None]) -> list[int]:
    """Decode timestamps for packets in decode order: the encoder's when valid, else rebuilt.

    Valid means what the MP4 muxer needs: strictly increasing, never after the
    packet's pts, and no further before it than the packets could be reordered
    (frames are stamped 0, 1, ... in ``1/rate`` units). x265 leaves its
    B-frame delay uninitialised when a clip is shorter than that delay
    (x265 issue #781: 1-2 frames at the default settings), so such clips
    come out with heap garbage as dts, differing run to run. Rebuilt: the
    sorted pts shifted back by the largest reorder, the usual monotone
    ``dts <= pts`` assignment.
    """
    if len(pts) != len(dts):
        raise ValueError(f"{len(pts)} pts for {len(dts)} dts")
    count = len(pts)
    valid = all(d is not None and 0 <= p - d <= count for p, d in zip(pts, dts)) and all(
        later > earlier for earlier, later in zip(dts, dts[1:])  # type: ignore[operator]
    )
    if valid:
        return [int(d) for d in dts]  # type: ignore[arg-type]
    in_order = sorted(pts)
    delay = max(max(early - p for early, p in zip(in_order, pts)), 0)
    return [early - delay for early in in_order]


def _mux_copies(out: av.container.OutputContainer, stream: av.video.stream.VideoStream,
                packets: list[av.Packet]) -> None:
    dts = decode_timestamps([packet.pts for packet in packets], [packet.dts for packet in packets])
    for packet, packet_dts in zip(packets, dts):
        copy = av.Packet(bytes(packet))
        copy.pts, copy.dts, copy.time_base = packet.pts, packet_dts, packet.time_base
        copy.is_keyframe = packet.is_keyframe
        copy.stream = stream
        out.mux(copy)
