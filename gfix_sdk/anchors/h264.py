"""The H.264 anchor: x264 (``preset medium``, ``profile main``, yuv420p) via PyAV.

Encoding runs in-process through PyAV's bundled ``libx264``; no ``ffmpeg``
binary is needed.

Colour path
-----------
RGB frames are converted to BT.601 limited-range YUV 4:2:0 by
:func:`gfix_sdk.io.rgb_to_yuv420` (2x2 box-averaged chroma) and handed to
x264 as ``yuv420p`` planes; the stream is tagged BT.601 (matrix
``bt470bg``) limited range, as :func:`gfix_sdk.io.write_video` tags its
H.264. Decoded pictures come back as ``yuv420p`` planes and are converted to
RGB by :func:`gfix_sdk.io.yuv420_to_rgb`, the inverse of that conversion. So
both directions are ours and match: the quality measured is the codec's,
plus the 4:2:0 subsampling every 4:2:0 codec pays, and not swscale's
``rgb24`` path (about one level darker than the exact matrix, see
``tests/test_io.py``).

What is counted
---------------
``EncodedClip.data`` is the H.264 Annex-B elementary stream (start codes,
SPS/PPS in-band at each IDR picture, the x264 version/settings SEI of about
0.7 kB in the first access unit), exactly the packets x264 produced
concatenated: what an ``.h264`` file holds, decodable by any H.264 decoder
(``av.open(io.BytesIO(data), format="h264")``). ``num_bytes`` is its length,
the sum of the packet sizes, and rate (``bitrate_kbps``, ``bpp``) is counted
on it: container overhead is excluded. ``container_bytes`` is the size of
the same packets muxed into MP4, for reference.

x264 settings
-------------
``preset=medium``, ``profile=main`` (so no 8x8 transform, and no lossless
coding: CRF and QP run from 1 to 51), ``pix_fmt=yuv420p``, and x264's own
defaults otherwise (keyint 250, 3 B-frames, mb-tree, CRF 23 when no rate is
given), as the ``ffmpeg`` command line gives. Threading is frame-based like
the command line's (PyAV's default thread type would switch x264 to sliced
threads, which code every frame as several slices and cost bits). x264 is
deterministic for a given thread count; the count defaults to x264's
automatic choice, so bytes can differ slightly between machines with
different core counts; pass ``threads`` to pin it.
"""

from __future__ import annotations

import io
import math
import numbers
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from gfix_sdk.anchors.base import EncodedClip, RateValue, check_point_count
from gfix_sdk.anchors.ratesearch import closest_setting
from gfix_sdk.errors import VideoReadError, VideoWriteError
from gfix_sdk.io._av import frame_planes, yuv420_frame
from gfix_sdk.io._checks import check_fps
from gfix_sdk.io.yuv import rgb_to_yuv420, yuv420_to_rgb

PRESET = "medium"
PROFILE = "main"
PIX_FMT = "yuv420p"
# Main profile cannot code losslessly, and CRF 0 / QP 0 mean lossless in 8 bits.
MIN_RATE_PARAM = 1
MAX_RATE_PARAM = 51
DEFAULT_CRF = 23  # x264's (and ffmpeg's) default
# Default evaluation sweep: from x264's low-quality end (about 24 dB RGB PSNR
# on the bundled clip) to a high-quality point (about 33 dB), which brackets
# the Gaussian codec's range on the same clip so that BD-rate curves overlap.
EVAL_CRF_RANGE = (42, 22)


@dataclass(frozen=True)
class _Prepared:
    """Validated input converted to YUV once, reused by every encode of a search."""

    planes: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    width: int
    height: int
    fps: float
    rate: Fraction


