"""Our Gaussian video codec (GSVC-style, no enhancer) as an evaluation anchor.

Rate knob: Gaussians per frame. Each rate point is a complete ``.gfix``
encode (:func:`gfix_sdk.encoder.encode_frames` with a preset of
:data:`gfix_sdk.gaussians.sequence.PRESETS` and the point's Gaussian count),
decoded back with :class:`gfix_sdk.runtime.Decoder`. Rate counts the whole
file (header, index and checksums included): ``EncodedClip.data`` is the
file, ``num_bytes`` its size.

Default rate points scale with the frame area: Gaussian counts spaced
geometrically from one per 57.6 pixels to one per 7.2 pixels (1000, 2000,
4000, 8000 at 320x180, as in ``python -m gfix_sdk.bench rd``; 36k..288k at
1080p), rounded to two significant digits.
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gfix_sdk.anchors.base import EncodedClip, RateValue, check_frames, check_point_count
from gfix_sdk.anchors.ratesearch import closest_setting
from gfix_sdk.io._checks import check_fps

if TYPE_CHECKING:
    from gfix_sdk.encoder import EncodeReport
    from gfix_sdk.enhance.pipeline import EnhanceSettings
    from gfix_sdk.gaussians.sequence import SequenceConfig

# Gaussians per pixel at the ends of the default sweep (1000 and 8000 at 320x180).
DENSITY_RANGE = (1.0 / 57.6, 1.0 / 7.2)
MIN_GAUSSIANS = 16
# encode_at_bitrate searches Gaussian counts on this geometric ladder.
_LADDER_STEP = 2.0**0.25


def positive_int(value: object, name: str) -> int:
    """``value`` as a positive int; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _two_digits(value: float) -> int:
    """``value`` rounded to two significant digits (at least MIN_GAUSSIANS)."""
    if value <= MIN_GAUSSIANS:
        return MIN_GAUSSIANS
    scale = 10 ** max(0, int(math.floor(math.log10(value))) - 1)
    return max(MIN_GAUSSIANS, int(round(value / scale)) * scale)


def default_gaussian_points(count: int, width: int, height: int) -> list[int]:
    """``count`` Gaussian counts for ``width x height`` frames, fewest first (see the module doc)."""
    count = check_point_count(count)
    pixels = int(width) * int(height)
    if pixels <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    low, high = (pixels * d for d in DENSITY_RANGE)
    if count == 1:
        return [_two_digits(math.sqrt(low * high))]
    points = [_two_digits(low * (high / low) ** (i / (count - 1))) for i in range(count)]
    if len(set(points)) != count:
        raise ValueError(f"{width}x{height} frames are too small for {count} distinct Gaussian counts")
    return points


