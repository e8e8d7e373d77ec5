"""Gaussian frames: model, image-guided initialisation, fitting, coding.

The names below load on first use, so the decode runtime (which imports
:mod:`gfix_sdk.gaussians.code`, ``quantize`` and ``reconstruct``) never
loads the fitting code.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GaussianFrame", "FitConfig", "FitResult", "fit_frame", "init_from_image", "psnr"]

_LAZY = {
    "GaussianFrame": "gfix_sdk.gaussians.model",
    "FitConfig": "gfix_sdk.gaussians.fit",
    "FitResult": "gfix_sdk.gaussians.fit",
    "fit_frame": "gfix_sdk.gaussians.fit",
    "psnr": "gfix_sdk.gaussians.fit",
    "init_from_image": "gfix_sdk.gaussians.init",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(__import__(_LAZY[name], fromlist=[name]), name)
    raise AttributeError(f"module 'gfix_sdk.gaussians' has no attribute {name!r}")
