"""Native rasterizer vs the dense PyTorch reference: values, gradients, edge cases."""

import math

import pytest
import torch

from gfix_sdk.raster import rasterize, rasterize_dense, rasterize_stats
from gfix_sdk.raster.synthetic import random_gaussians

FWD_ATOL = 1e-4
GRAD_RTOL = 1e-3


def random_case(n, height, width, seed, coverage=4.0, flip_signs=True):
    means, chol, colors = random_gaussians(n, height, width, coverage=coverage, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1000)
    # Spread some means past the borders and flip signs of the factor's entries.
    means = means * 1.2 - 0.1 * torch.tensor([width, height])
    if flip_signs:
        chol = chol * torch.where(torch.rand(n, 3, generator=gen) < 0.3, -1.0, 1.0)
    colors = colors * 4 - 0.5
    return means, chol, colors


def forward_both(means, chol, colors, height, width):
    return rasterize(means, chol, colors, height, width), rasterize_dense(
        means, chol, colors, height, width
    )


def grads(fn, means, chol, colors, height, width, grad_out):
    params = [t.detach().clone().requires_grad_(True) for t in (means, chol, colors)]
    out = fn(*params, height, width)
    (out * grad_out).sum().backward()
    return [p.grad for p in params]


def assert_grads_close(means, chol, colors, height, width, seed=0):
    gen = torch.Generator().manual_seed(seed)
    grad_out = torch.randn(height, width, 3, generator=gen)
    ours = grads(rasterize, means, chol, colors, height, width, grad_out)
    ref = grads(rasterize_dense, means, chol, colors, height, width, grad_out)
    for name, a, b in zip(("means", "chol", "colors"), ours, ref):
        scale = b.abs().max().clamp_min(1e-6)
        err = (a - b).abs().max() / scale
        assert err <= GRAD_RTOL, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize(
    "n,height,width,seed",
    [(1, 16, 16, 0), (50, 17, 33, 1), (400, 64, 64, 2), (300, 70, 93, 3), (800, 45, 130, 4)],
)
def test_forward_matches_reference(n, height, width, seed):
    means, chol, colors = random_case(n, height, width, seed)
    ours, ref = forward_both(means, chol, colors, height, width)
    assert ours.shape == (height, width, 3) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, atol=FWD_ATOL, rtol=0)
    assert ref.abs().max() > 0.1  # the case renders something


@pytest.mark.parametrize("n,height,width,seed", [(40, 31, 47, 5), (300, 70, 93, 6)])
def test_gradients_match_reference(n, height, width, seed):
    assert_grads_close(*random_case(n, height, width, seed), height, width, seed)


def test_more_than_256_gaussians_per_tile():
    # 2000 Gaussians piled onto one tile: GaussianImage's kernel would drop all
    # but the first 256 of them.
    gen = torch.Generator().manual_seed(7)
    n, height, width = 2000, 40, 40
    means = 8 + 4 * torch.rand(n, 2, generator=gen)
    chol = torch.stack([torch.full((n,), 2.0), torch.zeros(n), torch.full((n,), 2.0)], 1)
    colors = torch.rand(n, 3, generator=gen) / n
    out, stats = rasterize_stats(means, chol, colors, height, width)
    assert stats["max_per_tile"] == n
    torch.testing.assert_close(out, rasterize_dense(means, chol, colors, height, width),
                               atol=FWD_ATOL, rtol=0)
    # Only the last Gaussians carry colour: a capped kernel would render black.
    colors2 = torch.zeros(n, 3)
    colors2[-10:] = 1.0
    assert rasterize(means, chol, colors2, height, width).max() > 1.0
    assert_grads_close(means[:600], chol[:600], colors[:600] * 50, height, width)


def test_no_gaussians_renders_black():
    empty2, empty3 = torch.zeros(0, 2), torch.zeros(0, 3)
    out = rasterize(empty2, empty3, empty3, 21, 35)
    assert out.shape == (21, 35, 3) and torch.count_nonzero(out) == 0
    params = [t.clone().requires_grad_(True) for t in (empty2, empty3, empty3)]
    rasterize(*params, 21, 35).sum().backward()
    assert all(p.grad.shape == p.shape for p in params)


