"""One-off cost of deploying a GFix video's enhancer, stage by stage.

Two videos are GFix-encoded from the bundled clip (its first and second
halves, an adapter each, trained for a few steps on ``--base``; default: the
tiny pretrained stand-in). For each video, in order:

* ``load``       - decode the adapter, load the base, inject and apply it;
* ``fold``       - fold the decoded modulations into the base weights;
* ``onnx``       - export the folded enhancer to ONNX, ``onnx.checker``,
                   shape inference;
* ``refit map``  - match every folded weight to an ONNX initializer name;
* ``ort open``   - create the ONNX Runtime session (graph optimisation);
* ``onnx refit`` - video B only: A's graph with B's folded weights written
                   in (what the decoder's export cache does for a new video);
* ``tensorrt``   - video A: build the refit-enabled engine; video B: refit
                   video A's engine with B's weights, and, for comparison,
                   rebuild it from B's graph (needs TensorRT and a CUDA GPU;
                   otherwise the row says why it is missing).

Then the ONNX Runtime output of each video is compared with its PyTorch
enhancer on the same patches (max abs difference). Reproduce the GPU rows
with ``python -m gfix_sdk.bench export --base /path/to/sd-turbo --patch 512``
on a machine with TensorRT.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import torch

from gfix_sdk.bench._common import emit_json, format_table, machine_info, package_versions

T = TypeVar("T")
STAGES = ("load", "fold", "onnx", "refit map", "ort open")


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, (time.perf_counter() - start) * 1e3


def _tensorrt_missing() -> str | None:
    from gfix_sdk.export.tensorrt_engine import TensorRTUnavailableError, require_tensorrt

    try:
        require_tensorrt()
    except TensorRTUnavailableError as exc:
        return str(exc).splitlines()[0]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gfix_sdk.bench export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="base model directory (default: the tiny pretrained stand-in)")
    parser.add_argument("--patch", type=int, help="patch bound of the exported graph (default: the base's)")
    parser.add_argument("--max-batch", type=int, default=8, help="largest patch batch of the graph (default: 8)")
    parser.add_argument("--gaussians", type=int, default=2000, help="Gaussians per frame of the two videos")
    parser.add_argument("--json", metavar="PATH", help="also write the JSON record here")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    from gfix_sdk.encoder import encode_frames
    from gfix_sdk.bitstream.reader import GFixReader
    from gfix_sdk.enhance.model import AdapterConfig
    from gfix_sdk.enhance.pipeline import EnhanceSettings, load_enhancer
    from gfix_sdk.enhance.train import TrainConfig
    from gfix_sdk.export import FoldedEnhancer, export_onnx, refit_onnx, weights_layout
    from gfix_sdk.export.onnx_export import INPUT_NAME, refit_name_map
    from gfix_sdk.gaussians.sequence import PRESETS
    from gfix_sdk.io import load_bundled_clip

    frames, info = load_bundled_clip()
    halves = {"A": frames[: len(frames) // 2], "B": frames[len(frames) // 2:]}
    trt_missing = _tensorrt_missing()
    stages: dict[str, dict[str, float]] = {}
    parity: dict[str, float] = {}
    record: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = args.base
        if base is None:
            from gfix_sdk.enhance.tiny import install_tiny_base

            base = str(install_tiny_base(Path(tmp) / "tiny_sd"))
        settings = EnhanceSettings(base=base, adapter=AdapterConfig(patch=args.patch),
                                   train=TrainConfig(steps=20), device="cpu", always_keep=True)
        exports = {}
        for name, clip in halves.items():
            path = Path(tmp) / f"{name}.gfix"
            encode_frames(clip, path, width=info.width, height=info.height, fps=info.fps,
                          config=replace(PRESETS["fast"], gaussians=args.gaussians), progress=False,
                          enhance=settings)
            with GFixReader(path) as reader:
                payload = reader.enhancer()
            times: dict[str, float] = {}
            (enhancer, coded), times["load"] = _timed(lambda: load_enhancer(payload, base, "cpu"))
            patch = coded.config.patch
            patches = torch.rand(min(4, args.max_batch), 3, patch, patch,
                                 generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                reference = enhancer(patches).clamp(0, 1)  # the exported graph clamps its output
            folded, times["fold"] = _timed(lambda: FoldedEnhancer(enhancer, inplace=True))
            exported, times["onnx"] = _timed(
                lambda: export_onnx(folded, Path(tmp) / name / "enhancer.onnx", max_batch=args.max_batch))
            _, times["refit map"] = _timed(lambda: refit_name_map(folded, exported.path))
            session, times["ort open"] = _timed(
                lambda: ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"]))
            ours = torch.from_numpy(session.run(None, {INPUT_NAME: patches.numpy()})[0])
            parity[name] = float((ours - reference).abs().max())
            stages[name] = times
            exports[name] = (exported, folded, coded, patches, reference)
            record[name] = {"onnx_bytes": exported.num_bytes, "folded_weights": len(folded.folded_weights()),
                            "adapter_bytes": len(payload)}
            print(f"video {name}: done", flush=True)

        # Video B again, the way the decoder's cache does it: A's graph with B's weights written in.
        (onnx_a, _, coded_a, _, _), (onnx_b, folded_b, _, patches_b, reference_b) = exports["A"], exports["B"]
        refitted, onnx_refit_ms = _timed(
            lambda: refit_onnx(onnx_a.path, folded_b.folded_weights(), Path(tmp) / "B-refit" / "enhancer.onnx"))
        session = ort.InferenceSession(str(refitted), providers=["CPUExecutionProvider"])
        ours = torch.from_numpy(session.run(None, {INPUT_NAME: patches_b.numpy()})[0])
        parity["B refit"] = float((ours - reference_b).abs().max())

        trt_ms: dict[str, float | None] = {"build A": None, "refit B": None, "rebuild B": None}
        if trt_missing is None:
            from gfix_sdk.export.tensorrt_engine import TensorRTEngine, build_engine, engine_key

            key = engine_key(coded_a.base_hash, coded_a.config.patch, (1, args.max_batch, args.max_batch), True,
                             weights_layout(folded_b.folded_weights()))
            engine_bytes, trt_ms["build A"] = _timed(lambda: build_engine(onnx_a.path, key))
            engine_path = Path(tmp) / "A.engine"
            engine_path.write_bytes(engine_bytes)
            with TensorRTEngine(engine_path) as engine:
                names = refit_name_map(folded_b, onnx_b.path)
                weights = folded_b.folded_weights()
                _, trt_ms["refit B"] = _timed(lambda: engine.refit({names[n]: weights[n].numpy() for n in weights}))
            _, trt_ms["rebuild B"] = _timed(lambda: build_engine(onnx_b.path, key))

    rows = [[stage, stages["A"][stage], stages["B"][stage]] for stage in STAGES]
    rows.append(["total (CPU stages)", sum(stages["A"].values()), sum(stages["B"].values())])
    rows.append(["onnx refit (instead of onnx)", "", onnx_refit_ms])
    if trt_missing is None:
        rows.append(["tensorrt build / refit", trt_ms["build A"], trt_ms["refit B"]])
        rows.append(["tensorrt rebuild", "", trt_ms["rebuild B"]])
    print(f"\nGFix export, base {'tiny stand-in' if args.base is None else args.base}, patch {patch}, "
          f"batch <= {args.max_batch}, {record['A']['folded_weights']} folded weights, "
          f"ONNX {record['A']['onnx_bytes'] / 1e6:.1f} MB")
    print(format_table(["stage", "video A ms", "video B ms"], rows))
    print(f"ONNX Runtime vs PyTorch, max abs difference: A {parity['A']:.2e}, B {parity['B']:.2e}, "
          f"B through A's refitted graph {parity['B refit']:.2e}")
    record["onnx_refit_speedup"] = stages["B"]["onnx"] / onnx_refit_ms
    print(f"ONNX, second video: refit {onnx_refit_ms:.0f} ms vs export {stages['B']['onnx']:.0f} ms "
          f"({record['onnx_refit_speedup']:.0f}x)")
    if trt_missing is None:
        ratio = trt_ms["rebuild B"] / trt_ms["refit B"]
        record["refit_speedup"] = ratio
        print(f"TensorRT, second video: refit {trt_ms['refit B']:.0f} ms vs rebuild {trt_ms['rebuild B']:.0f} ms "
              f"({ratio:.0f}x)")
    else:
        print(f"TensorRT rows not measured: {trt_missing}")
    emit_json({"bench": "export", "machine": machine_info(), "versions": package_versions(), "args": vars(args),
               "stages_ms": stages, "onnx_refit_ms": onnx_refit_ms, "tensorrt_ms": trt_ms, "tensorrt_missing": trt_missing,
               "ort_vs_torch_max_abs": parity, **record}, args.json)
    return 0
