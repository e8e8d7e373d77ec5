"""Writing RGB frames to video files or PNG sequences: ``write_video``.

Every output is written next to its destination under a hidden temporary
name and moved into place only once complete, so a failure (a bad frame, an
exception in the caller's generator, a full disk) never leaves a
half-written video, nor the temporary file, behind.
"""

from __future__ import annotations

import contextlib
import itertools
import numbers
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from gfix_sdk._fs import temp_sibling
from gfix_sdk.errors import VideoWriteError
from gfix_sdk.io._av import yuv420_frame
from gfix_sdk.io._checks import check_fps
from gfix_sdk.io._png import PngEncoder
from gfix_sdk.io.yuv import rgb_to_yuv420

MAX_CRF = 51  # x264's ceiling for 8-bit output
PNG_NAME = "frame_{:05d}.png"
_PNG_NAME_RE = re.compile(r"frame_\d+\.png")
# Container flags that drop random IDs and tool versions: same input, same bytes.
_BITEXACT = {"fflags": "+bitexact"}


def _rgb_frame(rgb: np.ndarray) -> av.VideoFrame:
    # The encoder reformats rgb24 to its own RGB layout (e.g. bgr0), a pure
    # channel shuffle, so the round trip stays bit-exact.
    return av.VideoFrame.from_ndarray(rgb, format="rgb24")


def _yuv420_frame(rgb: np.ndarray) -> av.VideoFrame:
    # Convert with our own BT.601 matrix and box-filtered chroma rather than
    # swscale's, so writers and the raw-YUV reader agree exactly.
    height, width = rgb.shape[:2]
    return yuv420_frame(rgb_to_yuv420(rgb), width, height)


@dataclass(frozen=True)
class _Encoding:
    """How one kind of output file is muxed and encoded."""

    format: str
    codec: str
    pix_fmt: str
    options: dict[str, str] = field(default_factory=dict)
    even_size: bool = False
    """4:2:0 H.264 cannot encode odd widths or heights."""
    bt601_tags: bool = False
    """Tag the stream as BT.601 limited range (what ``rgb_to_yuv420`` makes)."""
    to_frame: Callable[[np.ndarray], av.VideoFrame] = _rgb_frame
    """Turns one checked RGB frame into what the encoder takes."""


