"""Seamless tiling: overlapping patches blended with smooth weights.

The enhancer runs on tiles of at most ``patch x patch`` pixels, each side a
multiple of 8 (what the VAE's x8 latent, an ONNX graph and a TensorRT
profile accept). Along each axis the tile side is ``patch``, or the frame's
side rounded up to a multiple of 8 where that is smaller: a frame that fits
the patch bound goes through in one pass. Where more than one tile is
needed, tiles overlap by at least ``overlap`` pixels and are spread evenly
so the last one ends at the frame's edge; each tile's output is weighted by
a separable window that rises as a raised cosine over ``overlap`` pixels
from every tile edge (floored at a small positive value), and the weighted
sum is divided by the summed weights. The result is a convex combination of
tile outputs at every pixel: the weights sum to one, a constant passes
unchanged, and no seam is left where two tiles meet (the cross-fade covers
each overlap). Frames are padded by edge replication to whole tiles and
cropped back.

Encoder evaluation and every decoder backend (torch, onnxruntime, tensorrt)
enhance frames through :func:`enhance_tiled`, so they blend identically.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

#: Smallest window value: keeps every pixel of a tile (even its outermost one) in the blend.
WINDOW_FLOOR = 1e-3


def tile_side(length: int, patch: int) -> int:
    """Tile side along an axis of ``length`` pixels: ``patch``, or ``length``
    rounded up to a multiple of 8 where that is smaller."""
    if patch < 8 or patch % 8:
        raise ValueError(f"patch must be a positive multiple of 8, got {patch}")
    return min(patch, -(-length // 8) * 8)


def tile_starts(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Start offsets of the ``tile``-pixel tiles covering ``length`` pixels: as
    few as give at least ``overlap`` pixels of overlap, spread evenly, the
    last one ending at ``length`` (a single tile at 0 when ``length <= tile``)."""
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
    if length <= tile:
        return (0,)
    count = math.ceil((length - overlap) / (tile - overlap))
    return tuple(round(i * (length - tile) / (count - 1)) for i in range(count))


@dataclass(frozen=True)
class TileLayout:
    """Where the tiles of a ``height x width`` frame lie."""

    height: int
    width: int
    tile_h: int  #: tile height (a multiple of 8, at most the patch)
    tile_w: int  #: tile width
    overlap: int
    ys: tuple[int, ...]  #: tile rows' top offsets (in the padded frame)
    xs: tuple[int, ...]  #: tile columns' left offsets

    @classmethod
    def plan(cls, height: int, width: int, patch: int, overlap: int) -> TileLayout:
        """Tiles of at most ``patch x patch`` for a ``height x width`` frame (see the module docstring)."""
        if height < 1 or width < 1:
            raise ValueError(f"frame must be at least 1x1, got {width}x{height}")
        th, tw = tile_side(height, patch), tile_side(width, patch)
        return cls(height, width, th, tw, overlap, tile_starts(height, th, min(overlap, th - 1)),
                   tile_starts(width, tw, min(overlap, tw - 1)))

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def padded(self) -> tuple[int, int]:
        """(height, width) of the frame after padding to whole tiles."""
        return max(self.height, self.tile_h), max(self.width, self.tile_w)

    def boxes(self) -> list[tuple[slice, slice]]:
        """Each tile's (rows, columns) in the padded frame, rows first."""
        return [(slice(y, y + self.tile_h), slice(x, x + self.tile_w)) for y in self.ys for x in self.xs]


def _window_1d(side: int, overlap: int, tiles: int) -> Tensor:
    """Raised-cosine ramps over ``overlap`` pixels from both ends (flat where one tile covers the axis)."""
    if tiles == 1 or overlap == 0:
        return torch.ones(side, dtype=torch.float64)
    position = torch.arange(side, dtype=torch.float64) + 0.5
    edge = torch.minimum(position, side - position)  # distance to the nearer tile edge
    ramp = torch.sin(0.5 * math.pi * (edge / overlap).clamp(max=1.0)) ** 2
    return ramp.clamp(min=WINDOW_FLOOR)


