"""Seamless tiling of frames into overlapping, blended enhancer patches."""

import pytest
import torch

from gfix_sdk.enhance.tiling import (
    TileLayout,
    blend_weights,
    enhance_tiled,
    merge_tiles,
    split_tiles,
    tile_side,
    tile_starts,
)

SIZES = [(180, 320), (90, 160), (45, 70), (17, 200), (128, 128), (129, 257), (8, 8), (1, 1)]


@pytest.mark.parametrize("length,patch,overlap", [(320, 128, 32), (180, 128, 32), (129, 128, 32), (1000, 96, 16),
                                                  (50, 64, 16), (64, 64, 16), (257, 64, 0)])
def test_tiles_cover_the_frame_with_at_least_the_overlap(length, patch, overlap):
    starts = tile_starts(length, patch, overlap)
    assert starts[0] == 0
    if length <= patch:
        assert starts == (0,)
        return
    assert starts[-1] + patch == length  # the last tile ends at the edge
    for a, b in zip(starts, starts[1:]):
        assert a < b and a + patch - b >= overlap  # neighbours overlap by at least `overlap`
    # As few tiles as that allows: one tile fewer could not keep the overlap.
    assert len(starts) == 1 or (len(starts) - 2) * (patch - overlap) + patch < length


@pytest.mark.parametrize("height,width", SIZES)
@pytest.mark.parametrize("patch,overlap", [(64, 16), (32, 8), (16, 0)])
def test_blend_weights_sum_to_one(height, width, patch, overlap):
    layout = TileLayout.plan(height, width, patch, overlap)
    weights = blend_weights(layout)
    total = torch.zeros(layout.padded)
    for weight, (rows, cols) in zip(weights, layout.boxes()):
        total[rows, cols] += weight
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-6, rtol=0)
    assert (weights > 0).all()


@pytest.mark.parametrize("height,width,patch,count,tile", [
    (180, 320, 320, 1, (184, 320)),  # fits the patch bound: one pass, padded to a multiple of 8
    (180, 320, 128, 6, (128, 128)),
    (90, 160, 512, 1, (96, 160)),
    (1080, 1920, 512, 15, (512, 512)),
    (1, 1, 64, 1, (8, 8)),
])
def test_frames_within_the_patch_bound_go_in_one_pass(height, width, patch, count, tile):
    layout = TileLayout.plan(height, width, patch, patch // 4)
    assert layout.count == count and (layout.tile_h, layout.tile_w) == tile
    assert layout.tile_h % 8 == 0 and layout.tile_w % 8 == 0 and max(tile) <= patch


@pytest.mark.parametrize("height,width", SIZES)
def test_constant_image_passes_unchanged(height, width):
    image = torch.full((height, width, 3), 77 / 255)  # decoded frames are k / 255
    image[..., 1] = 179 / 255
    out = enhance_tiled(lambda x: x, image, 64, 16)
    assert out.shape == image.shape
    torch.testing.assert_close(out, image, atol=1e-6, rtol=0)
    to8 = lambda v: (v * 255).round().to(torch.uint8)  # noqa: E731
    assert torch.equal(to8(out), to8(image))


@pytest.mark.parametrize("height,width", SIZES)
def test_identity_run_reproduces_any_image(height, width):
    image = torch.rand(height, width, 3, generator=torch.Generator().manual_seed(height * width))
    torch.testing.assert_close(enhance_tiled(lambda x: x, image, 32, 8, batch=3), image, atol=1e-6, rtol=0)


def test_blending_leaves_no_seam_where_tiles_disagree():
    """Tiles that each add their own offset: the blend must move smoothly from
    one offset to the next across every overlap (a hard seam would jump)."""
    height, width, patch, overlap = 180, 320, 128, 32
    layout = TileLayout.plan(height, width, patch, overlap)
    assert layout.count == 6
    offsets = torch.linspace(0, 0.2, layout.count)
    tiles = split_tiles(torch.full((height, width, 3), 0.4), layout) + offsets[:, None, None, None]
    out = merge_tiles(tiles, layout)[..., 0]
    # Largest step between neighbouring pixels: with hard seams it would be the
    # offset difference between tiles (0.2 / (count - 1)); blended it is a small fraction.
    step = max(out.diff(dim=0).abs().max(), out.diff(dim=1).abs().max())
    assert step < 0.25 * float(offsets[1] - offsets[0])
    # Where only one tile covers a pixel, that tile's output is taken as it is.
    assert float(out[0, 0]) == pytest.approx(0.4 + float(offsets[0]), abs=1e-6)
    assert float(out[-1, -1]) == pytest.approx(0.4 + float(offsets[-1]), abs=1e-6)


def test_split_tiles_shape_and_padding():
    image = torch.rand(45, 70, 3)
    layout = TileLayout.plan(45, 70, 64, 16)
    tiles = split_tiles(image, layout)
    assert tiles.shape == (layout.count, 3, 48, 64) and layout.count == 2
    torch.testing.assert_close(tiles[0, :, :45, :64], image[:, :64].permute(2, 0, 1))
    torch.testing.assert_close(tiles[0, :, 45:, 0], image[-1:, 0].permute(1, 0).expand(3, 3))  # edge replicated
    torch.testing.assert_close(tiles[1, :, :45, :], image[:, 6:].permute(2, 0, 1))  # the last tile ends at the edge


def test_bad_tiling_arguments_are_refused():
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(100, 32, 32)
    with pytest.raises(ValueError, match="tile"):
        tile_starts(100, 0, 0)
    with pytest.raises(ValueError, match="multiple of 8"):
        tile_side(100, 60)
    with pytest.raises(ValueError, match="1x1"):
        TileLayout.plan(0, 10, 64, 16)
