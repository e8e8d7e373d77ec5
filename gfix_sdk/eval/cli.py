"""``gfix eval``: the command line of the evaluation suite.

:func:`add_eval_parser` adds the ``eval`` sub-command to the ``gfix``
parser; :func:`main` runs it on its own (``python -m gfix_sdk.eval``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gfix_sdk.cli import add_ray_options, parse_size, positive_int, run_command


DESCRIPTION = """\
Evaluate codecs on videos: every codec at every rate point, decoded and scored
with PSNR, MS-SSIM, LPIPS, FID and VMAF; writes points.csv, points.json, one
RD plot per video (rd_<video>.png) and summary.md with BD-rate tables of every
codec against every other (pchip; lower-is-better for LPIPS and FID).

With --workers N the rate points are encoded as Ray tasks (a local runtime, or
--ray-address) and scored here in the serial run's order: the same report.

Metrics whose weights are not given (--lpips / $GFIX_LPIPS, --fid-weights /
$GFIX_FID_WEIGHTS) are omitted with the reason; nothing is downloaded.
"""

EPILOG = """\
codecs (--anchors): h264 (x264 medium, rate knob CRF), h265 (x265 medium, knob
CRF), av1 (SVT-AV1 preset 8, knob CRF), gs (our Gaussian codec, knob
Gaussians/frame), gfix (Gaussian codec + enhancer, knob Gaussians/frame), or
module:attribute for a codec of your own (see gfix_sdk.anchors.RatePointCodec).
h264, h265 and av1 count their elementary stream's bytes and run on one thread.

