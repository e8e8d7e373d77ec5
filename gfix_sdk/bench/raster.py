"""Rasterizer benchmark: the native kernels beside the PyTorch references.

Renders random Gaussians sized like a fitted frame (mean 3-sigma box area =
coverage x pixels / N) and times, in one run:

* ``gfix``  - gfix_sdk.raster.rasterize on the chosen device (forward; backward
  of sum(out * G) for a random G), median of ``--repeats`` after a warm-up;
* ``dense`` - the dense PyTorch reference (gfix_sdk.raster.rasterize_dense,
  autograd backward). Its cost is linear in the pixel count, so it is timed on
  a full-width strip of ``--strip-rows`` rows and scaled to the frame (marked
  with * in the table);
* ``gsplat`` - gsplat's pure-PyTorch tile binning (``_isect_tiles``) of the
  same Gaussians. gsplat's PyTorch compositing needs its CUDA op
  ``rasterize_to_indices_in_range`` and nerfacc, so on a CPU only its binning
  can run: that column is a lower bound on a full gsplat-PyTorch render.

Peak extra memory is the resident-set high-water mark the call adds (Linux),
reported against the size of the output image.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from typing import Any

import torch

from gfix_sdk.bench._common import (
    emit_json,
    format_table,
    machine_info,
    peak_extra_bytes,
    time_call,
)
from gfix_sdk.raster import rasterize, rasterize_dense, rasterize_stats
from gfix_sdk.raster.synthetic import random_gaussians

TARGETS = {
    "forward_ms_1080p_20k": 50.0,
    "backward_over_forward": 3.0,
    "speedup_over_dense": 50.0,
    "peak_extra_over_output": 2.0,
}


def _native_backward_ms(params, height, width, grad_out, repeats) -> float:
    samples = []
    for _ in range(repeats + 1):
        for p in params:
            p.grad = None
        out = rasterize(*params, height, width)
        if out.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out.backward(grad_out)
        if out.is_cuda:
            torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) * 1e3)
    samples = sorted(samples[1:])  # first run is the warm-up
    return samples[len(samples) // 2]


def _dense_strip_ms(means, chol, colors, width, height, strip_rows, grad_out_strip):
    """Forward and backward ms of the dense reference (autograd) on a centred
    strip, scaled to the full frame. Runs chunk by chunk over Gaussians to
    bound memory: the output is a sum over Gaussians, so each chunk's gradient
    needs only its own graph."""
    top = (height - strip_rows) // 2
    shifted = means - torch.tensor([0.0, float(top)])
    chunk = max(1, (1 << 22) // (strip_rows * width))
    forward_s = backward_s = 0.0
    for lo in range(0, means.shape[0], chunk):
        params = [t[lo : lo + chunk].clone().requires_grad_(True) for t in (shifted, chol, colors)]
        start = time.perf_counter()
        out = rasterize_dense(*params, strip_rows, width)
        middle = time.perf_counter()
        out.backward(grad_out_strip)
        forward_s += middle - start
        backward_s += time.perf_counter() - middle
    scale = height / strip_rows
    return forward_s * 1e3 * scale, backward_s * 1e3 * scale


def _gsplat_binning_ms(means, chol, height, width) -> float | None:
    try:
        from gsplat.cuda import _torch_impl
    except ImportError:
        return None
    radii = torch.stack([3 * chol[:, 0].abs(), 3 * torch.sqrt(chol[:, 1] ** 2 + chol[:, 2] ** 2)], -1)
    depths = torch.ones(1, means.shape[0])
    tiles_w, tiles_h = math.ceil(width / 16), math.ceil(height / 16)
    start = time.perf_counter()
    _torch_impl._isect_tiles(means[None], radii[None], depths, 16, tiles_w, tiles_h)
    return (time.perf_counter() - start) * 1e3


def run_case(n: int, args: argparse.Namespace) -> dict[str, Any]:
    height, width = args.height, args.width
    means, chol, colors = random_gaussians(n, height, width, coverage=args.coverage, seed=args.seed)
    device = torch.device(args.device)
    dev = [t.to(device) for t in (means, chol, colors)]
    out_bytes = height * width * 3 * 4

    _, stats = rasterize_stats(*dev, height, width)
    with torch.no_grad():
        forward_ms = time_call(lambda: rasterize(*dev, height, width), repeats=args.repeats)
    params = [t.clone().requires_grad_(True) for t in dev]
    grad_out = torch.randn(height, width, 3, generator=torch.Generator().manual_seed(1)).to(device)
    backward_ms = _native_backward_ms(params, height, width, grad_out, args.repeats)

    record: dict[str, Any] = {
        "n": n,
        "intersections": stats["num_intersections"],
        "max_per_tile": stats["max_per_tile"],
        "forward_ms": forward_ms,
        "backward_ms": backward_ms,
        "output_bytes": out_bytes,
    }
    if device.type == "cpu":
        with torch.no_grad():
            record["forward_peak_extra_bytes"] = peak_extra_bytes(
                lambda: rasterize(*dev, height, width)
            )
        for p in params:
            p.grad = None
        graph = rasterize(*params, height, width)
        record["backward_peak_extra_bytes"] = peak_extra_bytes(
            lambda: graph.backward(grad_out) or [p.grad for p in params]
        )
    if args.reference:
        strip = grad_out[:args.strip_rows].cpu()
        dense_fwd, dense_bwd = _dense_strip_ms(means, chol, colors, width, height, args.strip_rows, strip)
        record.update(dense_forward_ms=dense_fwd, dense_backward_ms=dense_bwd)
    if args.gsplat:
        record["gsplat_binning_ms"] = _gsplat_binning_ms(means, chol, height, width)
    return record


def _fmt_mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f}"


def report(records: list[dict[str, Any]], args: argparse.Namespace) -> str:
    speed_rows, memory_rows = [], []
    for r in records:
        dense_f, dense_b = r.get("dense_forward_ms"), r.get("dense_backward_ms")
        speed_rows.append([
            r["n"], r["intersections"], r["max_per_tile"], r["forward_ms"], r["backward_ms"],
            r["backward_ms"] / r["forward_ms"],
            "-" if dense_f is None else dense_f, "-" if dense_b is None else dense_b,
            "-" if dense_f is None else f"{dense_f / r['forward_ms']:,.0f}x",
            "-" if dense_b is None else f"{dense_b / r['backward_ms']:,.0f}x",
            "-" if r.get("gsplat_binning_ms") is None else r["gsplat_binning_ms"],
        ])
        out_mb = r["output_bytes"]
        fwd_peak, bwd_peak = r.get("forward_peak_extra_bytes"), r.get("backward_peak_extra_bytes")
        memory_rows.append([
            r["n"], _fmt_mb(out_mb), _fmt_mb(fwd_peak),
            "n/a" if fwd_peak is None else f"{fwd_peak / out_mb:.2f}x",
            _fmt_mb(bwd_peak), "n/a" if bwd_peak is None else f"{bwd_peak / out_mb:.2f}x",
        ])
    lines = [
        f"Rasterizer, {args.width}x{args.height}, coverage {args.coverage}, device {args.device}, "
        f"median of {args.repeats}",
        format_table(
            ["N", "isects", "max/tile", "fwd ms", "bwd ms", "bwd/fwd", "dense fwd ms*",
             "dense bwd ms*", "fwd speedup", "bwd speedup", "gsplat bin ms"],
            speed_rows,
        ),
        f"* dense reference timed on a {args.width}x{args.strip_rows} strip and scaled x"
        f"{args.height / args.strip_rows:.0f} (its cost is linear in pixels)."
        if args.reference else "",
        "gsplat bin ms: gsplat's pure-PyTorch binning only (its PyTorch compositing needs CUDA).",
        "",
        format_table(["N", "out MB", "fwd peak MB", "fwd/out", "bwd peak MB", "bwd/out"], memory_rows),
    ]
    return "\n".join(line for line in lines)


def check_targets(records: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """Human-readable pass/fail lines against the issue's targets."""
    lines = []
    for r in records:
        checks = [
            ("bwd <= 3x fwd", r["backward_ms"] / r["forward_ms"], TARGETS["backward_over_forward"], "le"),
        ]
        if r["n"] == 20000 and (args.height, args.width) == (1080, 1920):
            checks.append(("fwd <= 50 ms", r["forward_ms"], TARGETS["forward_ms_1080p_20k"], "le"))
        if "dense_forward_ms" in r:
            checks.append(("fwd >= 50x dense", r["dense_forward_ms"] / r["forward_ms"],
                           TARGETS["speedup_over_dense"], "ge"))
        for key in ("forward_peak_extra_bytes", "backward_peak_extra_bytes"):
            if r.get(key) is not None:
                checks.append((f"{key.split('_')[0]} peak <= 2x out", r[key] / r["output_bytes"],
                               TARGETS["peak_extra_over_output"], "le"))
        for name, value, target, op in checks:
            ok = value <= target if op == "le" else value >= target
            lines.append(f"  N={r['n']:>6}  {name:22s} {value:10.3g}  {'PASS' if ok else 'FAIL'}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gfix_sdk.bench raster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--counts", type=int, nargs="+", default=[5000, 20000, 50000],
                        help="numbers of Gaussians to benchmark (default: 5000 20000 50000)")
    parser.add_argument("--coverage", type=float, default=4.0,
                        help="mean 3-sigma box area x N / pixels (default: 4)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--strip-rows", type=int, default=8,
                        help="rows of the strip the dense reference is timed on (default: 8)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the (slow) dense PyTorch reference")
    parser.add_argument("--no-gsplat", dest="gsplat", action="store_false",
                        help="skip gsplat's PyTorch binning")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the JSON record to PATH")
    args = parser.parse_args(argv)

    records = [run_case(n, args) for n in args.counts]
    print(report(records, args))
    print("\nTargets:")
    print("\n".join(check_targets(records, args)))
    emit_json({"bench": "raster", "machine": machine_info(), "args": vars(args),
               "targets": TARGETS, "results": records}, args.json)
    return 0
