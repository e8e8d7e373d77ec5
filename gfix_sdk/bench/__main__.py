"""``python -m gfix_sdk.bench <benchmark> [options]`` (``--help`` per benchmark)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

BENCHMARKS = {
    "raster": ("gfix_sdk.bench.raster", "2D Gaussian rasterizer: native vs PyTorch references"),
    "codec": ("gfix_sdk.bench.codec", "Gaussian codec speed: 1080p frame decode, 384x256 key-frame fit"),
    "rd": ("gfix_sdk.bench.rd", "rate-distortion on the bundled clip vs x264, x265 and SVT-AV1, with BD-rate"),
    "decode": ("gfix_sdk.bench.decode", "GFix per-stage decode latency for each enhancer backend (+ export cost)"),
    "export": ("gfix_sdk.bench.export", "one-off deployment cost per video: load, fold, ONNX, ORT, TensorRT build vs refit"),
    "gfix": ("gfix_sdk.bench.gfix", "GFix (Gaussian codec + enhancer) vs the Gaussian codec alone, equal rate"),
    "scale": ("gfix_sdk.bench.scale", "scale-out on Ray: bundled clip, GOP-parallel encoding, 2 workers vs 1, same bytes"),
    "gpu": ("gfix_sdk.bench.gpu", "GPU check: CUDA raster parity with the CPU kernel, raster/decode/fit/enhance timings"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in BENCHMARKS:
        print("usage: python -m gfix_sdk.bench <benchmark> [options]\n\nbenchmarks:")
        for name, (_, summary) in BENCHMARKS.items():
            print(f"  {name:10s} {summary}")
        if args and args[0] not in ("-h", "--help"):
            print(f"\nunknown benchmark: {args[0]}", file=sys.stderr)
            return 2
        return 0
    module = __import__(BENCHMARKS[args[0]][0], fromlist=["main"])
    return module.main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
