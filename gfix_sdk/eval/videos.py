"""The videos an evaluation runs on: paths, the bundled clip, or the UVG set.

Every input is anything :func:`gfix_sdk.io.open_video` reads (container
files, raw ``.yuv``, PNG folders), the word ``bundled`` (the shipped Big
Buck Bunny clip, 320x180, 16 frames) or, through :func:`uvg_videos`, the
seven UVG sequences. Raw ``.yuv`` files need a size: ``size=``, or a
``WxH`` in the file name (``clip_1280x720_50fps.yuv``; ``NNfps`` and
``10bit`` there are used too).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gfix_sdk.io.info import VideoInfo

BUNDLED = "bundled"
"""The word that names the shipped clip."""

_SIZE_IN_NAME = re.compile(r"(?<![0-9])(\d{2,5})x(\d{2,5})(?![0-9])")
_FPS_IN_NAME = re.compile(r"(?<![0-9.])(\d{1,3}(?:\.\d+)?)fps", re.IGNORECASE)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclass(frozen=True)
class VideoSpec:
    """One input video of an evaluation and how to read it.

    ``name`` labels its rows, plot and summary section; ``path`` is a file,
    a folder or :data:`BUNDLED`.
    """

    name: str
    path: str
    size: tuple[int, int] | None = None
    """``(width, height)`` of a raw ``.yuv`` file."""
    fps: float | None = None
    """Frame rate override (raw ``.yuv`` and PNG inputs default to 25)."""
    bit_depth: int = 8
    """Sample depth of a raw ``.yuv`` file."""

    def probe(self) -> VideoInfo:
        """Size and rate without decoding the frames."""
        if self.path == BUNDLED:
            from gfix_sdk.io import bundled_clip_path

            path: str | Path = bundled_clip_path()
        else:
            path = self.path
        from gfix_sdk.io import open_video

        with open_video(path, size=self.size, fps=self.fps, bit_depth=self.bit_depth, max_frames=1) as reader:
            info = reader.info
        width, height = info.width - info.width % 2, info.height - info.height % 2
        return replace(info, width=width, height=height)

    def load(self, max_frames: int | None) -> tuple[np.ndarray, VideoInfo]:
        """The first ``max_frames`` frames as ``(T, H, W, 3)`` ``uint8`` RGB.

        Frames of odd width or height lose their last column or row, so that
        4:2:0 codecs (x264) can code them.

        Raises:
            FileNotFoundError, ValueError, gfix_sdk.errors.VideoReadError: as
                :func:`gfix_sdk.io.read_video`; ValueError for a video without frames.
        """
        if self.path == BUNDLED:
            from gfix_sdk.io import load_bundled_clip

            frames, info = load_bundled_clip(max_frames=max_frames)
        else:
            from gfix_sdk.io import read_video

            frames, info = read_video(self.path, size=self.size, fps=self.fps, bit_depth=self.bit_depth,
                                      max_frames=max_frames)
        if len(frames) == 0:
            raise ValueError(f"{self.path} holds no frames")
        height, width = frames.shape[1] - frames.shape[1] % 2, frames.shape[2] - frames.shape[2] % 2
        if (height, width) != frames.shape[1:3]:
            frames = np.ascontiguousarray(frames[:, :height, :width])
        return frames, replace(info, width=width, height=height, num_frames=len(frames))


def _raw_yuv_options(path: str, size: tuple[int, int] | None, fps: float | None) -> tuple[
        tuple[int, int] | None, float | None, int]:
    """Size, fps and bit depth of a raw .yuv file: given, else from its name."""
    name = Path(path).name
    bit_depth = 10 if re.search(r"10[-_]?bit", name, re.IGNORECASE) else 8
    if size is None:
        match = _SIZE_IN_NAME.search(name)
        if match is None:
            raise ValueError(
                f"{path} is raw YUV without a header and its name has no WxH; pass the size "
                "(--size 1920x1080 / size=(1920, 1080))"
            )
        size = (int(match.group(1)), int(match.group(2)))
    if fps is None:
        match = _FPS_IN_NAME.search(name)
        fps = float(match.group(1)) if match else None
    return size, fps, bit_depth


def video_spec(
    item: str | os.PathLike[str] | VideoSpec,
    *,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    name: str | None = None,
) -> VideoSpec:
    """A :class:`VideoSpec` for a path, :data:`BUNDLED`, or an existing spec (returned as is).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: a raw ``.yuv`` file whose size is neither given nor in its name.
    """
    if isinstance(item, VideoSpec):
        return item
    text = os.fspath(item)
    if text == BUNDLED:
        return VideoSpec(name=name or BUNDLED, path=BUNDLED, fps=fps)
    path = Path(text).expanduser()
    if not path.exists():
        from gfix_sdk.io._png import looks_like_glob

        if looks_like_glob(str(path)):  # a PNG sequence given as a pattern ("shots/*.png")
            return VideoSpec(name=name or path.parent.name or "frames", path=str(path), fps=fps)
        raise FileNotFoundError(f"no such video: {text} (use the word '{BUNDLED}' for the shipped clip)")
    label = name or (path.name if path.is_dir() else path.stem)
    if path.is_file() and path.suffix.lower() == ".yuv":
        size, fps, depth = _raw_yuv_options(str(path), size, fps)
        return VideoSpec(name=label, path=str(path), size=size, fps=fps, bit_depth=depth)
    return VideoSpec(name=label, path=str(path), fps=fps)


def uvg_videos(folder: str | os.PathLike[str], names: list[str] | None = None) -> list[VideoSpec]:
    """The UVG sequences found in ``folder`` (all seven by default) as specs.

    Raises:
        FileNotFoundError: the folder or a sequence is missing (see
            :func:`gfix_sdk.io.uvg.find_uvg`).
    """
    from gfix_sdk.io.uvg import FPS, HEIGHT, WIDTH, find_uvg

    return [VideoSpec(name=name, path=str(path), size=(WIDTH, HEIGHT), fps=FPS)
            for name, path in find_uvg(folder, names).items()]


def unique_names(specs: Sequence[VideoSpec]) -> list[VideoSpec]:
    """The specs with file-safe, unique names (``clip``, ``clip-2``, ...)."""
    taken: set[str] = set()
    out = []
    for spec in specs:
        base = _UNSAFE.sub("_", spec.name).strip("._") or "video"
        label, number = base, 1
        while label in taken:
            number += 1
            label = f"{base}-{number}"
        taken.add(label)
        out.append(replace(spec, name=label))
    return out
