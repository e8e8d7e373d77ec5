"""The UVG test set: finding and reading its seven 1080p sequences.

UVG (Mercat et al., MMSys 2020; https://ultravideo.fi) is the data set the
GFix paper evaluates on: the seven original 1920x1080 sequences, 8-bit
YUV 4:2:0, of which the first 96 frames each are coded (672 frames), after
conversion from YUV 4:2:0 to RGB 4:4:4 with BT.601 (what
:func:`gfix_sdk.io.open_video` does for raw ``.yuv``: limited range,
chroma upsampled by pixel replication).

==============  =======  ======  =================================================
sequence        frames   fps     usual file name (inside ``<name>_..._RAW.7z``)
==============  =======  ======  =================================================
Beauty          600      120     ``Beauty_1920x1080_120fps_420_8bit_YUV.yuv``
Bosphorus       600      120     ``Bosphorus_1920x1080_120fps_420_8bit_YUV.yuv``
HoneyBee        600      120     ``HoneyBee_1920x1080_120fps_420_8bit_YUV.yuv``
Jockey          600      120     ``Jockey_1920x1080_120fps_420_8bit_YUV.yuv``
ReadySetGo      600      120     ``ReadySteadyGo_1920x1080_120fps_420_8bit_YUV.yuv``
ShakeNDry       300      120     ``ShakeNDry_1920x1080_120fps_420_8bit_YUV.yuv``
YachtRide       600      120     ``YachtRide_1920x1080_120fps_420_8bit_YUV.yuv``
==============  =======  ======  =================================================

All seven are 120 fps; ShakeNDry is the short one (300 frames, 2.5 s). UVG
names the fifth sequence ``ReadySteadyGo``; papers (GFix's included) often
write ReadySetGo. The report uses the names in the first column.

File names
----------
:func:`find_uvg` looks in the folder and its immediate sub-folders (where
the 7z archives extract to) for ``.yuv`` files whose name starts with a
sequence name, case-insensitively and with any of ``_ - . space`` between
words: ``Beauty_1920x1080_120fps_420_8bit_YUV.yuv``,
``beauty_1920x1080_120.yuv``, ``Beauty.yuv``, ``HoneyBee_1080p.yuv``,
``Ready_Steady_Go.yuv``, ``ReadySetGo_1920x1080.yuv``... Files of another
resolution (a ``WxH`` other than 1920x1080, or ``4k``/``2160p``) or another
bit depth (``10bit``) are skipped, and the message for a missing sequence
mentions them. When two files match one sequence, the one whose name carries
``1920x1080`` and ``8bit`` wins; a remaining tie is an error.

The paper's protocol
--------------------
On a machine with a GPU, SD-Turbo (``huggingface-cli download
stabilityai/sd-turbo --local-dir ~/models/sd-turbo``), LPIPS weights
(``python -m gfix_sdk.perceptual.convert --net alex --out lpips_alex.pt``)
and pytorch-fid's Inception weights (see :mod:`gfix_sdk.metrics.inception`)::

    gfix eval --uvg ~/data/UVG --frames 96 --anchors h264,gs,gfix --points 4 \\
        --base ~/models/sd-turbo --lpips lpips_alex.pt \\
        --fid-weights pt_inception-2015-12-05-6726825d.pth --out uvg-eval

(GFix with the paper's enhancer settings: 2,000 steps, lr 0.05, 512-pixel
patches; the report has BD-rates of every codec against every anchor in
PSNR, MS-SSIM, LPIPS, FID and VMAF, per sequence and averaged, as in the
paper's Fig. 4).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gfix_sdk.io.frames import VideoReader, open_video, read_video
from gfix_sdk.io.info import VideoInfo

WIDTH, HEIGHT = 1920, 1080
FPS = 120.0
PAPER_FRAMES = 96
"""Frames per sequence in the GFix protocol (the first 96)."""


@dataclass(frozen=True)
class UvgSequence:
    """One UVG sequence: its name, how its files are named, and its length."""

    name: str
    """The name reports use (e.g. ``"ReadySetGo"``)."""
    file_name: str
    """The name of the 8-bit 1080p file in UVG's archive."""
    aliases: tuple[str, ...]
    """Lower-case spellings without separators that a file name may start with."""
    num_frames: int
    """Frames in the full sequence."""
    fps: float = FPS
    width: int = WIDTH
    height: int = HEIGHT


def _seq(name: str, official: str, frames: int, *extra: str) -> UvgSequence:
    aliases = tuple(dict.fromkeys([name.lower(), official.lower(), *extra]))
    return UvgSequence(name=name, file_name=f"{official}_1920x1080_120fps_420_8bit_YUV.yuv",
                       aliases=aliases, num_frames=frames)


UVG_SEQUENCES: tuple[UvgSequence, ...] = (
    _seq("Beauty", "Beauty", 600),
    _seq("Bosphorus", "Bosphorus", 600),
    _seq("HoneyBee", "HoneyBee", 600),
    _seq("Jockey", "Jockey", 600),
    _seq("ReadySetGo", "ReadySteadyGo", 600),
    _seq("ShakeNDry", "ShakeNDry", 300, "shakeanddry"),
    _seq("YachtRide", "YachtRide", 600),
)
"""The seven 1080p sequences of the GFix paper, in UVG's order."""