def test_offscreen_gaussians_render_nothing():
    means = torch.tensor([[-50.0, 10.0], [10.0, -50.0], [500.0, 10.0], [10.0, 1e30]])
    chol = torch.tensor([[3.0, 0.0, 3.0]] * 4)
    colors = torch.ones(4, 3)
    out = rasterize(means, chol, colors, 32, 48)
    assert torch.count_nonzero(out) == 0
    params = [t.clone().requires_grad_(True) for t in (means, chol, colors)]
    (rasterize(*params, 32, 48) * 2).sum().backward()
    assert all(torch.count_nonzero(p.grad) == 0 for p in params)


def test_huge_gaussians_cover_whole_image():
    means = torch.tensor([[20.0, 15.0], [-100.0, 300.0]])
    chol = torch.tensor([[400.0, 30.0, 500.0], [1e4, -2e3, 3e4]])
    colors = torch.tensor([[0.5, -0.2, 1.0], [0.1, 0.2, 0.3]])
    ours, ref = forward_both(means, chol, colors, 37, 53)
    torch.testing.assert_close(ours, ref, atol=FWD_ATOL, rtol=0)
    assert torch.count_nonzero(ours[..., 0]) == 37 * 53
    assert_grads_close(means, chol, colors, 37, 53)


def test_degenerate_covariances_are_clamped():
    # Zero, tiny, negative and needle-like factors: finite output, equal to
    # the reference (which applies the same documented clamp).
    chol = torch.tensor(
        [[0.0, 0.0, 0.0], [1e-9, 5.0, 1e-9], [-2.0, 1.0, -1e-6], [3.0, 40.0, 1e-4],
         [-0.0, 0.0, 2.0], [1e-3, 0.0, 1e-3]]
    )
    n = chol.shape[0]
    means = torch.tensor([[5.5, 5.5], [10.2, 8.5], [20.5, 12.5], [14.5, 3.5], [3.5, 20.0], [25.5, 25.5]])
    colors = torch.ones(n, 3)
    ours, ref = forward_both(means, chol, colors, 32, 32)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, ref, atol=FWD_ATOL, rtol=0)
    # A zero factor at an exact pixel centre still lights that pixel.
    assert ours[5, 5, 0] == pytest.approx(1.0)
    params = [t.clone().requires_grad_(True) for t in (means, chol, colors)]
    (rasterize(*params, 32, 32) * torch.randn(32, 32, 3)).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in params)
    assert params[1].grad[0].abs().sum() == 0  # clamped entries get no gradient


def test_non_finite_gaussians_are_skipped():
    means = torch.tensor([[10.0, 10.0], [float("nan"), 5.0], [20.0, 20.0], [8.0, 8.0]])
    chol = torch.tensor([[2.0, 0.0, 2.0], [2.0, 0.0, 2.0], [float("inf"), 0.0, 1.0], [2.0, float("nan"), 2.0]])
    colors = torch.ones(4, 3)
    out = rasterize(means, chol, colors, 32, 32)
    torch.testing.assert_close(out, rasterize(means[:1], chol[:1], colors[:1], 32, 32))