def _ladder(width: int, height: int) -> list[int]:
    """Gaussian counts tried by encode_at_bitrate: MIN_GAUSSIANS up to one per 2 pixels."""
    top = max(MIN_GAUSSIANS, width * height // 2)
    values, n = [], float(MIN_GAUSSIANS)
    while n <= top:
        values.append(int(round(n)))
        n *= _LADDER_STEP
    return sorted(set(values))


def search_gaussians(
    encode: Callable[[int], EncodedClip], target_kbps: float, width: int, height: int
) -> EncodedClip:
    """The clip, among Gaussian counts on a geometric ladder, whose bitrate is closest to ``target_kbps``.

    Bitrate rises with the Gaussian count, so bisection over the ladder
    (steps of 2^(1/4)) needs about ``log2(len) + 1`` encodes, each a full
    encode of the clip.
    """
    if not (isinstance(target_kbps, numbers.Real) and math.isfinite(target_kbps) and target_kbps > 0):
        raise ValueError(f"target_kbps must be a positive finite number, got {target_kbps!r}")
    ladder = _ladder(width, height)
    clips: dict[int, EncodedClip] = {}

    def kbps(setting: int) -> float:
        # Settings run from the most Gaussians (index 0) down, so rate falls with the setting.
        n = ladder[len(ladder) - 1 - setting]
        clips[n] = encode(n)
        return clips[n].bitrate_kbps

    setting, _ = closest_setting(kbps, float(target_kbps), 0, len(ladder) - 1)
    return clips[ladder[len(ladder) - 1 - setting]]


def encode_gfix_file(
    frames: np.ndarray,
    fps: float,
    config: SequenceConfig,
    *,
    enhance: EnhanceSettings | None = None,
    base: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    backend: str = "torch",
    progress: bool = False,
) -> tuple[bytes, np.ndarray, EncodeReport]:
    """Encode ``frames`` into a temporary ``.gfix`` file and decode it back.

    ``backend`` is the decoder's enhancer backend (see
    :mod:`gfix_sdk.runtime.backends`); ``"torch"`` decodes exactly what the
    encoder evaluated.

    Returns:
        ``(file bytes, decoded (T, H, W, 3) uint8 frames, EncodeReport)``;
        the decoder enhances when the file has an enhancer (``base`` needed).
    """
    from gfix_sdk.encoder import encode_frames
    from gfix_sdk.runtime import Decoder

    frames = check_frames(frames)
    height, width = frames.shape[1:3]
    with tempfile.TemporaryDirectory(prefix="gfix-anchor-") as tmp:
        path = Path(tmp) / "clip.gfix"
        report = encode_frames(frames, path, width=width, height=height, fps=fps, config=config,
                               total=len(frames), progress=progress, enhance=enhance)
        data = path.read_bytes()
        with Decoder.open(path, base=base, enhance=enhance is not None, device=device,
                          backend=backend) as decoder:
            decoded = np.stack(list(decoder.frames()))
    return data, decoded, report


def resolve_preset(preset: str | SequenceConfig) -> tuple[str, SequenceConfig]:
    """``(name, SequenceConfig)`` of a preset name or a ``SequenceConfig``."""
    from gfix_sdk.gaussians.sequence import PRESETS, SequenceConfig

    if isinstance(preset, SequenceConfig):
        return "custom", preset
    if isinstance(preset, str) and preset in PRESETS:
        return preset, PRESETS[preset]
    raise ValueError(f"preset must be one of {sorted(PRESETS)} or a SequenceConfig, got {preset!r}")


class GaussianAnchor:
    """The Gaussian codec alone, swept over Gaussians per frame; see the module doc.

    Args:
        preset: ``"fast"``, ``"medium"`` (default) or ``"slow"``, or a
            :class:`~gfix_sdk.gaussians.sequence.SequenceConfig` (e.g. fewer
            fitting iterations for quick tests); its ``gaussians`` is
            replaced at each rate point.
        gop: maximum distance between key frames (None: the preset's, 16).
        device: where the decoder renders (``"cpu"`` or ``"cuda"``).
        progress: show the encoder's progress bar.

    Example::

        anchor = GaussianAnchor(preset="fast")
        clip = anchor.encode(frames, fps=25, gaussians=2000)
        clip.bitrate_kbps, clip.decoded.shape
    """

    name = "gs"
    rate_knob = "gaussians"

    def __init__(self, *, preset: str | SequenceConfig = "medium", gop: int | None = None,
                 device: str = "cpu", progress: bool = False) -> None:
        self.preset_name, config = resolve_preset(preset)
        if gop is not None:
            config = replace(config, gop=positive_int(gop, "gop"))
        self.config: SequenceConfig = config
        self.device = device
        self.progress = bool(progress)

    def config_for(self, gaussians: int) -> SequenceConfig:
        """The :class:`SequenceConfig` of one rate point."""
        return replace(self.config, gaussians=positive_int(gaussians, "gaussians"))

    def encode(self, frames: np.ndarray, fps: float, *, gaussians: int) -> EncodedClip:
        """Encode at ``gaussians`` per frame and decode back (rate: the whole ``.gfix`` file).

        Raises:
            ValueError: invalid frames, fps or Gaussian count.
        """
        config = self.config_for(gaussians)
        fps = check_fps(fps)
        data, decoded, _ = encode_gfix_file(frames, fps, config, device=self.device, progress=self.progress)
        return EncodedClip(
            codec=self.name, data=data, num_bytes=len(data), decoded=decoded,
            fps=fps,
            params={"gaussians": int(gaussians), "preset": self.preset_name, "gop": int(config.gop)},
        )

    def rate_points(self, count: int, width: int, height: int) -> list[RateValue]:
        """Default Gaussian counts for ``width x height`` (see the module doc), fewest first."""
        return list(default_gaussian_points(count, width, height))

    def encode_point(self, frames: np.ndarray, fps: float, value: RateValue) -> EncodedClip:
        """:meth:`encode` at ``gaussians=value`` (the :class:`~gfix_sdk.anchors.RatePointCodec` entry)."""
        return self.encode(frames, fps, gaussians=value)  # type: ignore[arg-type]

    def encode_at_bitrate(self, frames: np.ndarray, fps: float, target_kbps: float) -> EncodedClip:
        """Encode at the Gaussian count (on a 2^(1/4) ladder) whose bitrate is closest to the target.

        About ``log2(ladder length) + 1`` full encodes (8-10 for 320x180
        to 1080p): slow; prefer :meth:`encode` with a chosen count.
        """
        frames = check_frames(frames)
        height, width = frames.shape[1:3]
        return search_gaussians(lambda n: self.encode(frames, fps, gaussians=n), target_kbps, width, height)