class H264Anchor:
    """H.264 anchor codec (x264 medium / main / yuv420p); see the module doc.

    Args:
        threads: x264 threads; 0 (the default) lets x264 choose from the
            core count, as the ``ffmpeg`` command line does.

    Example::

        anchor = H264Anchor()
        clip = anchor.encode(frames, fps=25, crf=28)
        clip.bitrate_kbps, clip.decoded.shape
    """

    name = "h264"
    rate_knob = "crf"

    def __init__(self, *, threads: int = 0) -> None:
        if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 0:
            raise ValueError(f"threads must be a non-negative int, got {threads!r}")
        self.threads: int = int(threads)

    def encode(
        self, frames: np.ndarray, fps: float, *, crf: int | None = None, qp: int | None = None
    ) -> EncodedClip:
        """Encode RGB frames at one CRF or one constant QP and decode them back.

        Args:
            frames: ``(T, H, W, 3)`` ``uint8`` RGB, ``H`` and ``W`` even
                (4:2:0 chroma).
            fps: frame rate; it sets the duration ``T / fps`` used for the
                bitrate, and the timing x264 writes into the stream (as a
                fraction with a denominator of at most 1001).
            crf: x264 constant rate factor, an int in 1..51 (lower is better
                quality and more bits). The default when neither ``crf`` nor
                ``qp`` is given is 23.
            qp: constant quantiser instead of CRF, an int in 1..51.

        Returns:
            The clip; ``params`` holds the preset, profile and ``crf`` or ``qp``.

        Raises:
            ValueError: invalid frames, fps, or rate parameters (both given,
                not an int, or outside 1..51).
            gfix_sdk.errors.VideoWriteError: x264 failed.
            gfix_sdk.errors.VideoReadError: the stream failed to decode.
        """
        if crf is not None and qp is not None:
            raise ValueError("give crf or qp, not both")
        if qp is not None:
            rate_params = {"qp": _check_rate_param(qp, "qp")}
        else:
            rate_params = {"crf": _check_rate_param(DEFAULT_CRF if crf is None else crf, "crf")}
        prepared = _prepare(frames, fps)
        return self._finish(prepared, self._encode_packets(prepared, rate_params), rate_params)

    def encode_at_bitrate(self, frames: np.ndarray, fps: float, target_kbps: float) -> EncodedClip:
        """Encode at the integer CRF whose bitrate is closest to ``target_kbps``.

        Bisection over CRF 1..51 relies on x264's rate being non-increasing
        in CRF, which holds in practice (a higher CRF quantises more
        coarsely). It takes about 7 encodes and never repeats one; only the
        chosen one is decoded. "Closest" is in ratio (``|log(rate /
        target)|``). There is no further tolerance parameter: the result is
        as close as integer CRF allows. Adjacent CRFs differ by roughly
        8-16 % in rate at moderate CRFs (measured 8-12 % at 160x90 and
        13-16 % at 320x180 on the bundled clip; less near CRF 51, where
        headers dominate), so a target within the achievable range is hit
        within about half a step, i.e. some 4-8 %. A target above the CRF 1
        rate gives CRF 1, one below the CRF 51 rate gives CRF 51: check
        ``bitrate_kbps``.

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
        prepared = _prepare(frames, fps)
        duration_s = len(prepared.planes) / prepared.fps
        streams: dict[int, list[av.Packet]] = {}

        def kbps(crf: int) -> float:
            streams[crf] = self._encode_packets(prepared, {"crf": crf})
            return 8.0 * _size(streams[crf]) / duration_s / 1000.0

        crf, _ = closest_setting(kbps, float(target_kbps), MIN_RATE_PARAM, MAX_RATE_PARAM)
        return self._finish(prepared, streams[crf], {"crf": crf})

    def rate_points(self, count: int, width: int = 0, height: int = 0) -> list[RateValue]:
        """``count`` CRFs for an evaluation sweep, lowest rate (highest CRF) first.

        Evenly spaced over CRF 42..22 (rounded; the size does not matter),
        or over the whole 51..1 range when more than 21 points are asked for.
        Part of :class:`~gfix_sdk.anchors.RatePointCodec`.

        Raises:
            ValueError: ``count`` not a positive int, or above 51.
        """
        count = check_point_count(count)
        if count > MAX_RATE_PARAM:
            raise ValueError(f"x264 has only {MAX_RATE_PARAM} CRF values, {count} points were asked for")
        high, low = EVAL_CRF_RANGE if count <= EVAL_CRF_RANGE[0] - EVAL_CRF_RANGE[1] + 1 else (
            MAX_RATE_PARAM, MIN_RATE_PARAM)
        if count == 1:
            return [round((high + low) / 2)]
        return [round(high - i * (high - low) / (count - 1)) for i in range(count)]

    def encode_point(self, frames: np.ndarray, fps: float, value: RateValue) -> EncodedClip:
        """:meth:`encode` at ``crf=value`` (the :class:`~gfix_sdk.anchors.RatePointCodec` entry)."""
        return self.encode(frames, fps, crf=value)  # type: ignore[arg-type]

    def _encode_packets(self, prepared: _Prepared, rate_params: dict[str, int]) -> list[av.Packet]:
        """Run x264 over the prepared frames; return its packets in output order."""
        options = {"preset": PRESET, "profile": PROFILE}
        options.update({key: str(value) for key, value in rate_params.items()})
        try:
            ctx = av.CodecContext.create("libx264", "w")
            ctx.width, ctx.height, ctx.pix_fmt = prepared.width, prepared.height, PIX_FMT
            ctx.time_base = 1 / prepared.rate
            ctx.framerate = prepared.rate
            # Tags x264 writes into the VUI: what rgb_to_yuv420 produced.
            ctx.colorspace = Colorspace.ITU601
            ctx.color_range = ColorRange.MPEG
            # AUTO = frame threads in x264, as with the ffmpeg command line;
            # PyAV's default (SLICE) would turn on x264's sliced threads.
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
            raise VideoWriteError(f"x264 failed with options {options}: {exc}") from exc
        if not packets:
            raise VideoWriteError(f"x264 produced no output with options {options}")
        return packets

    def _finish(
        self, prepared: _Prepared, packets: list[av.Packet], rate_params: dict[str, int]
    ) -> EncodedClip:
        """Package the packets: Annex-B bytes, decoded frames, MP4 size."""
        data = b"".join(bytes(packet) for packet in packets)
        decoded = decode_annexb(data)
        if decoded.shape[0] != len(prepared.planes):
            raise VideoReadError(
                f"the H.264 stream decoded to {decoded.shape[0]} frames, "
                f"not the {len(prepared.planes)} encoded"
            )
        return EncodedClip(
            codec=self.name,
            data=data,
            num_bytes=_size(packets),
            decoded=decoded,
            fps=prepared.fps,
            container_bytes=_mp4_size(packets, prepared),
            params={"preset": PRESET, "profile": PROFILE, **rate_params},
        )


def decode_annexb(data: bytes) -> np.ndarray:
    """Decode an H.264 Annex-B stream to ``(T, H, W, 3)`` ``uint8`` RGB.

    Pictures are taken as ``yuv420p`` planes and converted by
    :func:`gfix_sdk.io.yuv420_to_rgb` (BT.601 limited range), whatever the
    stream's colour tags say.

    Raises:
        gfix_sdk.errors.VideoReadError: the data does not decode, holds no
            picture, or is not 8-bit 4:2:0.
    """
    frames: list[np.ndarray] = []
    try:
        with av.open(io.BytesIO(data), mode="r", format="h264") as container:
            for frame in container.decode(video=0):
                if frame.format.name != PIX_FMT:
                    raise VideoReadError(
                        f"the H.264 stream decodes to {frame.format.name}, not {PIX_FMT}"
                    )
                frames.append(yuv420_to_rgb(*frame_planes(frame)))
    except av.error.FFmpegError as exc:
        raise VideoReadError(f"cannot decode the H.264 stream: {exc}") from exc
    if not frames:
        raise VideoReadError("the H.264 stream holds no picture")
    return np.stack(frames)


def _check_rate_param(value: object, name: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not MIN_RATE_PARAM <= int(value) <= MAX_RATE_PARAM
    ):
        raise ValueError(
            f"{name} must be an int in {MIN_RATE_PARAM}..{MAX_RATE_PARAM} "
            f"(0 is lossless, which profile main cannot code), got {value!r}"
        )
    return int(value)


def _prepare(frames: np.ndarray, fps: float) -> _Prepared:
    """Validate the frames and fps, and convert every frame to YUV 4:2:0 once."""
    fps = check_fps(fps)
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a (T, H, W, 3) uint8 numpy array, got {type(frames)}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be a (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}"
        )
    count, height, width = frames.shape[:3]
    if count == 0 or height == 0 or width == 0:
        raise ValueError(f"frames must not be empty, got shape {frames.shape}")
    if height % 2 or width % 2:
        raise ValueError(
            f"H.264 with 4:2:0 chroma needs an even width and height, got {width}x{height}; "
            "crop or pad the frames"
        )
    # Encoders need a rational rate; 1001 keeps the NTSC rates (30000/1001) exact.
    rate = Fraction(fps).limit_denominator(1001)
    if rate == 0:
        raise ValueError(f"fps={fps} is too small to encode")
    planes = [rgb_to_yuv420(frame) for frame in frames]
    return _Prepared(planes=planes, width=width, height=height, fps=fps, rate=rate)


def _size(packets: list[av.Packet]) -> int:
    return sum(packet.size for packet in packets)


def _mp4_size(packets: list[av.Packet], prepared: _Prepared) -> int:
    """Bytes of an MP4 file holding these packets (muxed in memory)."""
    buffer = io.BytesIO()
    try:
        # bitexact: no random IDs or tool versions, so the size is reproducible.
        with av.open(buffer, mode="w", format="mp4", options={"fflags": "+bitexact"}) as out:
            stream = out.add_stream("h264", rate=prepared.rate)
            stream.width, stream.height = prepared.width, prepared.height
            stream.time_base = 1 / prepared.rate
            for packet in packets:
                # The MP4 muxer rewrites Annex-B to length-prefixed NAL units
                # and builds its avcC box from the first packet's SPS/PPS.
                copy = av.Packet(bytes(packet))
                copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
                copy.is_keyframe = packet.is_keyframe
                copy.stream = stream
                out.mux(copy)
    except av.error.FFmpegError as exc:
        raise VideoWriteError(f"cannot mux the H.264 stream into MP4: {exc}") from exc
    return len(buffer.getvalue())
