"""GFix vs the Gaussian codec alone, on the bundled clip, at equal total rate.

For each ``--gaussians`` rate point the clip is encoded once by the Gaussian
codec (medium preset) and the enhancer adapter is trained on that point's
decoded frames (lambda preset ``--rate-point``; steps, patch and learning
rate are the base's defaults unless given). The same ``.gfix`` file is then
decoded twice with :class:`~gfix_sdk.runtime.Decoder`: without enhancement
(the Gaussian codec's point: the file's size minus the ENHANCER section) and
with it (GFix's point: the whole file, adapter included). When the encoder's
do-no-harm decision drops the adapter, GFix's point is the plain Gaussian
stream. Both are scored with PSNR, MS-SSIM, LPIPS (AlexNet; the installed
weights or ``--lpips``), VMAF (libvmaf's ``vmaf_v0.6.1``) and VMAF-NEG
(its no-enhancement-gain model: a VMAF gain bought by sharpening or contrast
shows as a gap between the two), and BD-rates of GFix against the Gaussian
codec are given per metric (LPIPS lower-is-better).

Targets (GFix's promise on this clip): LPIPS BD-rate <= -25 %, VMAF BD-rate
<= +5 %, and PSNR at every point at most 0.5 dB below the Gaussian codec's.

The enhancer runs on ``--base`` (default: the shipped tiny pretrained
stand-in for SD-Turbo, which is what a CPU can run).
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

from gfix_sdk.bench._common import emit_json, format_table, machine_info

LPIPS_BD_TARGET = -25.0  #: percent, at most
VMAF_BD_TARGET = 5.0  #: percent, at most
PSNR_DROP_TARGET = 0.5  #: dB, at most, at every rate point


def _scores(reference: np.ndarray, decoded: np.ndarray, fps: float, lpips, vmaf, vmaf_neg=None) -> dict[str, float]:
    from gfix_sdk.metrics import sequence_metrics

    m = sequence_metrics(reference, decoded)
    scores = {"psnr": m["mean_psnr"], "ms_ssim": m["mean_ms_ssim"]}
    if lpips is not None:
        scores["lpips"] = lpips(reference, decoded).value
    if vmaf is not None:
        scores["vmaf"] = vmaf(reference, decoded, fps=fps).value
    if vmaf_neg is not None:
        scores["vmaf_neg"] = vmaf_neg(reference, decoded, fps=fps).value
    return scores


def _targets(points: list[dict[str, Any]], bd: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(what, measured, passed) for each target; passed is None when it cannot be measured."""
    out = []
    for metric, limit in (("lpips", LPIPS_BD_TARGET), ("vmaf", VMAF_BD_TARGET)):
        value = bd.get(metric)
        ok = value <= limit if isinstance(value, float) else None
        shown = f"{value:+.1f} %" if isinstance(value, float) else str(value or "not measured")
        out.append((f"{metric.upper()} BD-rate <= {limit:+.0f} %", shown, ok))
    gauss = {p["gaussians"]: p["psnr"] for p in points if p["codec"] == "gaussian"}
    drops = [gauss[p["gaussians"]] - p["psnr"] for p in points if p["codec"] == "gfix"]
    worst = max(drops) if drops else float("nan")
    out.append((f"PSNR drop at every point <= {PSNR_DROP_TARGET} dB", f"{worst:+.2f} dB (worst)",
                bool(drops) and worst <= PSNR_DROP_TARGET))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gfix_sdk.bench gfix", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gaussians", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    parser.add_argument("--base", help="base model directory (default: the shipped tiny pretrained model)")
    parser.add_argument("--steps", type=int, help="enhancer training steps (default: the base's)")
    parser.add_argument("--rate-point", type=int, default=3, choices=[1, 2, 3, 4, 5],
                        help="lambda preset (default: 3)")
    parser.add_argument("--lr", type=float, help="adapter learning rate (default: the base's)")
    parser.add_argument("--patch", type=int, help="enhancer patch side (default: the base's)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--lpips", help="LPIPS-AlexNet weights for scoring (default: the installed ones)")
    parser.add_argument("--no-vmaf", action="store_true", help="skip VMAF")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)

    from gfix_sdk.encoder import encode_frames
    from gfix_sdk.bitstream.format import SECTION_OVERHEAD
    from gfix_sdk.enhance.model import AdapterConfig
    from gfix_sdk.enhance.pipeline import EnhanceSettings
    from gfix_sdk.enhance.train import LAMBDA_PRESETS, TrainConfig
    from gfix_sdk.gaussians.sequence import PRESETS
    from gfix_sdk.io import load_bundled_clip
    from gfix_sdk.metrics import MetricUnavailable, SequenceLPIPS, SequenceVMAF, bd_rate

    lpips = vmaf = vmaf_neg = None
    notes = []
    try:
        lpips = SequenceLPIPS.load(args.lpips, net="alex")
    except MetricUnavailable as exc:
        notes.append(str(exc))
    if not args.no_vmaf:
        try:
            vmaf = SequenceVMAF.load()
            vmaf_neg = SequenceVMAF.load(model="vmaf_v0.6.1neg")
        except MetricUnavailable as exc:
            notes.append(str(exc))
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
            train=TrainConfig(steps=args.steps, lmbda=LAMBDA_PRESETS[args.rate_point], lr=args.lr))
        from gfix_sdk.runtime import Decoder

        for n in args.gaussians:
            path = Path(tmp) / f"gfix_{n}.gfix"
            report = encode_frames(frames, path, width=info.width, height=info.height, fps=info.fps,
                                   config=replace(PRESETS["medium"], gaussians=n), total=len(frames),
                                   enhance=settings, progress=False)
            adapter = report.enhancer_bytes + SECTION_OVERHEAD if report.enhancer_bytes else 0
            decision = report.enhancer_decision
            for kind, enhance in (("gaussian", False), ("gfix", True)):
                with Decoder.open(path, base=base, enhance=enhance, backend="torch") as decoder:
                    decoded = np.stack(list(decoder.frames()))
                size = report.num_bytes if enhance else report.num_bytes - adapter
                points.append({"codec": kind, "gaussians": n, "bytes": size,
                               "kbps": 8 * size / (len(frames) / info.fps) / 1000,
                               "adapter_bytes": report.enhancer_bytes if enhance else 0,
                               "kept": decision.kept if enhance else None,
                               "strengths": [decision.luma_strength, decision.chroma_strength] if enhance else None,
                               "t": float(report.training.history[-1]["t"]) if enhance else None,
                               **_scores(frames, decoded, info.fps, lpips, vmaf, vmaf_neg)})
            print(f"N={n}: {decision.reason} ({time.perf_counter() - start:.0f} s)", flush=True)

    metrics = (["psnr", "ms_ssim"] + (["lpips"] if lpips is not None else [])
               + (["vmaf"] if vmaf is not None else []) + (["vmaf_neg"] if vmaf_neg is not None else []))
    rows = [[p["codec"], p["gaussians"], p["kbps"], p["adapter_bytes"]] + [p[m] for m in metrics] for p in points]
    print(f"\nBundled clip {info.width}x{info.height}, {len(frames)} frames; enhancer base: "
          f"{args.base or 'the tiny pretrained stand-in'}; lambda preset {args.rate_point}")
    print(format_table(["codec", "N", "kbps", "adapter B"] + metrics, rows))
    bd: dict[str, Any] = {}
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
    targets = _targets(points, bd)
    print("\n" + format_table(["target", "measured", "result"],
                              [[what, shown, {True: "PASS", False: "FAIL", None: "n/a"}[ok]]
                               for what, shown, ok in targets]))
    for note in notes:
        print(f"note: {note}")
    emit_json({"bench": "gfix", "machine": machine_info(), "args": vars(args), "points": points, "bd_rate": bd,
               "targets": {what: ok for what, _, ok in targets}, "seconds": time.perf_counter() - start},
              args.json)
    return 0