def test_non_contiguous_inputs():
    means, chol, colors = random_case(120, 40, 56, seed=9)
    wide = torch.zeros(120, 9)
    wide[:, 0:2], wide[:, 2:5], wide[:, 5:8] = means, chol, colors
    views = wide[:, 0:2], wide[:, 2:5], wide[:, 5:8]
    assert not views[0].is_contiguous()
    torch.testing.assert_close(rasterize(*views, 40, 56), rasterize(means, chol, colors, 40, 56),
                               atol=0, rtol=0)
    grad_out = torch.randn(56, 40, 3).transpose(0, 1)  # non-contiguous gradient
    g1 = grads(rasterize, means, chol, colors, 40, 56, grad_out)
    g2 = grads(rasterize, means, chol, colors, 40, 56, grad_out.contiguous())
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_output_independent_of_thread_count():
    means, chol, colors = random_case(3000, 96, 128, seed=11)
    grad_out = torch.randn(96, 128, 3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [rasterize(means, chol, colors, 96, 128)] + grads(rasterize, means, chol, colors, 96, 128, grad_out)
        torch.set_num_threads(max(2, before))
        many = [rasterize(means, chol, colors, 96, 128)] + grads(rasterize, means, chol, colors, 96, 128, grad_out)
    finally:
        torch.set_num_threads(before)
    for a, b in zip(one, many):
        assert torch.equal(a, b)


def test_gaussian_centred_on_pixel_has_unit_peak():
    means = torch.tensor([[4.5, 6.5]])
    chol = torch.tensor([[1.5, 0.3, 0.8]])
    out = rasterize(means, chol, torch.tensor([[1.0, 2.0, -3.0]]), 12, 10)
    torch.testing.assert_close(out[6, 4], torch.tensor([1.0, 2.0, -3.0]))
    # One pixel right: exp(-0.5 * (1/1.5)^2 - 0.5 * (0.3/(1.5*0.8))^2)
    u, v = 1 / 1.5, -0.3 * (1 / 1.5) / 0.8
    assert out[6, 5, 0].item() == pytest.approx(math.exp(-0.5 * (u * u + v * v)), rel=1e-5)


@pytest.mark.parametrize(
    "args,match",
    [
        ((torch.zeros(5, 3), torch.zeros(5, 3), torch.zeros(5, 3), 8, 8), "means"),
        ((torch.zeros(5, 2), torch.zeros(4, 3), torch.zeros(5, 3), 8, 8), "chol"),
        ((torch.zeros(5, 2), torch.zeros(5, 3), torch.zeros(5, 4), 8, 8), "colors"),
        ((torch.zeros(5, 2, dtype=torch.float64), torch.zeros(5, 3), torch.zeros(5, 3), 8, 8), "means"),
        ((torch.zeros(5, 2), torch.zeros(5, 3, dtype=torch.float16), torch.zeros(5, 3), 8, 8), "chol"),
        ((torch.zeros(5, 2), torch.zeros(5, 3), torch.zeros(5, 3), 0, 8), "height"),
        ((torch.zeros(5, 2), torch.zeros(5, 3), torch.zeros(5, 3), 8, 10**6), "width"),
        ((torch.zeros(5, 2), torch.zeros(5, 3), torch.zeros(5, 3, device="meta"), 8, 8), "colors"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(args, match):
    with pytest.raises(ValueError, match=match):
        rasterize(*args)


def test_non_tensor_and_non_int_arguments_raise_type_error():
    with pytest.raises(TypeError, match="means"):
        rasterize([[0.0, 0.0]], torch.zeros(1, 3), torch.zeros(1, 3), 8, 8)
    with pytest.raises(TypeError, match="height"):
        rasterize(torch.zeros(1, 2), torch.zeros(1, 3), torch.zeros(1, 3), 8.0, 8)


@pytest.mark.needs_cuda
def test_cuda_matches_cpu():
    means, chol, colors = random_case(3000, 130, 250, seed=12)
    grad_out = torch.randn(130, 250, 3)
    cpu = [rasterize(means, chol, colors, 130, 250)] + grads(rasterize, means, chol, colors, 130, 250, grad_out)
    dev = [t.cuda() for t in (means, chol, colors)]
    gpu = [rasterize(*dev, 130, 250)] + grads(rasterize, *dev, 130, 250, grad_out.cuda())
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.cpu(), a, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("seed", range(3))
def test_rasterize_uint8_gives_the_bytes_of_to_uint8_of_the_float_render(seed):
    """The decoder's fused path (tiles converted as they finish) must show
    exactly what the encoder's to_uint8(render) measured: colours beyond
    [0, 1] clamp, ties round to even, boxes at tile edges use half the lanes."""
    from gfix_sdk.raster import rasterize_uint8, to_uint8
    from gfix_sdk.raster.rasterize import to_uint8_reference

    g = torch.Generator().manual_seed(seed)
    n = 2500
    means = torch.rand(n, 2, generator=g) * torch.tensor([261.0, 149.0]) - 4
    chol = torch.randn(n, 3, generator=g) * torch.tensor([3.0, 2.0, 3.0])
    colors = torch.randn(n, 3, generator=g) * 0.6
    image = rasterize(means, chol, colors, 143, 257)
    fused = rasterize_uint8(means, chol, colors, 143, 257)
    assert fused.dtype == torch.uint8 and fused.shape == (143, 257, 3)
    assert torch.equal(fused, to_uint8_reference(image))
    assert torch.equal(to_uint8(image), to_uint8_reference(image))
    assert 0 < (fused == 0).float().mean() < 0.9 and (fused == 255).any()  # both clamps exercised