examples:
  gfix eval bundled --anchors h264,gs --frames 16 --out eval-bbb
  gfix eval bundled --anchors h264,h265,av1,gs --frames 16 --out eval-anchors
  gfix eval clip.mp4 other.y4m --points 5 --out eval --lpips lpips_alex.pt
  gfix eval bundled --anchors h264,gs --frames 16 --workers 2 --out eval-bbb   rate points as Ray tasks
  gfix eval clip_1280x720_50fps.yuv --crf 24,30,36,42 --gaussians 4000,8000,16000,32000 --out eval
  gfix eval --uvg ~/data/UVG --base ~/models/sd-turbo --lpips lpips_alex.pt \\
      --fid-weights pt_inception-2015-12-05-6726825d.pth --out uvg-eval      (the paper's protocol)
"""


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one value")
    return values


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``gfix eval`` arguments to ``parser``."""
    parser.add_argument("videos", nargs="*", metavar="VIDEO",
                        help="input videos (anything gfix reads; 'bundled' = the shipped clip)")
    parser.add_argument("--uvg", metavar="DIR", help="also evaluate the seven UVG 1080p sequences found in DIR")
    parser.add_argument("--anchors", default="h264,gs,gfix",
                        help="comma-separated codecs: h264, h265, av1, gs, gfix or module:attribute "
                             "(default: h264,gs,gfix)")
    parser.add_argument("--frames", type=positive_int, default=96,
                        help="first N frames of each video (default: 96, the paper's)")
    parser.add_argument("--points", type=positive_int, default=4, help="rate points per codec (default: 4)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--lpips", metavar="PATH", help="LPIPS weights file (default: $GFIX_LPIPS)")
    parser.add_argument("--fid-weights", metavar="PATH",
                        help="pytorch-fid Inception weights (default: $GFIX_FID_WEIGHTS)")
    parser.add_argument("--no-vmaf", action="store_true", help="leave VMAF out")
    parser.add_argument("--size", type=parse_size, help="WxH of raw .yuv inputs whose names do not carry it")
    parser.add_argument("--fps", type=float, help="frame rate of raw .yuv / PNG inputs (default: from the "
                                                  "name, else 25)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    add_ray_options(parser, title="rate points in parallel",
                    workers="rate points encoded at once as Ray tasks, scored here in the serial order: the same "
                            "report",
                    cpus="CPUs (and torch threads) each rate-point task asks for")

    rates = parser.add_argument_group("rate points (default: --points values spread over each codec's range)")
    rates.add_argument("--crf", type=_int_list, metavar="LIST", help="x264 CRFs (h264), e.g. 42,35,29,22")
    rates.add_argument("--h265-crf", type=_int_list, metavar="LIST",
                       help="x265 CRFs (h265, 0..51; default points: 44..24), e.g. 44,37,31,24")
    rates.add_argument("--av1-crf", type=_int_list, metavar="LIST",
                       help="SVT-AV1 CRFs (av1, 1..63; default points: 63..35), e.g. 63,54,44,35")
    rates.add_argument("--gaussians", type=_int_list, metavar="LIST",
                       help="Gaussians per frame for gs and gfix, e.g. 1000,2000,4000,8000")

    conventional = parser.add_argument_group("conventional anchors (h264, h265, av1)")
    conventional.add_argument("--av1-preset", type=int, choices=range(0, 14), default=8, metavar="0..13",
                              help="SVT-AV1 preset of av1 (default: 8; lower is slower and better)")

    codec = parser.add_argument_group("Gaussian codec and GFix")
    codec.add_argument("--preset", choices=["fast", "medium", "slow"], default="medium",
                       help="Gaussian codec preset (default: medium)")
    codec.add_argument("--gop", type=positive_int, help="maximum frames between key frames (default: 16)")
    codec.add_argument("--base", metavar="PATH", help="SD-Turbo directory for gfix (default: $GFIX_BASE, else "
                                                      "the tiny stand-in, installed into --out)")
    codec.add_argument("--gfix-steps", type=positive_int,
                       help="enhancer training steps (default: 2000; 300 on the tiny stand-in)")
    codec.add_argument("--gfix-rate-point", type=int, choices=[1, 2, 3, 4, 5],
                       help="lambda preset (default: 3; 2 on the tiny stand-in)")
    codec.add_argument("--gfix-lr", type=float, help="adapter learning rate (default: 0.05; 0.005 on the tiny stand-in)")
    codec.add_argument("--gfix-patch", type=positive_int,
                       help="training patch size, multiple of 8 (default: 512; 64 on the tiny stand-in)")
    codec.add_argument("--gfix-lpips", metavar="PATH", help="LPIPS-VGG weights for the enhancer's training loss")
    codec.add_argument("--device", help="cpu or cuda for the enhancer, decoders and LPIPS/FID "
                                        "(default: cuda when available)")
    parser.set_defaults(func=run_from_args,
                        interrupted="points.csv/points.json hold the points finished so far")
    return parser


def add_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``eval`` on the ``gfix`` parser's sub-parsers; returns the new parser.

    Its ``func`` default is :func:`run_from_args`, called with the parsed
    namespace and returning the exit status.
    """
    parser = subparsers.add_parser(
        "eval", help="rate-distortion evaluation against anchors (CSV, JSON, plots, BD-rate)",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    return configure_parser(parser)


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``gfix eval`` from parsed arguments; prints where the report is."""
    import torch

    from gfix_sdk.eval.codecs import CodecOptions
    from gfix_sdk.eval.runner import run_eval
    from gfix_sdk.eval.videos import uvg_videos, video_spec

    videos = [video_spec(v, size=args.size, fps=args.fps) for v in args.videos]
    if args.uvg:
        videos += uvg_videos(args.uvg)
    if not videos:
        raise ValueError("give at least one VIDEO ('bundled' for the shipped clip) or --uvg DIR")
    anchors = [a.strip() for a in args.anchors.split(",") if a.strip()]
    rate_values = {}
    for name, values in (("h264", args.crf), ("h265", args.h265_crf), ("av1", args.av1_crf)):
        if values and name in anchors:
            rate_values[name] = values
    if args.gaussians:
        rate_values.update({name: args.gaussians for name in ("gs", "gfix") if name in anchors})
    options = CodecOptions(preset=args.preset, gop=args.gop, base=args.base, gfix_steps=args.gfix_steps,
                           gfix_rate_point=args.gfix_rate_point, gfix_lr=args.gfix_lr, gfix_patch=args.gfix_patch,
                           gfix_lpips=args.gfix_lpips, device=args.device, av1_preset=args.av1_preset)
    metric_device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    result = run_eval(videos, anchors, args.frames, args.out, points=args.points, rate_values=rate_values,
                      lpips=args.lpips, fid_weights=args.fid_weights, vmaf=not args.no_vmaf,
                      codec_options=options, metric_device=metric_device, progress=not args.quiet,
                      workers=args.workers, ray_address=args.ray_address, cpus_per_worker=args.cpus_per_worker)
    print(f"{len(result.points)} rate points; metrics: {', '.join(result.metrics)}")
    for key, reason in result.omitted.items():
        print(f"  {key} omitted: {reason.splitlines()[0]}")
    print(f"wrote {result.csv_path}, {result.json_path}")
    for path in result.plots.values():
        print(f"wrote {path}")
    print(f"wrote {result.summary_path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gfix_sdk.eval`` (the same arguments as ``gfix eval``)."""
    parser = argparse.ArgumentParser(prog="gfix eval", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    configure_parser(parser)
    args = parser.parse_args(argv)
    return run_command(args, "gfix eval")
