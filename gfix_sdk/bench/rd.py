"""Rate-distortion of the Gaussian codec against H.264 (x264) on the bundled clip.

Our codec is run at ``--gaussians`` rate points (medium preset); every rate
point is decoded with :class:`~gfix_sdk.runtime.Decoder` and scored against
the source. x264 (preset medium, main profile, yuv420p, via PyAV) is swept
over CRF once; from that sweep the table shows, for each of our points, the
x264 point of the closest bitrate ("rate-matched") and of the closest quality
("quality-matched"). BD-rate (Bjøntegaard, piecewise cubic ``pchip``) of ours
against x264 uses the quality-matched x264 points, so that both curves cover
the same quality range (at equal bitrate x264's quality is far above ours and
the curves would not overlap).

Rates: ours count the whole ``.gfix`` file (header, index and checksums
included); x264 counts its elementary-stream bytes (no container).
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


def _score(reference: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
    from gfix_sdk.metrics import sequence_metrics

    m = sequence_metrics(reference, decoded)
    return {"psnr": m["mean_psnr"], "ms_ssim": m["mean_ms_ssim"]}


def run_ours(frames: np.ndarray, fps: float, gaussians: list[int], preset: str, workdir: Path) -> list[dict[str, Any]]:
    from gfix_sdk.bitstream.encode import encode_frames
    from gfix_sdk.gaussians.sequence import PRESETS
    from gfix_sdk.runtime import Decoder

    height, width = frames.shape[1:3]
    points = []
    for n in gaussians:
        path = workdir / f"gs_{n}.gfix"
        report = encode_frames(frames, path, width=width, height=height, fps=fps,
                               config=replace(PRESETS[preset], gaussians=n), total=len(frames), progress=True)
        with Decoder.open(path) as decoder:
            decoded = np.stack(list(decoder.frames()))
        points.append({"codec": "gaussian", "param": f"N={n}", "bytes": report.num_bytes,
                       "kbps": report.bitrate_kbps, "bpp": report.bits_per_pixel,
                       "encode_s": report.seconds, **_score(frames, decoded)})
    return points


def run_x264(frames: np.ndarray, fps: float, crfs: list[int]) -> list[dict[str, Any]]:
    from gfix_sdk.anchors.h264 import H264Anchor

    anchor = H264Anchor(threads=1)  # one thread: reproducible bytes
    t, h, w = frames.shape[:3]
    points = []
    for crf in crfs:
        clip = anchor.encode(frames, fps, crf=crf)
        points.append({"codec": "x264", "param": f"CRF={crf}", "bytes": clip.num_bytes,
                       "kbps": clip.bitrate_kbps, "bpp": 8 * clip.num_bytes / (t * h * w),
                       **_score(frames, clip.decoded)})
    return points


def _closest(points: list[dict[str, Any]], key: str, value: float, *, log: bool = False) -> dict[str, Any]:
    distance = (lambda p: abs(np.log(p[key] / value))) if log else (lambda p: abs(p[key] - value))
    return min(points, key=distance)


def _bd(ours: list[dict[str, Any]], anchor: list[dict[str, Any]], metric: str) -> float | str:
    from gfix_sdk.metrics import bd_rate

    def unique(points):
        seen, out = set(), []
        for p in sorted(points, key=lambda p: p["kbps"]):
            if p[metric] not in seen:
                seen.add(p[metric])
                out.append(p)
        return out

    anchor = unique(anchor)
    try:
        return bd_rate([p["kbps"] for p in anchor], [p[metric] for p in anchor],
                       [p["kbps"] for p in ours], [p[metric] for p in ours])
    except ValueError as exc:
        return f"n/a ({exc})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gfix_sdk.bench rd", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gaussians", type=int, nargs="+", default=[1000, 2000, 4000, 8000],
                        help="Gaussians per frame of our rate points (default: 1000 2000 4000 8000)")
    parser.add_argument("--preset", default="medium", choices=["fast", "medium", "slow"])
    parser.add_argument("--frames", type=int, default=16, help="frames of the bundled clip (default: all 16)")
    parser.add_argument("--crf-min", type=int, default=10)
    parser.add_argument("--crf-max", type=int, default=51)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)

    from gfix_sdk.io import load_bundled_clip

    frames, info = load_bundled_clip(max_frames=args.frames)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_ours(frames, info.fps, args.gaussians, args.preset, Path(tmp))
    sweep = run_x264(frames, info.fps, list(range(args.crf_min, args.crf_max + 1)))

    rows, rate_matched, psnr_matched, ssim_matched = [], [], [], []
    for p in ours:
        by_rate = _closest(sweep, "kbps", p["kbps"], log=True)
        by_psnr = _closest(sweep, "psnr", p["psnr"])
        by_ssim = _closest(sweep, "ms_ssim", p["ms_ssim"])
        rate_matched.append(by_rate)
        psnr_matched.append(by_psnr)
        ssim_matched.append(by_ssim)
        for label, q in (("ours", p), ("x264 @ same rate", by_rate), ("x264 @ same PSNR", by_psnr)):
            rows.append([label, q["param"], q["kbps"], q["bpp"], q["psnr"], q["ms_ssim"]])
    bd_psnr = _bd(ours, psnr_matched, "psnr")
    bd_ssim = _bd(ours, ssim_matched, "ms_ssim")

    print(f"Bundled clip {info.width}x{info.height}, {len(frames)} frames @ {info.fps:g} fps "
          f"({time.perf_counter() - start:.0f} s)")
    print(format_table(["codec", "point", "kbps", "bpp", "PSNR dB", "MS-SSIM"], rows))
    fmt = lambda v: f"{v:+.1f} %" if isinstance(v, float) else v  # noqa: E731
    print("\nBD-rate of the Gaussian codec vs x264 (pchip; positive = more bits than x264):")
    print(f"  PSNR    {fmt(bd_psnr)}")
    print(f"  MS-SSIM {fmt(bd_ssim)}")
    emit_json({"bench": "rd", "machine": machine_info(), "args": vars(args), "ours": ours,
               "x264_sweep": sweep, "bd_rate_psnr": bd_psnr, "bd_rate_ms_ssim": bd_ssim}, args.json)
    return 0
