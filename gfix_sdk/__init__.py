"""GFix SDK: perceptually enhanced Gaussian-splatting video compression."""

from gfix_sdk._native import build_config

__version__ = "0.1.0"
__all__ = ["build_config", "__version__"]