_BY_NAME = {s.name.lower(): s for s in UVG_SEQUENCES}
_SEPARATORS = re.compile(r"[_\-.\s]+")
_RESOLUTION = re.compile(r"^(\d+)x(\d+)$")
_OTHER_SIZE = {"4k", "2160p", "uhd", "720p", "3840x2160", "4096x2160"}


def uvg_sequence(name: str) -> UvgSequence:
    """The :class:`UvgSequence` called ``name`` (any case; ``ReadySteadyGo`` works too).

    Raises:
        ValueError: not one of the seven.
    """
    key = _SEPARATORS.sub("", str(name)).lower()
    for seq in UVG_SEQUENCES:
        if key in seq.aliases:
            return seq
    raise ValueError(f"unknown UVG sequence {name!r}; expected one of {[s.name for s in UVG_SEQUENCES]}")


def _classify(path: Path) -> tuple[UvgSequence | None, str | None]:
    """Which sequence a file name is, and why it is unusable (None if usable)."""
    name = path.name.lower()
    if not name.endswith(".yuv"):
        return None, None
    tokens = [t for t in _SEPARATORS.split(name[: -len(".yuv")]) if t]
    seq = None
    for k in range(1, len(tokens) + 1):
        joined = "".join(tokens[:k])
        seq = next((s for s in UVG_SEQUENCES if joined in s.aliases), None)
        if seq is not None:
            break
    if seq is None:
        return None, None
    for token in tokens:
        size = _RESOLUTION.match(token)
        if (size and (int(size.group(1)), int(size.group(2))) != (WIDTH, HEIGHT)) or token in _OTHER_SIZE:
            return seq, f"{path.name} (not 1920x1080)"
        if re.fullmatch(r"(1[0-6]|9)bits?", token):
            return seq, f"{path.name} (not 8-bit)"
    return seq, None


def _preference(path: Path) -> int:
    name = path.name.lower()
    return int("1920x1080" in name) + int("8bit" in name)


def find_uvg(folder: str | os.PathLike[str], names: list[str] | None = None) -> dict[str, Path]:
    """Locate UVG sequences in ``folder`` (and its immediate sub-folders).

    Args:
        folder: where the ``.yuv`` files are.
        names: sequences to find (default: all seven), by :data:`UVG_SEQUENCES` name.

    Returns:
        ``{name: path}`` in UVG's order.

    Raises:
        FileNotFoundError: the folder does not exist, or a sequence is
            missing (the message lists the missing ones, the file names
            expected, and any skipped 4K/10-bit files).
        ValueError: an unknown sequence name, or two equally good files for
            one sequence.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"UVG folder {root} does not exist (it should hold the seven 1080p 8-bit .yuv files, "
            f"e.g. {UVG_SEQUENCES[0].file_name})"
        )
    wanted = [uvg_sequence(n) for n in names] if names is not None else list(UVG_SEQUENCES)
    candidates = sorted(p for p in root.glob("*.yuv") if p.is_file())
    candidates += sorted(p for p in root.glob("*/*.yuv") if p.is_file())
    found: dict[str, list[Path]] = {}
    skipped: dict[str, list[str]] = {}
    for path in candidates:
        seq, problem = _classify(path)
        if seq is None:
            continue
        if problem:
            skipped.setdefault(seq.name, []).append(problem)
        else:
            found.setdefault(seq.name, []).append(path)

    result: dict[str, Path] = {}
    missing: list[str] = []
    for seq in wanted:
        paths = found.get(seq.name, [])
        if not paths:
            note = f"; skipped {', '.join(skipped[seq.name])}" if seq.name in skipped else ""
            missing.append(f"{seq.name} (e.g. {seq.file_name}{note})")
            continue
        best = max(_preference(p) for p in paths)
        top = [p for p in paths if _preference(p) == best]
        if len(top) > 1:
            raise ValueError(
                f"several files in {root} could be UVG {seq.name}: {[str(p) for p in top]}; keep one "
                "or rename the others"
            )
        result[seq.name] = top[0]
    if missing:
        raise FileNotFoundError(f"UVG sequence(s) missing from {root}: " + "; ".join(missing))
    return result


def open_uvg(path: str | os.PathLike[str], name: str | None = None, *, frames: int | None = PAPER_FRAMES) -> VideoReader:
    """Open one UVG ``.yuv`` file (1920x1080, 8-bit, 120 fps) for streaming RGB frames.

    Args:
        path: the file, or the UVG folder when ``name`` is given.
        name: the sequence to find in the folder ``path``.
        frames: read the first ``frames`` (96 in the paper); None reads all.

    Raises:
        FileNotFoundError, ValueError: as :func:`find_uvg`.
        gfix_sdk.errors.VideoReadError: the file is empty or not a whole
            number of 1080p frames.
    """
    file = find_uvg(path, [name])[uvg_sequence(name).name] if name is not None else Path(path)
    return open_video(file, size=(WIDTH, HEIGHT), fps=FPS, max_frames=frames)


def load_uvg(folder: str | os.PathLike[str], name: str, *, frames: int | None = PAPER_FRAMES) -> tuple[np.ndarray, VideoInfo]:
    """Read the first ``frames`` of UVG sequence ``name`` from ``folder`` as ``(T, 1080, 1920, 3)`` RGB."""
    file = find_uvg(folder, [name])[uvg_sequence(name).name]
    return read_video(file, size=(WIDTH, HEIGHT), fps=FPS, max_frames=frames)
