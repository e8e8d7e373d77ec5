"""GPU check: is the CUDA path correct on this machine, and how fast is it?

One run, a few minutes on one GPU:

1. **parity** - the CUDA rasterizer against the CPU kernel on the same inputs
   (random 1080p frame of 20k Gaussians, 2000 Gaussians on one 48x48 tile,
   off-screen, tiny-Cholesky and NaN/Inf Gaussians, an empty frame): forward
   max abs error and gradient relative error, and whether repeated CUDA runs
   are bit-identical.
2. **raster** - forward and forward+backward at 1920x1080 for 5k/20k/50k
   Gaussians (median, CUDA synchronised).
3. **decode** - a 1080p intra frame of 20k Gaussians: entropy decode (host),
   dequantise + render on the GPU.
4. **fit** - ``fit_frame`` on CUDA tensors: 1080p, 20k Gaussians, ms per iteration.
5. **enhance** - the tiny stand-in enhancer on a 320x180 frame on the GPU in
   float32, and with bf16/fp16 autocast with their max error against float32.

Prints a table and one JSON line. On a machine without a CUDA device, or with
a gfix_sdk built without CUDA, it says so and exits 0.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import torch

from gfix_sdk.bench._common import emit_json, format_table, machine_info, time_call


def _parity_cases() -> list[tuple[str, tuple[torch.Tensor, ...], int, int]]:
    from gfix_sdk.raster.synthetic import random_gaussians

    cases = [("random 1080p/20k", random_gaussians(20_000, 1080, 1920, seed=1), 1080, 1920)]
    m, c, col = random_gaussians(2000, 48, 48, seed=2)
    cases.append(("2000 on one tile", (m * 0.3 + 8, c * 0.5, col), 48, 48))
    m, c, col = random_gaussians(500, 64, 96, seed=3)
    cases.append(("off-screen", (m * 3 - 100, c, col), 64, 96))
    m, c, col = random_gaussians(500, 64, 96, seed=4)
    c = c.clone()
    c[::7] = 1e-6  # tiny Cholesky factors (clamped)
    m = m.clone()
    m[::11, 0] = float("nan")
    col = col.clone()
    col[::13, 1] = float("inf")
    cases.append(("tiny chol, NaN/Inf", (m, c, col), 64, 96))
    cases.append(("empty", (torch.zeros(0, 2), torch.zeros(0, 3), torch.zeros(0, 3)), 32, 32))
    return cases


def check_parity() -> list[dict[str, Any]]:
    """CUDA vs CPU rasterizer on each case: forward and gradient errors, determinism."""
    from gfix_sdk.raster import rasterize

    rows = []
    for name, params, height, width in _parity_cases():
        results = {}
        for device in ("cpu", "cuda"):
            leaves = [p.to(device).clone().requires_grad_(True) for p in params]
            out = rasterize(*leaves, height, width)
            weight = torch.linspace(-1, 1, out.numel(), device=device).reshape(out.shape)
            (out * weight).sum().backward()
            results[device] = (out.detach().cpu(), [p.grad.detach().cpu() for p in leaves])
        again = rasterize(*[p.to("cuda") for p in params], height, width).cpu()
        (cpu_out, cpu_grads), (gpu_out, gpu_grads) = results["cpu"], results["cuda"]
        grad_rel = max((float((g - h).abs().max() / h.abs().max().clamp_min(1e-12)) if h.numel() else 0.0)
                       for g, h in zip(gpu_grads, cpu_grads))
        rows.append({"case": name, "forward_max_abs": float((gpu_out - cpu_out).abs().max()) if cpu_out.numel() else 0.0,
                     "grad_max_rel": grad_rel, "deterministic": bool(torch.equal(again, gpu_out)),
                     "finite": bool(torch.isfinite(gpu_out).all())})
    return rows


def time_raster(counts: Sequence[int], repeats: int) -> list[dict[str, Any]]:
    from gfix_sdk.raster import rasterize
    from gfix_sdk.raster.synthetic import random_gaussians

    rows = []
    for n in counts:
        params = [p.cuda() for p in random_gaussians(n, 1080, 1920, seed=n)]
        forward = time_call(lambda: rasterize(*params, 1080, 1920), repeats=repeats)
        leaves = [p.clone().requires_grad_(True) for p in params]

        def both() -> None:
            rasterize(*leaves, 1080, 1920).sum().backward()

        rows.append({"gaussians": n, "forward_ms": forward, "forward_backward_ms": time_call(both, repeats=repeats)})
    return rows


def time_decode(repeats: int) -> dict[str, float]:
    from gfix_sdk.gaussians.code import decode_frame, encode_intra
    from gfix_sdk.gaussians.model import GaussianFrame
    from gfix_sdk.gaussians.quantize import QuantSpec, dequantize, quantize
    from gfix_sdk.gaussians.reconstruct import to_uint8
    from gfix_sdk.raster.synthetic import random_gaussians

    spec = QuantSpec()
    payload, _ = encode_intra(quantize(GaussianFrame(*random_gaussians(20_000, 1080, 1920, seed=5), 1080, 1920), spec))
    q = decode_frame(payload, None)
    entropy = time_call(lambda: decode_frame(payload, None), repeats=repeats)
    render = time_call(lambda: to_uint8(dequantize(q, spec, 1080, 1920).to("cuda").render()), repeats=repeats)
    return {"entropy_ms": entropy, "render_ms": render, "total_ms": entropy + render}


def time_fit(iterations: int) -> dict[str, float]:
    from gfix_sdk.gaussians.fit import FitConfig, fit_frame
    from gfix_sdk.gaussians.model import GaussianFrame
    from gfix_sdk.raster.synthetic import random_gaussians

    target = GaussianFrame(*[p.cuda() for p in random_gaussians(20_000, 1080, 1920, seed=6)], 1080, 1920).render()
    init = GaussianFrame(*[p.cuda() for p in random_gaussians(20_000, 1080, 1920, seed=7)], 1080, 1920)
    fit_frame(target.clamp(0, 1), init, FitConfig(iterations=5), progress=False)  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = fit_frame(target.clamp(0, 1), init, FitConfig(iterations=iterations), progress=False)
    torch.cuda.synchronize()
    return {"ms_per_iteration": (time.perf_counter() - start) * 1e3 / iterations, "psnr_db": result.psnr}


def time_enhance(repeats: int) -> dict[str, float]:
    import tempfile
    from pathlib import Path

    from gfix_sdk.enhance.base import load_base
    from gfix_sdk.enhance.model import AdapterConfig, Enhancer
    from gfix_sdk.enhance.tiling import enhance_tiled
    from gfix_sdk.enhance.tiny import install_tiny_base

    with tempfile.TemporaryDirectory() as tmp:
        enhancer = Enhancer(load_base(install_tiny_base(Path(tmp) / "tiny")), AdapterConfig()).cuda().eval()
    image = torch.rand(180, 320, 3, device="cuda", generator=torch.Generator(device="cuda").manual_seed(0))
    patch, overlap = enhancer.config.patch, enhancer.config.overlap

    def run(dtype: torch.dtype | None) -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            return enhance_tiled(lambda x: enhancer(x).float(), image, patch, overlap)

    reference = run(None)
    out = {"fp32_ms": time_call(lambda: run(None), repeats=repeats)}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        out[f"{name}_ms"] = time_call(lambda dtype=dtype: run(dtype), repeats=repeats)
        out[f"{name}_max_abs_error"] = float((run(dtype) - reference).abs().max())
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gfix_sdk.bench gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats per measurement (median)")
    parser.add_argument("--fit-iterations", type=int, default=200)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)

    import gfix_sdk

    config = gfix_sdk.build_config()
    if not torch.cuda.is_available() or not config["cuda_built"]:
        why = ("PyTorch sees no CUDA device" if not torch.cuda.is_available()
               else f"gfix_sdk was built without CUDA ({config['cuda_error']})")
        print(f"GPU check skipped: {why}. Nothing to measure on this machine.")
        emit_json({"bench": "gpu", "machine": machine_info(), "ran": False, "reason": why}, args.json)
        return 0
    start = time.perf_counter()
    record: dict[str, Any] = {"bench": "gpu", "machine": machine_info(), "ran": True,
                              "gpu": torch.cuda.get_device_name()}
    record["parity"] = check_parity()
    print(format_table(["case", "fwd max abs", "grad max rel", "deterministic", "finite"],
                       [[r["case"], f"{r['forward_max_abs']:.1e}", f"{r['grad_max_rel']:.1e}", r["deterministic"],
                         r["finite"]] for r in record["parity"]]))
    record["raster"] = time_raster((5_000, 20_000, 50_000), args.repeats)
    record["decode"] = time_decode(args.repeats)
    record["fit"] = time_fit(args.fit_iterations)
    record["enhance"] = time_enhance(args.repeats)
    rows = [[f"raster 1080p {r['gaussians'] // 1000}k fwd / fwd+bwd",
             f"{r['forward_ms']:.2f} / {r['forward_backward_ms']:.2f} ms"] for r in record["raster"]]
    d, f, e = record["decode"], record["fit"], record["enhance"]
    rows += [["decode 1080p/20k intra: entropy / render / total",
              f"{d['entropy_ms']:.2f} / {d['render_ms']:.2f} / {d['total_ms']:.2f} ms"],
             ["fit 1080p/20k", f"{f['ms_per_iteration']:.2f} ms per iteration"],
             ["enhance 320x180, tiny stand-in: fp32 / bf16 / fp16",
              f"{e['fp32_ms']:.1f} / {e['bf16_ms']:.1f} / {e['fp16_ms']:.1f} ms"],
             ["enhance max abs error vs fp32: bf16 / fp16", f"{e['bf16_max_abs_error']:.1e} / {e['fp16_max_abs_error']:.1e}"]]
    print("\n" + format_table(["measurement", f"{record['gpu']}"], rows))
    ok = all(r["forward_max_abs"] < 1e-4 and r["grad_max_rel"] < 1e-3 and r["deterministic"] and r["finite"]
             for r in record["parity"])
    record["parity_ok"] = ok
    record["seconds"] = time.perf_counter() - start
    print(f"\nCUDA parity with the CPU kernel: {'PASS' if ok else 'FAIL'}; {record['seconds']:.0f} s")
    emit_json(record, args.json)
    return 0