def _encoding(suffix: str, *, lossless: bool, crf: int) -> _Encoding:
    container = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
    if suffix == ".y4m":
        if lossless:
            raise ValueError(
                ".y4m stores YUV 4:2:0, which cannot hold RGB losslessly; use "
                ".mkv, .mp4 or a PNG folder with lossless=True"
            )
        return _Encoding(
            "yuv4mpegpipe", "rawvideo", "yuv420p", bt601_tags=True, to_frame=_yuv420_frame
        )
    if suffix not in container:
        raise ValueError(
            f"cannot write {suffix!r} files: use .mp4, .mkv, .mov, .y4m, or a path "
            "without suffix (or an existing directory) for a PNG sequence"
        )
    if lossless and suffix == ".mkv":
        return _Encoding("matroska", "ffv1", "bgr0", {"level": "3"})
    if lossless:
        # libx264rgb at qp 0 codes the RGB planes themselves: no YUV rounding.
        return _Encoding(container[suffix], "libx264rgb", "rgb24", {"qp": "0", "preset": "medium"})
    return _Encoding(
        container[suffix],
        "libx264",
        "yuv420p",
        {"crf": str(crf), "preset": "medium"},
        even_size=True,
        bt601_tags=True,
        to_frame=_yuv420_frame,
    )


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    *,
    fps: float,
    lossless: bool = False,
    crf: int = 18,
) -> int:
    """Write ``(H, W, 3)`` ``uint8`` RGB frames to ``path``; return how many.

    The output kind follows the path:

    * ``.mp4`` / ``.mkv`` / ``.mov``: H.264 (libx264, yuv420p, preset medium,
      the given ``crf``), BT.601 limited range; width and height must be even.
      With ``lossless=True``: ``.mkv`` is FFV1 ``bgr0`` and ``.mp4`` / ``.mov``
      libx264rgb at ``qp=0``, both bit-exact RGB.
    * ``.y4m``: raw yuv420p in a YUV4MPEG2 stream.
    * no suffix, or an existing directory: PNG files ``frame_00000.png``, …
      (always lossless; names sort correctly up to 100000 frames). An existing
      directory is replaced only if it is empty or holds such frames alone.

    ``frames`` is consumed once, one frame at a time; a ``(T, H, W, 3)`` array
    works too. The output appears only when every frame was written.

    Args:
        path: destination file or directory; its parent must exist.
        frames: RGB frames, all of one size.
        fps: frame rate, a positive number (rounded to a fraction with a
            denominator of at most 1001, which keeps 30000/1001 exact).
        lossless: bit-exact RGB output (see above).
        crf: x264 constant rate factor, 0..51, for lossy H.264 only.

    Raises:
        ValueError: an invalid option, an unsupported suffix, no frames, or a
            frame of the wrong type, shape or size (the message names its index).
        gfix_sdk.errors.VideoWriteError: the output cannot be written.
    """
    fps = check_fps(fps)
    if not isinstance(lossless, bool):
        raise ValueError(f"lossless must be a bool, got {lossless!r}")
    if isinstance(crf, bool) or not isinstance(crf, numbers.Integral) or not 0 <= crf <= MAX_CRF:
        raise ValueError(f"crf must be an int in 0..{MAX_CRF}, got {crf!r}")
    target = Path(path)
    if not target.parent.is_dir():
        raise VideoWriteError(f"cannot write {target}: {target.parent} is not a directory")

    if target.is_dir() or target.suffix == "":
        _check_replaceable(target)
        return _write_png_sequence(target, frames)
    encoding = _encoding(target.suffix.lower(), lossless=lossless, crf=crf)
    if target.exists() and not target.is_file():
        raise VideoWriteError(f"cannot write {target}: it exists and is not a file")
    return _write_container(target, frames, encoding, _frame_rate(fps))


def _frame_rate(fps: float) -> Fraction:
    # Muxers need a rational rate; 1001 keeps the NTSC rates (30000/1001) exact.
    rate = Fraction(fps).limit_denominator(1001)
    if rate == 0:
        raise ValueError(f"fps={fps} is too small to write")
    return rate


def _checked_frames(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Yield the frames, raising ValueError at the first one that is not
    ``(H, W, 3)`` ``uint8`` of the first frame's size."""
    shape: tuple[int, ...] | None = None
    for index, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray):
            raise ValueError(f"frame {index} is a {type(frame).__name__}, not a numpy array")
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(
                f"frame {index} must be a (H, W, 3) uint8 array, got shape "
                f"{frame.shape} and dtype {frame.dtype}"
            )
        if shape is None:
            if frame.shape[0] == 0 or frame.shape[1] == 0:
                raise ValueError(f"frame {index} is empty: shape {frame.shape}")
            shape = frame.shape
        elif frame.shape != shape:
            raise ValueError(
                f"frame {index} is {frame.shape[1]}x{frame.shape[0]} but frame 0 is "
                f"{shape[1]}x{shape[0]}; all frames must have one size"
            )
        yield np.ascontiguousarray(frame)


