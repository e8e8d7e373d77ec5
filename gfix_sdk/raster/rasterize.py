"""``rasterize``: the differentiable native 2D Gaussian rasterizer.

Dispatches on the tensors' device: the C++/OpenMP kernels (``gfix_sdk._C``)
on CPU, the CUDA kernels (``gfix_sdk._C_cuda``) on a GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from gfix_sdk._native import cpu_module, cuda_module

MAX_SIDE = 16384  # pixels; generous for video, small enough for int32 indexing
MAX_GAUSSIANS = 2**31 - 1

_cpu_threads: int | None = None  # set by raster_threads(); None: torch's intra-op thread count


@contextlib.contextmanager
def raster_threads(threads: int | None) -> Iterator[None]:
    """Run the CPU kernels on ``threads`` threads inside the block (None:
    ``torch.get_num_threads()``, the default).

    The kernels' results do not depend on their thread count, so this lets a
    caller pin torch's own thread count (whose float reductions do depend on
    it) while the rasterizer still uses every core it was given. The setting
    is process-wide, like ``torch.set_num_threads``.
    """
    global _cpu_threads
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    previous, _cpu_threads = _cpu_threads, threads
    try:
        yield
    finally:
        _cpu_threads = previous


def cpu_threads() -> int:
    """Threads the CPU kernels use now (see :func:`raster_threads`)."""
    return _cpu_threads or torch.get_num_threads()


def _check_tensor(name: str, value: Any, cols: int, n: int | None) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != 2 or value.shape[1] != cols or (n is not None and value.shape[0] != n):
        rows = "N" if n is None else str(n)
        raise ValueError(f"{name} must have shape ({rows}, {cols}), got {tuple(value.shape)}")
    if value.dtype != torch.float32:
        raise ValueError(f"{name} must be float32, got {value.dtype}")


def _check_side(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 1 <= value <= MAX_SIDE:
        raise ValueError(f"{name} must be in [1, {MAX_SIDE}], got {value}")


def check_inputs(means: Tensor, chol: Tensor, colors: Tensor, height: int, width: int) -> None:
    """Raise ``TypeError``/``ValueError`` naming the first bad argument."""
    _check_tensor("means", means, 2, None)
    n = means.shape[0]
    if n > MAX_GAUSSIANS:
        raise ValueError(f"means: at most {MAX_GAUSSIANS} Gaussians, got {n}")
    _check_tensor("chol", chol, 3, n)
    _check_tensor("colors", colors, 3, n)
    for name, value in (("chol", chol), ("colors", colors)):
        if value.device != means.device:
            raise ValueError(
                f"{name} is on {value.device} but means is on {means.device}; "
                "all inputs must be on one device"
            )
    if means.device.type not in ("cpu", "cuda"):
        raise ValueError(f"means: unsupported device {means.device} (cpu or cuda)")
    _check_side("height", height)
    _check_side("width", width)


def _forward(means: Tensor, chol: Tensor, colors: Tensor, height: int, width: int):
    out = torch.empty(height, width, 3, dtype=torch.float32, device=means.device)
    if means.device.type == "cuda":
        stream = torch.cuda.current_stream(means.device).cuda_stream
        stats = cuda_module().rasterize_forward(
            means.data_ptr(), chol.data_ptr(), colors.data_ptr(), means.shape[0],
            height, width, out.data_ptr(), means.device.index, stream,
        )
    else:
        stats = cpu_module().rasterize_forward(
            means.numpy(), chol.numpy(), colors.numpy(), height, width, out.numpy(),
            cpu_threads(),
        )
    return out, stats


def _backward(means, chol, colors, height, width, grad_out, needs):
    grads = [
        torch.empty_like(t) if need else None
        for t, need in zip((means, chol, colors), needs)
    ]
    if means.device.type == "cuda":
        stream = torch.cuda.current_stream(means.device).cuda_stream
        ptrs = [g.data_ptr() if g is not None else 0 for g in grads]
        cuda_module().rasterize_backward(
            means.data_ptr(), chol.data_ptr(), colors.data_ptr(), means.shape[0],
            height, width, grad_out.data_ptr(), *ptrs, means.device.index, stream,
        )
    else:
        arrays = [g.numpy() if g is not None else None for g in grads]
        cpu_module().rasterize_backward(
            means.numpy(), chol.numpy(), colors.numpy(), height, width,
            grad_out.numpy(), *arrays, cpu_threads(),
        )
    return grads


class _RasterizeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, chol, colors, height, width):  # type: ignore[override]
        means, chol, colors = (t.detach().contiguous() for t in (means, chol, colors))
        out, _ = _forward(means, chol, colors, height, width)
        ctx.save_for_backward(means, chol, colors)
        ctx.size = (height, width)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        means, chol, colors = ctx.saved_tensors
        grad_out = grad_out.detach().to(torch.float32).contiguous()
        gm, gl, gc = _backward(
            means, chol, colors, *ctx.size, grad_out, ctx.needs_input_grad[:3]
        )
        return gm, gl, gc, None, None


def rasterize(means: Tensor, chol: Tensor, colors: Tensor, height: int, width: int) -> Tensor:
    """Render 2D Gaussians into an ``(height, width, 3)`` float32 image.

    Each Gaussian ``i`` adds ``colors[i] * exp(-0.5 d^T Sigma_i^-1 d)`` to every
    pixel whose centre ``(x + 0.5, y + 0.5)`` lies in its 3-sigma box, where
    ``d`` is the offset from ``means[i]`` and ``Sigma_i = L L^T`` with
    ``L = [[chol[i, 0], 0], [chol[i, 1], chol[i, 2]]]``. Summation, no depth
    sort (GaussianImage/GSVC). Differentiable w.r.t. all three tensors.

    Args:
        means: ``(N, 2)`` float32 centres ``(x, y)`` in pixels.
        chol: ``(N, 3)`` float32 Cholesky factors ``(l11, l21, l22)`` in pixels.
            Diagonal entries are clamped to at least 1e-3 px in magnitude.
        colors: ``(N, 3)`` float32 RGB weights.
        height, width: output size in pixels, each in ``[1, 16384]``.

    Returns:
        ``(height, width, 3)`` float32 tensor on the inputs' device.

    Raises:
        TypeError, ValueError: a wrong argument, named in the message.
        gfix_sdk._native.NativeModuleError: the kernels for that device are not built.
    """
    check_inputs(means, chol, colors, height, width)
    return _RasterizeFunction.apply(means, chol, colors, height, width)


def rasterize_stats(
    means: Tensor, chol: Tensor, colors: Tensor, height: int, width: int
) -> tuple[Tensor, dict[str, int]]:
    """Forward pass only (no autograd) returning the image and binning statistics
    (``num_intersections``, ``max_per_tile``, ``scratch_bytes``)."""
    check_inputs(means, chol, colors, height, width)
    with torch.no_grad():
        means, chol, colors = (t.detach().contiguous() for t in (means, chol, colors))
        return _forward(means, chol, colors, height, width)


def to_uint8(image: Tensor) -> Tensor:
    """Float image in [0, 1] (any device) to uint8 by clamping and rounding
    (half to even). A contiguous float32 CPU image takes one fused native pass
    (four torch passes otherwise: ~12 ms for a 1080p frame on 2 cores); both
    give the same bytes."""
    if image.device.type == "cpu" and image.dtype == torch.float32 and image.is_contiguous() \
            and not image.requires_grad:
        return torch.from_numpy(cpu_module().float_to_uint8(image.numpy(), cpu_threads()))
    return to_uint8_reference(image)


def to_uint8_reference(image: Tensor) -> Tensor:
    """:func:`to_uint8` in PyTorch operations (any device, dtype or layout)."""
    return (image.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def rasterize_uint8(means: Tensor, chol: Tensor, colors: Tensor, height: int, width: int) -> Tensor:
    """``to_uint8(rasterize(...))`` without autograd: the image a decoder
    shows. On the CPU the kernel converts each tile as it finishes it, so no
    float image is written and read back (25 MB at 1080p); same bytes.

    Returns:
        ``(height, width, 3)`` uint8 tensor on the inputs' device.
    """
    check_inputs(means, chol, colors, height, width)
    with torch.no_grad():
        means, chol, colors = (t.detach().contiguous() for t in (means, chol, colors))
        if means.device.type != "cpu":
            return to_uint8_reference(_forward(means, chol, colors, height, width)[0])
        out = torch.empty(height, width, 3, dtype=torch.uint8)
        cpu_module().rasterize_forward_u8(means.numpy(), chol.numpy(), colors.numpy(), height, width,
                                          out.numpy(), cpu_threads())
        return out


TILE_SIZE = 16  # pixels; csrc/gaussian_setup.h kTileSize
_BOX_SIGMAS = 3.0  # kBoxSigmas
_MIN_CHOL_DIAG = 1e-3  # kMinCholDiag


def tile_intersections_bound(means: Tensor, chol: Tensor, height: int, width: int) -> int:
    """An upper bound on the (Gaussian, tile) pairs :func:`rasterize` will bin.

    The CPU kernel holds one int32 per pair and splats every pair, so this
    bounds its scratch memory (4 bytes per pair) and its work before any of
    it is allocated. O(N) in float64, never below the kernel's own count
    (``rasterize_stats(...)[1]["num_intersections"]``): each box is widened
    by the kernel's conservative margins before it is cut to the image.
    """
    m = means.detach().to(torch.float64)
    c = chol.detach().to(torch.float64)
    a = c[:, 0].abs().clamp_min(_MIN_CHOL_DIAG)
    d = c[:, 2].abs().clamp_min(_MIN_CHOL_DIAG)
    radii = (_BOX_SIGMAS * a, _BOX_SIGMAS * torch.sqrt(c[:, 1] ** 2 + d**2))
    tiles = torch.ones(m.shape[0], dtype=torch.float64, device=m.device)
    finite = torch.isfinite(m).all(1) & torch.isfinite(c).all(1)
    for axis, size in ((0, width), (1, height)):
        r = torch.nan_to_num(radii[axis], nan=0.0, posinf=0.0)
        centre = torch.nan_to_num(m[:, axis], nan=0.0, posinf=0.0, neginf=0.0)
        lo = torch.floor(centre - r - 0.5).clamp(0, size - 1)
        hi = torch.ceil(centre + r - 0.5).clamp(0, size - 1)
        inside = (centre + r + 1.0 >= 0) & (centre - r - 1.0 <= size)
        count = torch.floor(hi / TILE_SIZE) - torch.floor(lo / TILE_SIZE) + 1
        tiles = tiles * torch.where(inside, count, torch.zeros_like(count))
    return int(torch.where(finite, tiles, torch.zeros_like(tiles)).sum().item())
