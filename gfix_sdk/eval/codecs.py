"""Building the codecs of an evaluation from names or objects.

Built-in names: ``h264`` (:class:`~gfix_sdk.anchors.H264Anchor`, x264
medium), ``h265`` (:class:`~gfix_sdk.anchors.H265Anchor`, x265 medium) and
``av1`` (:class:`~gfix_sdk.anchors.AV1Anchor`, SVT-AV1 preset 8), each on
one thread so that bytes are reproducible, ``gs`` (our Gaussian codec,
:class:`~gfix_sdk.anchors.GaussianAnchor`) and ``gfix`` (Gaussian codec +
enhancer, :class:`~gfix_sdk.anchors.GFixAnchor`). ``module:attribute`` imports
a codec of your own (a class is instantiated without arguments; an instance
is used as is); objects following
:class:`~gfix_sdk.anchors.RatePointCodec` can be passed directly.

GFix's base model: ``base``, else ``$GFIX_BASE``, else the shipped tiny
stand-in, installed into the output folder and trained with its own
defaults (300 steps, 64-pixel patches, lr 0.005, lambda preset 2), with a
note in the report that its numbers say nothing about SD-Turbo's quality.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gfix_sdk.anchors.base import RatePointCodec

if TYPE_CHECKING:
    from gfix_sdk.gaussians.sequence import SequenceConfig

BUILTIN = ("h264", "h265", "av1", "gs", "gfix")
"""Codec names :func:`build_codec` knows."""
DEFAULT_ANCHORS = ("h264", "gs", "gfix")
"""Codecs of a report when none are named (``gfix eval`` without ``--anchors``)."""


@dataclass(frozen=True)
class CodecOptions:
    """Settings of the built-in codecs."""

    preset: str | SequenceConfig = "medium"
    """Gaussian codec preset (``gs`` and ``gfix``), or a SequenceConfig."""
    gop: int | None = None
    """Maximum key-frame distance of the Gaussian codec (None: 16)."""
    base: str | None = None
    """GFix base model directory (None: ``$GFIX_BASE``, else the tiny stand-in)."""
    gfix_steps: int | None = None
    """Adapter training steps (None: 2000, or 300 on the tiny stand-in)."""
    gfix_rate_point: int | None = None
    """Lambda preset 1..5 (None: 3, or 2 on the tiny stand-in)."""
    gfix_lr: float | None = None
    """Adapter learning rate (None: 0.05, or 0.005 on the tiny stand-in)."""
    gfix_patch: int | None = None
    """Training patch size (None: 512, or 64 on the tiny stand-in)."""
    gfix_lpips: str | None = None
    """LPIPS-VGG weights for GFix's training loss (None: L2 + MS-SSIM)."""
    device: str | None = None
    """Device of the enhancer and decoders (None: CUDA when available)."""
    h264_threads: int = 1
    """x264 threads (1: reproducible bytes; 0: x264's choice from the core count)."""
    h265_threads: int = 1
    """x265 thread-pool size (1: reproducible bytes; 0: x265's choice)."""
    av1_threads: int = 1
    """SVT-AV1 level of parallelism (0: SVT-AV1's choice)."""
    av1_preset: int = 8
    """SVT-AV1 preset, 0 (slowest, best) .. 13."""


def load_codec(spec: str) -> RatePointCodec:
    """Import ``module:attribute`` and return the codec it names.

    Raises:
        ValueError: a malformed spec, a missing module or attribute, or an
            object that does not follow :class:`~gfix_sdk.anchors.RatePointCodec`.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"a codec of your own is named 'module:attribute', got {spec!r}")
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} for codec {spec!r}: {exc}") from exc
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"{module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    codec = target() if isinstance(target, type) else target
    check_codec(codec, spec)
    return codec  # type: ignore[return-value]


def check_codec(codec: object, label: str) -> None:
    """Raise ValueError unless ``codec`` follows :class:`~gfix_sdk.anchors.RatePointCodec`."""
    if not isinstance(codec, RatePointCodec):
        needed = "name, rate_knob, rate_points(count, width, height), encode_point(frames, fps, value)"
        raise ValueError(f"codec {label!r} ({type(codec).__name__}) does not follow RatePointCodec: it needs {needed}")


def build_codec(item: str | RatePointCodec, options: CodecOptions, work_dir: Path) -> tuple[RatePointCodec, str | None]:
    """One codec, and a note for the report (e.g. that GFix runs on the tiny stand-in)."""
    if not isinstance(item, str):
        check_codec(item, getattr(item, "name", type(item).__name__))
        return item, None
    name = item.strip()
    if name == "h264":
        from gfix_sdk.anchors import H264Anchor

        return H264Anchor(threads=options.h264_threads), None
    if name == "h265":
        from gfix_sdk.anchors import H265Anchor

        return H265Anchor(threads=options.h265_threads), None
    if name == "av1":
        from gfix_sdk.anchors import AV1Anchor

        return AV1Anchor(preset=options.av1_preset, threads=options.av1_threads), None
    if name == "gs":
        from gfix_sdk.anchors import GaussianAnchor

        return GaussianAnchor(preset=options.preset, gop=options.gop, device=_decode_device(options)), None
    if name == "gfix":
        return _build_gfix(options, work_dir)
    if ":" in name:
        return load_codec(name), None
    raise ValueError(f"unknown codec {name!r}: use {', '.join(BUILTIN)} or module:attribute")


def _decode_device(options: CodecOptions) -> str:
    # The Gaussian decoder renders on the CPU unless a device is asked for.
    return options.device or "cpu"


def _build_gfix(options: CodecOptions, work_dir: Path) -> tuple[RatePointCodec, str | None]:
    from gfix_sdk.anchors import GFixAnchor
    from gfix_sdk.enhance.base import BASE_ENV

    chosen = {key: value for key, value in (
        ("steps", options.gfix_steps), ("rate_point", options.gfix_rate_point), ("lr", options.gfix_lr),
        ("patch", options.gfix_patch)) if value is not None}
    common = {"preset": options.preset, "gop": options.gop, "device": options.device,
              "lpips_weights": options.gfix_lpips}
    base = options.base or os.environ.get(BASE_ENV, "").strip() or None
    if base is None:
        codec = GFixAnchor.with_tiny_base(work_dir / "tiny_sd", **common, **chosen)
        note = (f"gfix: no base model given (--base / ${BASE_ENV}), so the enhancer runs on the shipped tiny "
                f"stand-in for SD-Turbo ({codec.base}); its numbers show the pipeline at work and say nothing "
                "about SD-Turbo's quality")
        return codec, note
    return GFixAnchor(base, **common, **chosen), None  # type: ignore[arg-type]


def build_codecs(items: list[str | RatePointCodec], options: CodecOptions, work_dir: Path) -> tuple[
        list[RatePointCodec], list[str]]:
    """All codecs (names unique) and the notes they bring.

    Raises:
        ValueError: an unknown name, a codec not following the protocol, or
            two codecs of one name.
    """
    codecs, notes = [], []
    for item in items:
        codec, note = build_codec(item, options, work_dir)
        codecs.append(codec)
        if note:
            notes.append(note)
    names = [c.name for c in codecs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"codec names must be unique in a report, got {duplicates} more than once")
    if not codecs:
        raise ValueError("no codecs to evaluate")
    return codecs, notes