def _write_container(
    target: Path, frames: Iterable[np.ndarray], encoding: _Encoding, rate: Fraction
) -> int:
    checked = _checked_frames(frames)
    # Validate the first frame before creating any file.
    first = next(checked, None)
    if first is None:
        raise ValueError(f"no frames to write to {target}")
    height, width = first.shape[:2]
    if encoding.even_size and (width % 2 or height % 2):
        raise ValueError(
            f"H.264 with 4:2:0 chroma needs an even width and height, got {width}x{height}; "
            "crop or pad the frames, or use lossless=True / a PNG folder"
        )

    temp = temp_sibling(target)
    container = None
    try:
        container = av.open(str(temp), mode="w", format=encoding.format, options=_BITEXACT)
        stream = container.add_stream(encoding.codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, encoding.pix_fmt
        stream.options = dict(encoding.options)
        # PyAV defaults to slice threads, which make x264 split every frame
        # into slices (more bits than the ffmpeg CLI's frame threads).
        stream.codec_context.thread_type = "AUTO"
        if encoding.bt601_tags:
            stream.codec_context.colorspace = Colorspace.ITU601
            stream.codec_context.color_range = ColorRange.MPEG
        count = 0
        for rgb in itertools.chain((first,), checked):
            frame = encoding.to_frame(rgb)
            frame.pts = count
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
            count += 1
        container.mux(stream.encode(None))
        container.close()
        container = None
        _replace(temp, target)
    except av.error.FFmpegError as exc:
        _discard(container, temp)
        raise VideoWriteError(f"cannot write {target}: {exc}") from exc
    except BaseException:
        _discard(container, temp)
        raise
    return count


def _write_png_sequence(target: Path, frames: Iterable[np.ndarray]) -> int:
    temp = temp_sibling(target)
    try:
        temp.mkdir()
    except OSError as exc:
        raise VideoWriteError(f"cannot write {target}: {exc}") from exc
    try:
        encoder: PngEncoder | None = None
        count = 0
        for rgb in _checked_frames(frames):
            if encoder is None:
                encoder = PngEncoder(rgb.shape[1], rgb.shape[0])
            _write_file(temp / PNG_NAME.format(count), encoder.encode(rgb))
            count += 1
        if count == 0:
            raise ValueError(f"no frames to write to {target}")
        _install_directory(temp, target)
    except av.error.FFmpegError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise VideoWriteError(f"cannot write {target}: {exc}") from exc
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return count


def _write_file(path: Path, data: bytes) -> None:
    # Wrap only our own I/O errors; an OSError from the caller's frame
    # generator must reach the caller unchanged.
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise VideoWriteError(f"cannot write {path}: {exc}") from exc


def _check_replaceable(target: Path) -> None:
    """Refuse to replace anything but an empty directory or an old PNG sequence."""
    if not target.exists():
        return
    if not target.is_dir():
        raise VideoWriteError(
            f"cannot write a PNG sequence to {target}: it exists and is not a directory"
        )
    foreign = [p.name for p in target.iterdir() if not _PNG_NAME_RE.fullmatch(p.name)]
    if foreign:
        raise VideoWriteError(
            f"refusing to replace {target}: it holds files other than frame_NNNNN.png "
            f"(e.g. {sorted(foreign)[0]!r})"
        )


def _install_directory(temp: Path, target: Path) -> None:
    """Move the finished sequence ``temp`` to ``target``, replacing an old one."""
    try:
        if not target.exists():
            os.replace(temp, target)
            return
        # Directories cannot be swapped atomically: park the old one, move the
        # new one in, then delete the old one.
        old = temp_sibling(target)
        os.replace(target, old)
        try:
            os.replace(temp, target)
        except OSError:
            os.replace(old, target)  # put the old sequence back
            raise
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise VideoWriteError(f"cannot move the PNG sequence into {target}: {exc}") from exc


def _replace(temp: Path, target: Path) -> None:
    try:
        os.replace(temp, target)
    except OSError as exc:
        raise VideoWriteError(f"cannot move the finished video to {target}: {exc}") from exc


def _discard(container: av.container.OutputContainer | None, temp: Path) -> None:
    """Best-effort clean-up after a failure: the original error matters more."""
    if container is not None:
        # Closing a broken output may fail too; that error would hide the first.
        with contextlib.suppress(Exception):
            container.close()
    with contextlib.suppress(OSError):
        temp.unlink(missing_ok=True)



def write_png(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write one ``(H, W, 3)`` ``uint8`` RGB image as a PNG file, atomically."""
    target = Path(path)
    rgb = next(_checked_frames([image]))
    data = PngEncoder(rgb.shape[1], rgb.shape[0]).encode(rgb)
    temp = temp_sibling(target)
    try:
        _write_file(temp, data)
        _replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        raise
    return target
