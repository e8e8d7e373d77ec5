"""GFix vs the Gaussian codec alone, on the bundled clip, at equal total rate.

For each ``--gaussians`` rate point the clip is encoded by the Gaussian codec
(medium preset); GFix adds the enhancer adapter trained on that point's
decoded frames (``--steps`` steps, lambda preset ``--rate-point``). Rates
count whole ``.gfix`` files, so GFix's points include the adapter. Both
curves are decoded with :class:`~gfix_sdk.runtime.Decoder` and scored with
PSNR, MS-SSIM and, when ``--lpips`` weights are given, LPIPS; BD-rate of
GFix against the Gaussian codec is given per metric (LPIPS is lower-better).

The enhancer runs on the base given by ``--base`` (default: the shipped tiny
pretrained stand-in for SD-Turbo, which is what this machine can run). The
numbers therefore show the pipeline at work, not SD-Turbo's quality.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gfix_sdk.bench._common import emit_json, format_table, machine_info


def _scores(reference: np.ndarray, decoded: np.ndarray, lpips_model) -> dict[str, float]:
    from gfix_sdk.metrics import sequence_metrics

    m = sequence_metrics(reference, decoded)
    scores = {"psnr": m["mean_psnr"], "ms_ssim": m["mean_ms_ssim"]}
    if lpips_model is not None:
        to = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # noqa: E731
        with torch.no_grad():
            scores["lpips"] = float(lpips_model(to(decoded), to(reference)).mean())
    return scores


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gfix_sdk.bench gfix", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gaussians", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    parser.add_argument("--base", help="base model directory (default: the shipped tiny pretrained model)")
    parser.add_argument("--steps", type=int, default=300, help="enhancer training steps (default: 300)")
    parser.add_argument("--rate-point", type=int, default=2, choices=[1, 2, 3, 4, 5])
    parser.add_argument("--lr", type=float, help="adapter learning rate (default: 0.005 for the tiny base, "
                                                "else the paper's 0.05)")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--lpips", help="LPIPS weights file (gfix_sdk.perceptual) to also score LPIPS")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)

    from gfix_sdk.bitstream.encode import encode_frames
    from gfix_sdk.bitstream.format import SECTION_OVERHEAD
    from gfix_sdk.enhance.model import AdapterConfig
    from gfix_sdk.enhance.pipeline import EnhanceSettings
    from gfix_sdk.enhance.train import LAMBDA_PRESETS, TINY_BASE_LR, TrainConfig
    from gfix_sdk.gaussians.sequence import PRESETS
    from gfix_sdk.io import load_bundled_clip
    from gfix_sdk.metrics import bd_rate
    from gfix_sdk.runtime import Decoder

    lpips_model = None
    if args.lpips:
        from gfix_sdk.perceptual import load_lpips

        lpips_model = load_lpips(args.lpips, net="alex")
    frames, info = load_bundled_clip(max_frames=args.frames)
    start = time.perf_counter()
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = args.base
        if base is None:
            from gfix_sdk.enhance.tiny import install_tiny_base

            base = str(install_tiny_base(Path(tmp) / "tiny_sd"))
        settings = EnhanceSettings(
            base=base, adapter=AdapterConfig(patch=args.patch),
            train=TrainConfig(steps=args.steps, lmbda=LAMBDA_PRESETS[args.rate_point],
                              lr=args.lr or (TINY_BASE_LR if args.base is None else TrainConfig().lr)))
        for n in args.gaussians:
            path = Path(tmp) / f"gfix_{n}.gfix"
            report = encode_frames(frames, path, width=info.width, height=info.height, fps=info.fps,
                                   config=replace(PRESETS["medium"], gaussians=n), total=len(frames),
                                   enhance=settings, progress=False)
            # The same file without its ENHANCER section: the Gaussian codec alone.
            gaussian_bytes = report.num_bytes - report.enhancer_bytes - SECTION_OVERHEAD
            for kind, enhance in (("gaussian", False), ("gfix", True)):
                with Decoder.open(path, base=base, enhance=enhance) as decoder:
                    decoded = np.stack(list(decoder.frames()))
                size = report.num_bytes if enhance else gaussian_bytes
                points.append({"codec": kind, "gaussians": n, "bytes": size,
                               "kbps": 8 * size / (len(frames) / info.fps) / 1000,
                               "adapter_bytes": report.enhancer_bytes if enhance else 0,
                               "t": float(report.training.history[-1]["t"]) if enhance else None,
                               **_scores(frames, decoded, lpips_model)})
            print(f"N={n}: done ({time.perf_counter() - start:.0f} s)", flush=True)

    metrics = ["psnr", "ms_ssim"] + (["lpips"] if lpips_model is not None else [])
    rows = [[p["codec"], p["gaussians"], p["kbps"], p["adapter_bytes"]] + [p[m] for m in metrics] for p in points]
    print(f"\nBundled clip {info.width}x{info.height}, {len(frames)} frames; enhancer base: {base}")
    print(format_table(["codec", "N", "kbps", "adapter B"] + metrics, rows))
    bd = {}
    anchor = [p for p in points if p["codec"] == "gaussian"]
    test = [p for p in points if p["codec"] == "gfix"]
    for m in metrics:
        try:
            bd[m] = bd_rate([p["kbps"] for p in anchor], [p[m] for p in anchor], [p["kbps"] for p in test],
                            [p[m] for p in test], higher_is_better=(m != "lpips"))
            print(f"BD-rate GFix vs Gaussian codec ({m}): {bd[m]:+.1f} %")
        except ValueError as exc:
            bd[m] = f"n/a ({exc})"
            print(f"BD-rate GFix vs Gaussian codec ({m}): n/a ({exc})")
    emit_json({"bench": "gfix", "machine": machine_info(), "args": vars(args), "points": points, "bd_rate": bd},
              args.json)
    return 0
