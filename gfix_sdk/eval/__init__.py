"""The evaluation suite: rate-distortion of codecs on videos, as in the GFix paper.

:func:`run_eval` runs every codec (:class:`~gfix_sdk.anchors.RatePointCodec`:
H.264, our Gaussian codec, GFix, or your own) at several rate points on
every video, scores each decoded video with PSNR, MS-SSIM, LPIPS, FID and
VMAF (:mod:`gfix_sdk.metrics`; a metric whose weights or binary are missing
is omitted with its reason), and writes ``points.csv``, ``points.json``,
one RD plot per video and ``summary.md`` with BD-rate tables of every codec
against every anchor. ``gfix eval`` is its command line
(:func:`add_eval_parser`, :func:`main`); ``--uvg DIR`` runs the paper's
seven UVG sequences (:mod:`gfix_sdk.io.uvg`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gfix_sdk.eval.cli import add_eval_parser, main
    from gfix_sdk.eval.codecs import CodecOptions
    from gfix_sdk.eval.runner import EvalResult, run_eval
    from gfix_sdk.eval.videos import BUNDLED, VideoSpec, uvg_videos, video_spec

# Loaded on first use, so that registering `gfix eval` (add_eval_parser) does
# not import torch, PyAV and matplotlib into every `gfix` command.
_EXPORTS = {
    "add_eval_parser": "cli", "main": "cli", "CodecOptions": "codecs", "EvalResult": "runner",
    "run_eval": "runner", "BUNDLED": "videos", "VideoSpec": "videos", "uvg_videos": "videos",
    "video_spec": "videos",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"gfix_sdk.eval.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
