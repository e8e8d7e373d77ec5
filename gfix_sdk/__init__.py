"""GFix SDK: perceptually enhanced Gaussian-splatting video compression.

``import gfix_sdk`` stays light and never fails for want of the native
module; the main entry points load on first use::

    from gfix_sdk import Decoder, encode_video
"""

from __future__ import annotations

from typing import Any

from gfix_sdk._native import build_config

__version__ = "0.1.0"
__all__ = ["build_config", "Decoder", "encode_video", "__version__"]

_LAZY = {
    "Decoder": ("gfix_sdk.runtime.decoder", "Decoder"),
    "encode_video": ("gfix_sdk.encoder", "encode_video"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(__import__(module, fromlist=[attr]), attr)
    raise AttributeError(f"module 'gfix_sdk' has no attribute {name!r}")