@lru_cache(maxsize=16)
def _weights(layout: TileLayout) -> tuple[Tensor, Tensor]:
    """The tile window ``(tile_h, tile_w)`` and its per-pixel sum over the padded frame."""
    wy = _window_1d(layout.tile_h, layout.overlap, len(layout.ys))
    wx = _window_1d(layout.tile_w, layout.overlap, len(layout.xs))
    window = (wy[:, None] * wx[None, :]).to(torch.float32)
    total = torch.zeros(layout.padded, dtype=torch.float32)
    for rows, cols in layout.boxes():
        total[rows, cols] += window
    return window, total


def blend_weights(layout: TileLayout) -> Tensor:
    """``(count, tile_h, tile_w)`` normalised weights of every tile (they sum to one at each pixel)."""
    window, total = _weights(layout)
    return torch.stack([window / total[rows, cols] for rows, cols in layout.boxes()])


def split_tiles(image: Tensor, layout: TileLayout) -> Tensor:
    """``(H, W, 3)`` -> ``(count, 3, tile_h, tile_w)`` tiles (rows first)."""
    chw = image.permute(2, 0, 1)[None]
    ph, pw = layout.padded
    if (ph, pw) != (layout.height, layout.width):
        chw = F.pad(chw, (0, pw - layout.width, 0, ph - layout.height), mode="replicate")
    return torch.cat([chw[:, :, rows, cols] for rows, cols in layout.boxes()])


def merge_tiles(tiles: Tensor, layout: TileLayout) -> Tensor:
    """Blend ``(count, C, tile_h, tile_w)`` tile outputs into ``(H, W, C)`` (see the module docstring)."""
    window, total = _weights(layout)
    window, total = window.to(tiles.device, tiles.dtype), total.to(tiles.device, tiles.dtype)
    if layout.count == 1:
        out = tiles[0]
    else:
        out = torch.zeros((tiles.shape[1], *layout.padded), dtype=tiles.dtype, device=tiles.device)
        for tile, (rows, cols) in zip(tiles, layout.boxes()):
            out[:, rows, cols] += tile * window
        out = out / total
    return out[:, : layout.height, : layout.width].permute(1, 2, 0).contiguous()


def enhance_tiled(run: Callable[[Tensor], Tensor], image: Tensor, patch: int, overlap: int, *,
                  batch: int = 8) -> Tensor:
    """Apply ``run`` (``(B, 3, h, w)`` in [0, 1] -> same shape, ``h, w`` multiples
    of 8 up to ``patch``) to an ``(H, W, 3)`` float image tile by tile, at most
    ``batch`` tiles per call; returns the blended ``(H, W, 3)`` result clamped
    to [0, 1], on the image's device."""
    layout = TileLayout.plan(image.shape[0], image.shape[1], patch, overlap)
    tiles = split_tiles(image, layout)
    outputs = [run(tiles[i:i + batch]).clamp(0, 1).to(image.device) for i in range(0, layout.count, batch)]
    return merge_tiles(torch.cat(outputs), layout).clamp(0, 1)


def enhance_frame(run: Callable[[Tensor], Tensor], frame: Tensor, patch: int, overlap: int, *,
                  batch: int = 8) -> Tensor:
    """Enhance one ``(H, W, 3)`` uint8 frame with ``run`` (a batch-of-patches
    function: an enhancer backend, or ``enhancer_runner(enhancer)``) in blended
    overlapping patches; returns uint8 on the frame's device. Encoder and
    decoder both enhance through here (it lives here, not
    in the training pipeline, so that the decode runtime imports no training code)."""
    image = frame.to(torch.float32) / 255.0
    out = enhance_tiled(run, image, patch, overlap, batch=batch)
    return (out * 255.0).round().to(torch.uint8)


__all__ = ["TileLayout", "tile_side", "tile_starts", "blend_weights", "split_tiles", "merge_tiles", "enhance_tiled", "enhance_frame"]
