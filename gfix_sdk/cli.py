"""``gfix``: the command-line face of the SDK (thin: parsing and printing only)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gfix_sdk.errors import GFixError

EPILOG = """examples:
  gfix demo                      fit the bundled Big Buck Bunny frame, write a PNG
  gfix demo --out results/       same, writing into results/
"""


def _cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from gfix_sdk.gaussians import FitConfig, fit_frame, init_from_image
    from gfix_sdk.io import bundled_clip_path, load_bundled_clip, write_png

    frames, info = load_bundled_clip(max_frames=1)
    target = torch.from_numpy(frames[0]).float() / 255.0
    print(f"bundled clip: {bundled_clip_path().name} ({info.width}x{info.height}), fitting frame 0")
    start = time.perf_counter()
    init = init_from_image(target, args.gaussians)
    result = fit_frame(target, init, FitConfig(iterations=args.iterations), desc="fit frame 0")
    seconds = time.perf_counter() - start
    render = (result.frame.render().detach().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "demo_fit.png"
    write_png(png, np.concatenate([frames[0], render], axis=1))
    print(f"{args.gaussians} Gaussians, {args.iterations} iterations: "
          f"PSNR {result.psnr:.2f} dB in {seconds:.1f} s")
    print(f"wrote {png} (left: original, right: Gaussian render)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gfix",
        description="GFix SDK: perceptually enhanced Gaussian-splatting video compression.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the demo on the bundled clip",
                          description="Fit 2D Gaussians to a frame of the bundled clip and write a PNG.")
    demo.add_argument("--gaussians", type=int, default=3000, help="Gaussians per frame (default: 3000)")
    demo.add_argument("--iterations", type=int, default=800, help="fitting steps (default: 800)")
    demo.add_argument("--out", default="gfix-out", help="output folder (default: gfix-out)")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (GFixError, FileNotFoundError) as exc:
        print(f"gfix: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gfix: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
