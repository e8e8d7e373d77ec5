"""Scale-out on Ray: GOP-parallel encoding of the bundled clip, 1 worker vs N.

The bundled clip (320x180, 16 frames) is encoded with the ``--preset`` codec
settings and ``--gop`` frames per GOP three ways:

* **1 worker** - ``encode_video(workers=1)``: the sequential encoder, no Ray,
  on as many CPUs as the N workers have together (N x ``--cpus-per-worker``),
  so that the comparison is at equal CPU (shown in the table).
* **1 worker, worker-sized** - the same on ``--cpus-per-worker`` CPUs: the
  base of the per-worker scale-out (N workers vs one of them), printed
  beside the equal-CPU speed-up the target is judged on.
* **N workers, cold** - ``encode_video(workers=N)`` as ``gfix encode
  --workers N`` runs it (each task on ``--cpus-per-worker`` CPUs): a local
  Ray runtime is started and stopped inside the timed call, so its start-up
  is part of the time.
* **N workers, warm** - the same on a runtime already running (a cluster, or
  ``gfix encode-many`` after its first video): GOP tasks only.

Every run fits its GOPs with torch on ``threads_per_gop`` threads (the
default, 1) and rasterizes on all the CPUs it has, and must write the same
bytes (sha256). The speed-up is the 1-worker
time over each N-worker time; the target (on a 2-core machine, N = 2) is
>= 1.6x. Per-GOP times of the 1-worker run are printed too: they are what a
GOP task costs, the unit for estimating larger jobs. The ceiling line is the
most the equal-CPU speed-up could be with perfect scale-out and no overhead
(N x the 1-worker time / the worker-sized time): on 2 cores it is below the
1.6x target whenever the 1-worker run gains more than 1.25x from its second
core.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from gfix_sdk.bench._common import emit_json, format_table, machine_info
from gfix_sdk.scale.gop import THREADS_PER_GOP

SPEEDUP_TARGET = 1.6  #: 1-worker time / N-worker time, at least (cold runtime)


def _encode(source: Path, out: Path, config, workers: int, cpus_per_worker: int | None,
            on_frame=None) -> dict[str, Any]:
    from gfix_sdk.encoder import encode_video

    start = time.perf_counter()
    report = encode_video(source, out, config=config, progress=False, device="cpu", workers=workers,
                          cpus_per_worker=cpus_per_worker, on_frame=on_frame)
    seconds = time.perf_counter() - start
    return {"workers": workers, "seconds": seconds, "bytes": report.num_bytes,
            "sha256": hashlib.sha256(out.read_bytes()).hexdigest(), "key_frames": report.key_frames,
            "mean_psnr": report.mean_psnr}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from gfix_sdk.gaussians.sequence import PRESETS
    from gfix_sdk.io import bundled_clip_path
    from gfix_sdk.scale.runtime import ray_runtime

    config = replace(PRESETS[args.preset], gop=args.gop,
                     **({"gaussians": args.gaussians} if args.gaussians else {}))
    source = bundled_clip_path()
    cpus = args.cpus_per_worker or max(1, (os.cpu_count() or 1) // args.workers)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gfix-bench-scale-") as tmp:
        tmp_path = Path(tmp)
        stamps: list[float] = []
        print(f"1 worker (no Ray) on {args.workers * cpus} CPUs ...", flush=True)
        # Equal CPU: the sequential encoder rasterizes on this process's torch threads.
        threads = torch.get_num_threads()
        torch.set_num_threads(args.workers * cpus)
        try:
            began = time.perf_counter()
            one = _encode(source, tmp_path / "one.gfix", config, 1, None,
                          on_frame=lambda coded: stamps.append(time.perf_counter()))
        finally:
            torch.set_num_threads(threads)
        frame_seconds = [t - s for t, s in zip(stamps, [began, *stamps[:-1]])]
        one.update(label="1 worker", cpus=f"1 x {args.workers * cpus}")
        runs.append(one)
        small = None
        if args.workers > 1:
            # One worker the size of each parallel one: the per-worker scale-out
            # (how close N workers come to N x one of them).
            print(f"1 worker (no Ray) on {cpus} CPU(s) ...", flush=True)
            torch.set_num_threads(cpus)
            try:
                small = _encode(source, tmp_path / "small.gfix", config, 1, None)
            finally:
                torch.set_num_threads(threads)
            small.update(label="1 worker (worker-sized)", cpus=f"1 x {cpus}")
            runs.append(small)
        print(f"{args.workers} workers, cold local runtime ...", flush=True)
        cold = _encode(source, tmp_path / "cold.gfix", config, args.workers, cpus)
        cold.update(label=f"{args.workers} workers (cold)", cpus=f"{args.workers} x {cpus}")
        runs.append(cold)
        if not args.skip_warm:
            print(f"{args.workers} workers, warm runtime ...", flush=True)
            start = time.perf_counter()
            with ray_runtime(None, num_cpus=args.workers * cpus):
                startup = time.perf_counter() - start
                warm = _encode(source, tmp_path / "warm.gfix", config, args.workers, cpus)
            warm.update(label=f"{args.workers} workers (warm)", cpus=f"{args.workers} x {cpus}",
                        runtime_start_seconds=startup)
            runs.append(warm)
    ceiling = None
    if small is not None:
        # N workers of `cpus` CPUs can at best divide the worker-sized time by
        # N: the most they can gain on the equal-CPU 1-worker run.
        ceiling = args.workers * one["seconds"] / small["seconds"]
    for r in runs:
        r["speedup"] = one["seconds"] / r["seconds"]
        r["same_bytes"] = r["sha256"] == one["sha256"]
        if small is not None and r["workers"] > 1:
            r["speedup_per_worker"] = small["seconds"] / r["seconds"]
    gop_seconds = [sum(frame_seconds[i:i + config.gop]) for i in range(0, len(frame_seconds), config.gop)]
    return {"config": {"preset": args.preset, "gop": config.gop, "gaussians": config.gaussians,
                       "threads_per_gop": THREADS_PER_GOP},
            "frames": len(frame_seconds), "runs": runs, "speedup_ceiling": ceiling, "frame_seconds": frame_seconds,
            "gop_seconds": gop_seconds}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gfix_sdk.bench scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="workers of the parallel runs (default: 2)")
    parser.add_argument("--gop", type=int, default=4, help="frames per GOP (default: 4)")
    parser.add_argument("--preset", choices=["fast", "medium", "slow"], default="medium")
    parser.add_argument("--gaussians", type=int, help="Gaussians per frame (default: the preset's)")
    parser.add_argument("--cpus-per-worker", type=int, help="CPUs per GOP task (default: cores / workers)")
    parser.add_argument("--skip-warm", action="store_true", help="leave out the warm-runtime run")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)

    result = run(args)
    cfg = result["config"]
    print(f"\nBundled clip 320x180, {result['frames']} frames, preset {cfg['preset']}, {cfg['gaussians']} Gaussians, "
          f"GOP {cfg['gop']}; CPU")
    print(f"Equal CPU: workers x CPUs each; every GOP fitted on {cfg['threads_per_gop']} torch thread(s), "
          "rasterized on all its CPUs")
    print(format_table(["run", "CPUs", "seconds", "speed-up", "bytes", "sha256", "same bytes"],
                       [[r["label"], r["cpus"], r["seconds"], f"{r['speedup']:.2f}x", r["bytes"], r["sha256"][:16],
                         "yes" if r["same_bytes"] else "NO"] for r in result["runs"]]))
    warm = [r for r in result["runs"] if "runtime_start_seconds" in r]
    if warm:
        print(f"local Ray runtime start-up (not in the warm time): {warm[0]['runtime_start_seconds']:.1f} s")
    gops = result["gop_seconds"]
    print(f"per-GOP time, 1 worker: {', '.join(f'{s:.1f}' for s in gops)} s "
          f"(mean {sum(gops) / len(gops):.1f} s; key frame {result['frame_seconds'][0]:.1f} s)")
    cold = next(r for r in result["runs"] if r["workers"] > 1)
    for r in result["runs"]:
        if "speedup_per_worker" in r:
            print(f"{r['label']} vs 1 worker of the same size: "
                  f"{r['speedup_per_worker']:.2f}x (per-worker scale-out; no target)")
    if result["speedup_ceiling"] is not None:
        print(f"ceiling of the equal-CPU speed-up ({args.workers} x 1-worker time / worker-sized time: perfect "
              f"scale-out, no overhead): {result['speedup_ceiling']:.2f}x")
    ok = cold["speedup"] >= SPEEDUP_TARGET and all(r["same_bytes"] for r in result["runs"])
    print(f"\nTarget: {args.workers} workers (cold) >= {SPEEDUP_TARGET}x faster, same bytes: "
          f"{cold['speedup']:.2f}x  {'PASS' if ok else 'FAIL'}")
    emit_json({"bench": "scale", "machine": machine_info(), "args": vars(args),
               "targets": {"speedup": SPEEDUP_TARGET}, **result}, args.json)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
