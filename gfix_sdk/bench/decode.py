"""Per-stage decode latency of GFix, for every enhancer backend present.

The bundled clip is GFix-encoded once (Gaussian codec + an adapter trained
for a few steps on ``--base``; default: the tiny pretrained stand-in, the
only base this CPU can run). Each frame is then decoded stage by stage:

* ``entropy``   - bytes -> integer Gaussian grids (native rANS);
* ``rasterize`` - dequantise, rasterize (native kernel), convert to uint8;
* ``enhance``   - the enhancer on the frame's patches, per backend;

and as a stream through ``Decoder.frames()`` (with prefetching where it
pays), whose wall time per frame is the "pipelined" column. Medians over
frames; the first frame of each backend is a warm-up and not counted.
``open s`` is ``Decoder.open`` on a cold export cache (for ``onnxruntime``
that includes the ONNX export of the first video on a base; later videos
are refitted, see ``python -m gfix_sdk.bench export``). ``open 2nd s`` is
``Decoder.open`` of a second video on the same base (the clip with another
adapter) in a fresh process, caches warm: for ``onnxruntime`` the lean path
(no diffusers/transformers import, no enhancer rebuilt; the JSON says which
heavy modules the process imported and how long ``import gfix_sdk.runtime``
took), for ``torch`` the full rebuild with cached mLoRA factors and base
hash (see :mod:`gfix_sdk.runtime.factors`). ``export`` reports the
one-off cost of folding and exporting the ONNX graph (stage by stage:
``python -m gfix_sdk.bench export``).

Reference points for GPUs (not measured here): SD-Turbo at 512x512, one
step, on an A100 runs at about 36 ms end to end with ONNX Runtime +
TensorRT (Difix/pix2pix-turbo class models); reproduce ours on a GPU with
``python -m gfix_sdk.bench decode --base /path/to/sd-turbo --device cuda --patch 512``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gfix_sdk.bench._common import emit_json, format_table, machine_info, package_versions

# Issue 11's targets on a 2-core CPU with the tiny stand-in: the streamed decode
# hides entropy decoding and rasterization behind the enhancer, and a second
# video on a known base opens on the lean path.
TARGETS = {"stream_over_enhance": 1.2, "second_open_s": 1.0}

#: Times ``Decoder.open`` in a fresh interpreter (argv: file, base, device, backend).
_OPEN_SCRIPT = """
import json, sys, time
start = time.perf_counter()
from gfix_sdk.runtime import Decoder
imported = time.perf_counter()
with Decoder.open(sys.argv[1], base=sys.argv[2], device=sys.argv[3], backend=sys.argv[4]) as dec:
    opened = time.perf_counter()
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'diffusers', 'transformers'})
print(json.dumps({'import_s': imported - start, 'open_s': opened - imported, 'heavy': heavy}))
"""


def second_video(path: Path, base: str, out: Path) -> Path:
    """``path`` with another adapter (its values nudged, re-coded on the same
    steps): a second video on the same base, as far as the decoder can tell."""
    from gfix_sdk.bitstream import GFixReader
    from gfix_sdk.bitstream.writer import copy_with_enhancer
    from gfix_sdk.enhance.adapter import encode_adapter
    from gfix_sdk.enhance.pipeline import load_enhancer

    with GFixReader(path) as reader:
        enhancer, coded = load_enhancer(reader.enhancer(), base, "cpu")
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for group, tensors in enhancer.groups().items():
                for t in tensors:
                    t.add_(torch.randn(t.shape, generator=gen) * 2 * coded.steps[group])
        payload = encode_adapter(enhancer, coded.steps, coded.base_hash)
    return copy_with_enhancer(path, out, payload)


def open_in_fresh_process(path: Path, base: str, device: torch.device, backend: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", _OPEN_SCRIPT, str(path), base, str(device), backend],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gfix_sdk.bench decode", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="base model directory (default: the tiny pretrained stand-in)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--patch", type=int, help="enhancer patch bound (default: the base's)")
    parser.add_argument("--gaussians", type=int, default=3000)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--backends", nargs="+", help="default: every backend available on the device")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)

    from dataclasses import replace

    from gfix_sdk.encoder import encode_frames
    from gfix_sdk.enhance.model import AdapterConfig
    from gfix_sdk.enhance.pipeline import EnhanceSettings
    from gfix_sdk.enhance.tiling import enhance_frame
    from gfix_sdk.enhance.train import TrainConfig
    from gfix_sdk.gaussians.code import decode_frame
    from gfix_sdk.gaussians.quantize import dequantize
    from gfix_sdk.gaussians.reconstruct import to_uint8
    from gfix_sdk.gaussians.sequence import PRESETS
    from gfix_sdk.io import load_bundled_clip
    from gfix_sdk.runtime import Decoder
    from gfix_sdk.runtime.backends import available_backends

    device = torch.device(args.device)
    backends = args.backends or available_backends(device)
    frames, info = load_bundled_clip(max_frames=args.frames)
    results: dict[str, Any] = {"backends": {}}
    with tempfile.TemporaryDirectory() as tmp:
        # A private export cache: "open s" is then the cost of a first video on a
        # cold cache (ONNX export), whatever earlier runs left in ~/.cache/gfix.
        os.environ["GFIX_CACHE"] = str(Path(tmp) / "cache")
        base = args.base
        if base is None:
            from gfix_sdk.enhance.tiny import install_tiny_base

            base = str(install_tiny_base(Path(tmp) / "tiny_sd"))
        path = Path(tmp) / "clip.gfix"
        encode_frames(frames, path, width=info.width, height=info.height, fps=info.fps,
                      config=replace(PRESETS["fast"], gaussians=args.gaussians), progress=False,
                      enhance=EnhanceSettings(base=base, adapter=AdapterConfig(patch=args.patch),
                                              train=TrainConfig(steps=20), device=args.device,
                                              always_keep=True))  # a short training: keep it to time it
        for name in backends:
            start = time.perf_counter()
            with Decoder.open(path, base=base, device=device, backend=name) as dec:
                open_s = time.perf_counter() - start
                results["patch"], results["overlap"] = dec._tiles
                spec, ref = dec.quant_spec, None
                stage: dict[str, list[float]] = {"entropy": [], "rasterize": [], "enhance": []}
                for i in range(len(dec)):
                    t0 = time.perf_counter()
                    q = decode_frame(dec._reader.frame_payload(i), ref)
                    t1 = time.perf_counter()
                    image = to_uint8(dequantize(q, spec, info.height, info.width).to(device).render())
                    t2 = time.perf_counter()
                    enhance_frame(dec._backend, image, *dec._tiles)
                    t3 = time.perf_counter()
                    ref = q
                    if i:  # frame 0 warms up allocators and kernels
                        for key, value in zip(stage, (t1 - t0, t2 - t1, t3 - t2)):
                            stage[key].append(value * 1e3)
                start = time.perf_counter()
                count = sum(1 for _ in dec.frames())
                pipelined = (time.perf_counter() - start) * 1e3 / count
            medians = {k: statistics.median(v) for k, v in stage.items()}
            medians["sequential_total"] = sum(medians.values())
            results["backends"][name] = {"open_s": open_s, **{f"{k}_ms": v for k, v in medians.items()},
                                         "pipelined_ms": pipelined, "fps": 1000 / pipelined}
            print(f"{name}: done", flush=True)

        # A second video on the same base, opened in a fresh process (caches warm).
        second = second_video(path, base, Path(tmp) / "second.gfix")
        for name in backends:
            results["backends"][name]["second_open"] = open_in_fresh_process(second, base, device, name)

        # One-off cost of folding and exporting the ONNX graph.
        from gfix_sdk.bitstream.reader import GFixReader
        from gfix_sdk.enhance.pipeline import load_enhancer
        from gfix_sdk.export import FoldedEnhancer, export_onnx

        with GFixReader(path) as reader:
            payload = reader.enhancer()
        start = time.perf_counter()
        folded = FoldedEnhancer(load_enhancer(payload, base, "cpu")[0], inplace=True)
        exported = export_onnx(folded, Path(tmp) / "x" / "enhancer.onnx", max_batch=16)
        results["export"] = {"seconds": time.perf_counter() - start, "onnx_bytes": exported.num_bytes}

    rows = [[name, r["open_s"], r["second_open"]["open_s"], r["entropy_ms"], r["rasterize_ms"], r["enhance_ms"], r["sequential_total_ms"],
             r["pipelined_ms"], r["fps"]] for name, r in results["backends"].items()]
    print(f"\nGFix decode, bundled clip {info.width}x{info.height}, {args.gaussians} Gaussians/frame, patch "
          f"{results['patch']}, device {device}, base {'tiny stand-in' if args.base is None else args.base}")
    print(format_table(["backend", "open s", "open 2nd s", "entropy ms", "raster ms", "enhance ms", "sum ms", "pipelined ms",
                        "fps"], rows))
    timings = results["backends"]
    for name, r in timings.items():
        second = r["second_open"]
        print(f"{name}: second video opened in {second['open_s']:.2f} s in a fresh process "
              f"(+ {second['import_s']:.2f} s to import gfix_sdk.runtime); imported "
              f"{', '.join(second['heavy']) or 'neither diffusers nor transformers'}")
    if "torch" in timings and "onnxruntime" in timings:
        # No target: both run the folded weights (torch folds once at open), so
        # this compares two runtimes of one graph, not folding against none.
        ratio = timings["torch"]["enhance_ms"] / timings["onnxruntime"]["enhance_ms"]
        results["ort_speedup_enhance"] = ratio
        print(f"\nONNX Runtime vs folded PyTorch (enhance stage): {ratio:.2f}x")
    if "onnxruntime" in timings:
        ort = timings["onnxruntime"]
        overhead = ort["pipelined_ms"] / ort["enhance_ms"]
        second = ort["second_open"]
        lean = not second["heavy"]
        results["targets"] = {"ort_stream_over_enhance": overhead, "ort_second_open_s": second["open_s"],
                              "ort_second_open_lean": lean}
        print("Targets:")
        print(f"  onnxruntime stream vs its enhance stage  {overhead:.2f}x  (target <= {TARGETS['stream_over_enhance']}x)  "
              f"{'PASS' if overhead <= TARGETS['stream_over_enhance'] else 'FAIL'}")
        print(f"  onnxruntime second video open  {second['open_s']:.2f} s  (target <= {TARGETS['second_open_s']} s, "
              f"no diffusers/transformers)  {'PASS' if second['open_s'] <= TARGETS['second_open_s'] and lean else 'FAIL'}")
    print(f"export: fold + ONNX export + checks {results['export']['seconds']:.1f} s, "
          f"{results['export']['onnx_bytes'] / 1e6:.1f} MB")
    emit_json({"bench": "decode", "machine": machine_info(), "versions": package_versions(), "args": vars(args),
               **results}, args.json)
    return 0
