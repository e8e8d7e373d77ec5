"""``gfix-export``: fold a video's enhancer adapter into the base and export it."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from gfix_sdk._signals import exit_status, forget_handled_interrupt, termination_raises
from gfix_sdk.errors import GFixError

EPILOG = """examples:
  gfix-export clip.gfix --base ~/models/sd-turbo --out clip-export                 ONNX, recipe sd-turbo-512
  gfix-export clip.gfix --base ~/models/sd-turbo --out clip-export --format both   + TensorRT engine (NVIDIA GPU)
  gfix-export clip.gfix --base tiny-sd --out tiny-export --recipe tiny-cpu         the tiny stand-in, CPU

outputs (in --out):
  enhancer.onnx     the whole single-step enhancer, adapters folded in, prompt and timestep baked
  refit_map.json    folded weight -> ONNX initializer name (what a TensorRT refit sets)
  export.json       what was exported (base hash, adapter hash, patch, batch, opset, t)
  enhancer.engine   (trt/both) TensorRT engine refitted with this video's weights; the
                    refit-enabled base engine is cached under $GFIX_CACHE/tensorrt
"""


def build_parser() -> argparse.ArgumentParser:
    from gfix_sdk.export.recipes import available_recipes

    parser = argparse.ArgumentParser(
        prog="gfix-export",
        description="Decode a .gfix file's enhancer adapter, fold its modulations into the base weights "
                    "(no adapter ops remain), and export the enhancer as ONNX and/or a TensorRT engine.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", help=".gfix file with an enhancer (gfix encode --enhance)")
    parser.add_argument("--base", help="the local SD-Turbo directory the video was encoded with (default: $GFIX_BASE)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--format", choices=["onnx", "trt", "both"], default="onnx")
    parser.add_argument("--recipe", default="sd-turbo-512",
                        help=f"export recipe (default: sd-turbo-512; available: {', '.join(available_recipes())})")
    parser.add_argument("--patch", type=int, help="patch size, multiple of 8 (overrides the recipe)")
    parser.add_argument("--max-batch", type=int, help="largest batch (overrides the recipe)")
    parser.add_argument("--fp16", action="store_true", help="FP16 TensorRT engine (overrides the recipe)")
    parser.add_argument("--opset", type=int, help="ONNX opset (overrides the recipe)")
    return parser


def run(args: argparse.Namespace) -> dict:
    import torch

    from gfix_sdk.bitstream.reader import GFixReader
    from gfix_sdk.enhance.pipeline import load_enhancer
    from gfix_sdk.export.folded import FoldedEnhancer
    from gfix_sdk.export.onnx_export import export_onnx, refit_name_map
    from gfix_sdk.export.recipes import load_recipe

    recipe = load_recipe(args.recipe)
    patch = args.patch or recipe.patch
    batch = (recipe.batch[0], min(recipe.batch[1], args.max_batch or recipe.batch[2]), args.max_batch or recipe.batch[2])
    opset = args.opset or recipe.opset
    fp16 = args.fp16 or recipe.precision == "fp16"
    if args.format in ("trt", "both"):
        from gfix_sdk.export.tensorrt_engine import require_tensorrt

        require_tensorrt()  # fail before the slow export when TensorRT cannot run here
    with GFixReader(args.video) as reader:
        payload = reader.enhancer()
    if payload is None:
        raise GFixError(f"{args.video} has no enhancer adapter: it was encoded without --enhance, or the "
                        "encoder dropped an adapter that did not help (`gfix info` says why)")
    enhancer, coded = load_enhancer(payload, args.base, "cpu")
    enhancer.config = dataclasses.replace(enhancer.config, patch=patch)  # the graph is fully convolutional
    folded = FoldedEnhancer(enhancer, inplace=True)  # the enhancer is not needed afterwards
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = export_onnx(folded, out / "enhancer.onnx", max_batch=batch[2], opset=opset)
    names = refit_name_map(folded, result.path)
    (out / "refit_map.json").write_text(json.dumps(names, indent=1, sort_keys=True))
    record = {
        "video": str(args.video), "base_hash": coded.base_hash.hex(),
        "adapter_sha256": hashlib.sha256(payload).hexdigest(), "adapter_mode": coded.config.mode,
        "timestep": float(coded.t), "patch": patch, "batch": list(batch), "opset": opset,
        "onnx": result.path.name, "onnx_bytes": result.num_bytes, "folded_weights": len(names),
        "export_seconds": round(result.seconds, 2), "torch": torch.__version__,
    }
    if args.format in ("trt", "both"):
        import shutil

        from gfix_sdk.export.onnx_refit import weights_layout
        from gfix_sdk.export.tensorrt_engine import TensorRTEngine, cached_engine, engine_key
        from gfix_sdk.paths import cache_root

        key = engine_key(coded.base_hash, patch, batch, fp16, weights_layout(folded.folded_weights()))
        engine_path = cached_engine(cache_root() / "tensorrt", result.path, key)
        with TensorRTEngine(engine_path) as engine:
            weights = folded.folded_weights()
            engine.refit({names[n]: weights[n].numpy() for n in weights})
            (out / "enhancer.engine").write_bytes(bytes(engine.engine.serialize()))
        shutil.copy(engine_path.with_suffix(".json"), out / "engine_key.json")
        record.update(engine="enhancer.engine", fp16=fp16)
    (out / "export.json").write_text(json.dumps(record, indent=2))
    return record


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with termination_raises():  # SIGTERM/SIGHUP unwind too: temporaries are removed
            record = run(args)
    except (GFixError, FileNotFoundError, ValueError) as exc:
        print(f"gfix-export: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        forget_handled_interrupt()  # the status below is the answer, also under `python -m`
        print("gfix-export: interrupted (no export was written)", file=sys.stderr)
        return exit_status(exc)
    print(f"exported {record['onnx']} ({record['onnx_bytes'] / 1e6:.1f} MB, {record['folded_weights']} folded "
          f"weights, patch {record['patch']}, batch <= {record['batch'][2]}, t = {record['timestep']:.1f}) to {args.out}")
    if "engine" in record:
        print(f"TensorRT engine: {args.out}/{record['engine']} ({'FP16' if record['fp16'] else 'FP32'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
