"""2D Gaussian rasterization: native kernels and the dense PyTorch reference."""

from gfix_sdk.raster._torch_impl import rasterize_dense
from gfix_sdk.raster.rasterize import (
    check_inputs,
    rasterize,
    rasterize_stats,
    rasterize_uint8,
    tile_intersections_bound,
    to_uint8,
)

__all__ = ["rasterize", "rasterize_stats", "rasterize_uint8", "to_uint8", "rasterize_dense", "check_inputs", "tile_intersections_bound"]
