"""``gfix``: the command-line face of the SDK (thin: parsing and printing only)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from gfix_sdk._signals import exit_status, forget_handled_interrupt, termination_raises
from gfix_sdk.errors import GFixError

EPILOG = """examples:
  gfix demo                                  GFix-encode + decode the bundled clip, print quality
  gfix encode clip.mp4 -o clip.gfix          encode with the medium preset
  gfix encode clip.mp4 -o clip.gfix --preset fast --gaussians 6000 --frames 32
  gfix encode Beauty_1920x1080_8bit.yuv --size 1920x1080 --fps 120 --frames 96 -o beauty.gfix
  gfix encode clip.mp4 -o clip.gfix --workers 4              GOPs in parallel on a local Ray runtime
  gfix encode clip.mp4 -o clip.gfix --workers 64 --ray-address auto   ... on a running Ray cluster
  gfix encode-many videos/*.mp4 --out-dir out --workers 4    a library: .gfix files + summary.csv/.json
  gfix decode clip.gfix -o decoded.mp4       (.mkv/.mp4 with --lossless, .y4m, or a folder of PNGs)
  gfix info clip.gfix [--json]
  gfix base --tiny tiny-sd                   install the small pretrained stand-in for SD-Turbo
  gfix encode clip.mp4 -o clip.gfix --enhance --base tiny-sd --rate-point 3   GFix: train the enhancer too
  gfix decode clip.gfix -o out.mp4 --base tiny-sd                             (or --no-enhance)
  gfix params --table                        adapter sizes on SD-Turbo shapes (the paper's Table I)
  gfix eval bundled --anchors h264,h265,av1,gs --frames 16 --out eval   RD curves, BD-rates, plots
"""


def parse_size(text: str) -> tuple[int, int]:
    """argparse type for ``WxH`` (e.g. ``1920x1080``); shared by every ``gfix`` sub-command."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1920x1080, got {text!r}") from None
    return width, height


def positive_int(text: str) -> int:
    """argparse type for an integer >= 1; shared by every ``gfix`` sub-command."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def drift_db(text: str) -> float | str:
    """``--max-drift``: a positive number of dB, or ``"off"``."""
    if text.lower() == "off":
        return "off"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of dB or 'off', got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of dB or 'off', got {text!r}")
    return value


def _config_from_args(args: argparse.Namespace):
    from gfix_sdk.gaussians.sequence import PRESETS

    config = PRESETS[args.preset]
    overrides = {name: getattr(args, name) for name in ("gaussians", "gop") if getattr(args, name) is not None}
    max_drift = getattr(args, "max_drift", None)  # None: the preset's
    if max_drift is not None:
        overrides["max_drift_db"] = None if max_drift == "off" else max_drift
    return replace(config, **overrides)


def _print_report(report) -> None:
    print(f"{report.path}: {report.num_frames} frames {report.width}x{report.height} @ {report.fps:g} fps")
    print(f"  size {report.num_bytes:,} bytes, {report.bitrate_kbps:,.1f} kbit/s, "
          f"{report.bits_per_pixel:.4f} bpp, key frames {report.key_frames}")
    print(f"  mean PSNR {report.mean_psnr:.2f} dB (Gaussian reconstruction), {report.seconds:.1f} s on {report.device}")
    decision = report.enhancer_decision
    if decision is not None:
        t = report.training
        print(f"  enhancer: trained with {t.loss_description} (lambda {decision.lmbda:g}), "
              f"validation distortion {t.initial_distortion:.4f} -> {t.final_distortion:.4f}")
        print(f"  enhancer {decision.reason}")
        if report.enhancer_bytes:
            print(f"  enhancer adapter: {report.enhancer_bytes:,} bytes "
                  f"({100 * report.enhancer_bytes / report.num_bytes:.1f}% of the file), "
                  f"mean PSNR after enhancement {report.mean_enhanced_psnr:.2f} dB")


def _enhance_settings(args: argparse.Namespace):
    if not args.enhance:
        return None
    from gfix_sdk.enhance.model import AdapterConfig
    from gfix_sdk.enhance.pipeline import EnhanceSettings
    from gfix_sdk.enhance.train import LAMBDA_PRESETS, TrainConfig

    lmbda = args.lmbda if args.lmbda is not None else LAMBDA_PRESETS[args.rate_point]
    adapter = AdapterConfig(mode=args.adapter, patch=args.patch, overlap=args.overlap)
    train = TrainConfig(steps=args.enhance_steps, lmbda=lmbda, lr=args.lr, loss=args.loss, lpips_weights=args.lpips,
                        l2_weight=args.l2_weight, vmaf_weight=args.vmaf_weight)
    bounds = {name: None if value < 0 else value
              for name, value in (("max_psnr_drop", args.max_psnr_drop), ("max_vmaf_drop", args.max_vmaf_drop))
              if value is not None}
    return EnhanceSettings(base=args.base, adapter=adapter, train=train, always_keep=args.keep_adapter, **bounds)


def _scale_kwargs(args: argparse.Namespace) -> dict:
    return {"workers": args.workers, "ray_address": args.ray_address, "cpus_per_worker": args.cpus_per_worker,
            "threads_per_gop": args.threads_per_gop}


def _cmd_encode(args: argparse.Namespace) -> int:
    from gfix_sdk.encoder import encode_video

    report = encode_video(args.input, args.output, config=_config_from_args(args), max_frames=args.frames,
                          size=args.size, fps=args.fps, bit_depth=args.bit_depth, progress=not args.quiet,
                          enhance=_enhance_settings(args), device=args.device, **_scale_kwargs(args))
    _print_report(report)
    return 0


def _cmd_encode_many(args: argparse.Namespace) -> int:
    from gfix_sdk.scale.library import encode_many

    report = encode_many(args.inputs, args.out_dir, config=_config_from_args(args), max_frames=args.frames,
                         size=args.size, fps=args.fps, bit_depth=args.bit_depth, progress=not args.quiet,
                         enhance=_enhance_settings(args), device=args.device, videos_at_once=args.videos_at_once,
                         **_scale_kwargs(args))
    width = max(len(v.input) for v in report.videos)
    for v in report.videos:
        if v.ok:
            print(f"  {v.input:{width}s}  ok      {v.bytes:>10,d} bytes {v.kbps:9.1f} kbit/s {v.psnr_db:6.2f} dB "
                  f"{v.seconds:7.1f} s -> {v.output}")
        else:
            print(f"  {v.input:{width}s}  FAILED  {v.error}")
    print(f"{len(report.videos) - len(report.failed)} of {len(report.videos)} videos encoded in "
          f"{report.seconds:.1f} s; summary: {report.csv_path}, {report.json_path}")
    if report.failed:
        print(f"gfix: error: {len(report.failed)} video(s) failed (see above)", file=sys.stderr)
        return 1
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    from gfix_sdk.io import write_video
    from gfix_sdk.runtime import Decoder

    with Decoder.open(args.input, base=args.base, enhance=not args.no_enhance, device=args.device,
                      backend=args.backend, precision=args.precision) as decoder:
        count = write_video(args.output, decoder.frames(), fps=decoder.info.fps,
                            lossless=args.lossless, crf=args.crf)
    print(f"wrote {count} frames to {args.output}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from gfix_sdk.runtime import Decoder

    with Decoder.open(args.input, enhance=False) as decoder:
        i = decoder.info
        record = {
            "path": str(decoder.path), "width": i.width, "height": i.height, "fps": i.fps,
            "frames": i.num_frames, "bytes": i.num_bytes, "bitrate_kbps": round(i.bitrate_kbps, 3),
            "bits_per_pixel": round(i.bits_per_pixel, 6), "key_frames": list(i.key_frames),
            "gaussians": i.gaussians, "encoder": i.encoder, "quantization": vars(decoder.quant_spec),
            "enhancer_bytes": i.enhancer_bytes, "enhancer_note": i.enhancer_note,
        }
    if args.json:
        print(json.dumps(record))
    else:
        width = max(len(k) for k in record)
        for key, value in record.items():
            print(f"{key:>{width}}: {value}")
    return 0


def _demo_scores(original, decoded, fps: float) -> tuple[float, float, float | None, float | None]:
    """PSNR, MS-SSIM, LPIPS (AlexNet; None without its weights) and VMAF (None without libvmaf)."""
    from gfix_sdk.metrics import sequence_lpips, sequence_metrics, sequence_vmaf

    quality = sequence_metrics(original, decoded)
    lpips = sequence_lpips(original, decoded, net="alex")
    vmaf = sequence_vmaf(original, decoded, fps=fps)
    return quality["mean_psnr"], quality["mean_ms_ssim"], lpips.value, vmaf.value


def _cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from gfix_sdk.encoder import encode_video
    from gfix_sdk.bitstream.format import SECTION_OVERHEAD
    from gfix_sdk.io import bundled_clip_path, load_bundled_clip, write_png, write_video
    from gfix_sdk.runtime import Decoder

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = bundled_clip_path()
    original, info = load_bundled_clip()
    print(f"bundled clip: {source.name} ({info.width}x{info.height}, {len(original)} frames @ {info.fps:g} fps)")
    settings = None
    if not args.no_enhance:
        from gfix_sdk.enhance.model import AdapterConfig
        from gfix_sdk.enhance.pipeline import EnhanceSettings
        from gfix_sdk.enhance.tiny import install_tiny_base
        from gfix_sdk.enhance.train import LAMBDA_PRESETS, TrainConfig

        base = args.base or str(install_tiny_base(out_dir / "tiny_sd"))
        settings = EnhanceSettings(base=base, adapter=AdapterConfig(patch=args.patch),
                                   train=TrainConfig(steps=args.enhance_steps, lmbda=LAMBDA_PRESETS[args.rate_point]))
        print(f"enhancer base: {base}" + ("  (tiny pretrained stand-in for SD-Turbo)" if args.base is None else ""))
    gfix_path = out_dir / "bbb.gfix"
    report = encode_video(source, gfix_path, config=_config_from_args(args), progress=not args.quiet,
                          enhance=settings, device=args.device)
    rows = []
    for label, enhance in (("Gaussian codec", False), ("GFix (enhanced)", True)):
        if enhance and settings is None:
            continue
        with Decoder.open(gfix_path, base=settings.base if settings else None, enhance=enhance) as decoder:
            decoded = np.stack(list(decoder.frames()))
        # The Gaussian row is the same file without its ENHANCER section.
        adapter = report.enhancer_bytes + SECTION_OVERHEAD if report.enhancer_bytes else 0
        size = report.num_bytes if enhance else report.num_bytes - adapter
        rows.append((label, size, *_demo_scores(original, decoded, info.fps), decoded))
    write_video(out_dir / "bbb_decoded.mkv", rows[-1][-1], fps=info.fps, lossless=True)
    write_png(out_dir / "bbb_frame0.png", np.concatenate([original[0]] + [r[-1][0] for r in rows], axis=1))
    seconds = len(original) / info.fps
    print(f"encoded {report.num_frames} frames in {report.seconds:.1f} s -> {gfix_path} ({report.num_bytes:,} bytes)")
    number = lambda v, fmt: "n/a" if v is None else format(v, fmt)  # noqa: E731
    print(f"  {'':16s} {'bytes':>8s} {'kbit/s':>8s} {'bpp':>7s} {'PSNR dB':>8s} {'MS-SSIM':>8s} {'LPIPS':>7s} "
          f"{'VMAF':>6s}")
    for label, size, psnr, msssim, lpips, vmaf, _ in rows:
        print(f"  {label:16s} {size:8,d} {8 * size / seconds / 1000:8.1f} "
              f"{8 * size / (len(original) * info.width * info.height):7.4f} {psnr:8.2f} {msssim:8.4f} "
              f"{number(lpips, '7.4f'):>7s} {number(vmaf, '6.2f'):>6s}")
    if settings is not None:
        decision = report.enhancer_decision
        print(f"  enhancer {decision.reason}")
        if decision.kept:
            print(f"  adapter: {report.enhancer_bytes:,} bytes; timestep t = {report.training.history[-1]['t']:.1f}; "
                  f"trained with {report.training.loss_description}")
    if any(r[4] is None for r in rows):
        print("  (LPIPS needs `python -m gfix_sdk.perceptual.convert --net alex --install`; "
              "VMAF needs imageio-ffmpeg's ffmpeg with libvmaf)")
    print(f"decoded video (lossless FFV1): {out_dir / 'bbb_decoded.mkv'}")
    print("frame 0, original | " + " | ".join(r[0] for r in rows) + f": {out_dir / 'bbb_frame0.png'}")
    return 0


def _cmd_base(args: argparse.Namespace) -> int:
    from gfix_sdk.enhance.base import build_tiny_base, check_base_dir
    from gfix_sdk.enhance.tiny import install_tiny_base

    out = build_tiny_base(args.tiny) if args.random else install_tiny_base(args.tiny)
    check_base_dir(out)
    kind = "random-weight" if args.random else "pretrained"
    print(f"wrote a {kind} tiny SD-Turbo stand-in to {out}; use it with --base {out}")
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    from gfix_sdk.enhance.params import table_text

    print(table_text())
    return 0


def _add_enhance_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("GFix enhancer (single-step diffusion adapter)")
    group.add_argument("--enhance", action="store_true",
                       help="train the per-video enhancer and store it (when it lowers rate + lambda x distortion)")
    group.add_argument("--base", help="local diffusers SD-Turbo directory (default: $GFIX_BASE)")
    group.add_argument("--rate-point", type=int, choices=[1, 2, 3, 4, 5], default=3,
                       help="lambda preset, 1 (fewest adapter bits) .. 5 (default: 3)")
    group.add_argument("--lambda", dest="lmbda", type=float, help="distortion weight (overrides --rate-point)")
    group.add_argument("--enhance-steps", type=positive_int,
                       help="training steps (default: the base's; SD-Turbo: 2000, the paper's)")
    group.add_argument("--lr", type=float, help="adapter learning rate (default: the base's; SD-Turbo: the "
                                                "paper's 0.05, the tiny stand-in: its measured value)")
    group.add_argument("--patch", type=positive_int,
                       help="enhancer patch side, multiple of 8 (default: the base's; SD-Turbo: 512)")
    group.add_argument("--overlap", type=int, help="minimum overlap of blended patches in pixels "
                                                   "(default: the base's, at most a quarter of the patch)")
    group.add_argument("--adapter", choices=["mlora", "lora"], default="mlora", help="adapter type (default: mlora)")
    group.add_argument("--loss", choices=["auto", "difix", "l2-msssim"], default="auto",
                       help="training distortion: difix = L2 + LPIPS(VGG) + Gram (needs the LPIPS-VGG weights the "
                            "set-up installs), l2-msssim, or auto = difix when the weights are found (default)")
    group.add_argument("--l2-weight", type=float, help="weight of the loss's L2 term (default: the base's; "
                                                        "SD-Turbo: Difix's 1, the tiny stand-in: its measured value)")
    group.add_argument("--vmaf-weight", type=float, metavar="W",
                       help="weight of the fidelity term W x (1 - VMAF-NEG/100) added to the training loss, so the "
                            "adapter pays for detail VMAF counts as lost (default: the base's; SD-Turbo: 0 as in "
                            "the paper, the tiny stand-in: its measured value; 0: off)")
    group.add_argument("--lpips", help="LPIPS-VGG weights file for the difix loss (default: the installed one)")
    group.add_argument("--max-psnr-drop", type=float, metavar="DB",
                       help="fidelity bound: the encoder scales the enhancer's change to luma and to chroma down "
                            "until the mean PSNR is at most DB below the Gaussian frames' (default: 0.4; -1: no bound)")
    group.add_argument("--max-vmaf-drop", type=float, metavar="POINTS",
                       help="VMAF bound, likewise: mean VMAF at most POINTS below the Gaussian frames' (default: 0.5, "
                            "no real loss; -1: no bound; skipped with a note when ffmpeg has no libvmaf)")
    group.add_argument("--keep-adapter", action="store_true",
                       help="store the adapter even if it does not lower rate + lambda x distortion "
                            "(by default such an adapter is dropped and the file is a plain Gaussian stream)")


def _add_codec_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=["fast", "medium", "slow"], default="medium",
                        help="fitting effort (default: medium)")
    parser.add_argument("--gaussians", type=positive_int, help="Gaussians per frame (preset default: 3000)")
    parser.add_argument("--gop", type=positive_int,
                        help="GOP length: a key frame every N frames, and at scene cuts (default: 16)")
    parser.add_argument("--max-drift", type=drift_db, metavar="DB",
                        help="quality floor: predicted frames get a lower residual penalty (more bits) whenever "
                             "they fall more than DB below their GOP's key frame (PSNR); 'off' keeps the fixed "
                             "penalty (fewer bits, quality falls along the GOP). Default: 0.9 in every preset")
    parser.add_argument("--device", help="where Gaussians are fitted and the enhancer trains: cpu, cuda or cuda:N "
                                         "(default: cuda when available)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def add_ray_options(parser: argparse.ArgumentParser, *, title: str, workers: str,
                    cpus: str) -> argparse._ArgumentGroup:
    """Add ``--workers``, ``--ray-address`` and ``--cpus-per-worker`` in a group
    titled ``title``; ``workers`` and ``cpus`` say what a task is. Returns the group."""
    group = parser.add_argument_group(f"{title} on Ray (pip install \"gfix-sdk[cluster]\")")
    group.add_argument("--workers", type=positive_int, default=1, help=f"{workers} (default: 1, no Ray)")
    group.add_argument("--ray-address", metavar="ADDR",
                       help="run on an existing Ray cluster: 'auto' or ray://HOST:PORT (default: a local Ray runtime, "
                            "started and stopped for this command, when --workers > 1)")
    group.add_argument("--cpus-per-worker", type=positive_int, help=f"{cpus} (default: CPUs / workers)")
    return group


def _add_scale_options(parser: argparse.ArgumentParser) -> None:
    group = add_ray_options(parser, title="scale-out",
                            workers="GOPs coded at once as Ray tasks; the file is byte-identical to --workers 1",
                            cpus="CPUs (and rasterizer threads) each GOP task asks for")
    group.add_argument("--threads-per-gop", type=positive_int, default=1,
                       help="torch threads fitting each GOP, whatever --workers is: the bytes depend on it "
                            "(default: 1; the rasterizer still uses every CPU a GOP has)")


def _add_input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=positive_int, help="encode only the first N frames")
    parser.add_argument("--size", type=parse_size, help="WxH of a raw .yuv input")
    parser.add_argument("--fps", type=float, help="frame rate of a raw .yuv or PNG input (default 25)")
    parser.add_argument("--bit-depth", type=int, choices=[8, 10], default=8, help="raw .yuv bit depth")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gfix",
        description="GFix SDK: perceptually enhanced Gaussian-splatting video compression.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    enc = sub.add_parser("encode", help="encode a video into a .gfix file",
                         description="Encode a video (mp4/mkv/avi/y4m/..., raw .yuv 4:2:0 or a PNG folder) "
                                     "into a .gfix file of 2D Gaussians per frame.")
    enc.add_argument("input", help="input video, raw .yuv (needs --size/--fps) or PNG folder/glob")
    enc.add_argument("-o", "--output", required=True, help="output .gfix file")
    _add_input_options(enc)
    _add_codec_options(enc)
    _add_scale_options(enc)
    _add_enhance_options(enc)
    enc.set_defaults(func=_cmd_encode)

    many = sub.add_parser("encode-many", help="encode many videos into a folder, with a summary table",
                          description="Encode each input into OUT_DIR/<name>.gfix (GOPs in parallel on Ray with "
                                      "--workers), with one progress bar over all frames, and write "
                                      "OUT_DIR/summary.csv and summary.json (size, kbit/s, PSNR per video). A video "
                                      "that fails is reported and the others are still written; the exit status is "
                                      "1 if any failed.")
    many.add_argument("inputs", nargs="+", metavar="INPUT", help="input videos")
    many.add_argument("--out-dir", required=True, help="folder for the .gfix files and the summary")
    many.add_argument("--videos-at-once", type=positive_int, default=2,
                      help="videos in progress at once with Ray, so the next fills idle workers (default: 2)")
    _add_input_options(many)
    _add_codec_options(many)
    _add_scale_options(many)
    _add_enhance_options(many)
    many.set_defaults(func=_cmd_encode_many,
                      interrupted="finished videos were kept; no partial .gfix file was left")

    dec = sub.add_parser("decode", help="decode a .gfix file to a video or PNGs",
                         description="Decode a .gfix file to .mp4/.mkv/.mov (H.264), .y4m, or a folder of PNGs.")
    dec.add_argument("input", help=".gfix file")
    dec.add_argument("-o", "--output", required=True, help="output video file or folder")
    dec.add_argument("--lossless", action="store_true", help="FFV1 (.mkv) or libx264rgb (.mp4), bit-exact RGB")
    dec.add_argument("--crf", type=int, default=18, help="x264 CRF for lossy outputs (default: 18)")
    dec.add_argument("--base", help="local SD-Turbo directory for files with an enhancer (default: $GFIX_BASE)")
    dec.add_argument("--no-enhance", action="store_true", help="output the Gaussian frames, skip the enhancer")
    dec.add_argument("--device", default="cpu", help="where frames are rasterized and enhanced: cpu, cuda or cuda:N "
                     "(default: cpu)")
    dec.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "tensorrt"),
                     help="how the enhancer runs (default: auto, the fastest present on the device)")
    dec.add_argument("--precision", choices=("fp32", "fp16", "bf16"),
                     help="the enhancer's arithmetic (default: the backend's, fp32; TensorRT fp16); "
                          "fp16 needs CUDA, onnxruntime runs fp32 only")
    dec.set_defaults(func=_cmd_decode)

    info = sub.add_parser("info", help="describe a .gfix file", description="Print a .gfix file's stream information.")
    info.add_argument("input", help=".gfix file")
    info.add_argument("--json", action="store_true", help="one JSON object")
    info.set_defaults(func=_cmd_info)

    base = sub.add_parser("base", help="install a small stand-in for SD-Turbo",
                          description="Write a small model with SD-Turbo's classes and wiring (for tests and "
                                      "offline demos; real use needs SD-Turbo itself, see --help of encode).")
    base.add_argument("--tiny", required=True, metavar="DIR", help="where to write it")
    base.add_argument("--random", action="store_true", help="random weights instead of the pretrained ones")
    base.set_defaults(func=_cmd_base)

    params = sub.add_parser("params", help="adapter sizes on SD-Turbo shapes (Table I)",
                            description="Build SD-Turbo's U-Net and VAE on the meta device (no weights) and "
                                        "print LoRA vs mLoRA parameter sizes beside the paper's Table I.")
    params.add_argument("--table", action="store_true", help="print the table (default)")
    params.set_defaults(func=_cmd_params)

    demo = sub.add_parser("demo", help="encode and decode the bundled clip",
                          description="Encode the bundled Big Buck Bunny clip (320x180, 16 frames) with GFix "
                                      "(Gaussian codec + enhancer on a tiny stand-in for SD-Turbo), decode it, "
                                      "and print size, bitrate, PSNR, MS-SSIM, LPIPS and VMAF with and without "
                                      "enhancement.")
    demo.add_argument("--out", default="gfix-out", help="output folder (default: gfix-out)")
    demo.add_argument("--no-enhance", action="store_true", help="Gaussian codec only (skip the enhancer)")
    demo.add_argument("--base", help="SD-Turbo directory (default: the tiny pretrained stand-in)")
    demo.add_argument("--enhance-steps", type=positive_int, help="enhancer training steps (default: the base's)")
    demo.add_argument("--patch", type=positive_int, help="enhancer patch side (default: the base's)")
    demo.add_argument("--rate-point", type=int, choices=[1, 2, 3, 4, 5], default=3,
                      help="enhancer lambda preset (default: 3)")
    _add_codec_options(demo)
    demo.set_defaults(func=_cmd_demo)

    from gfix_sdk.eval.cli import add_eval_parser  # light: heavy imports happen when it runs

    add_eval_parser(sub)
    return parser


def run_command(args: argparse.Namespace, prog: str) -> int:
    """Run ``args.func(args)``; expected errors become one line on stderr and status 1.

    A sub-command may set ``interrupted`` (with ``set_defaults``) to say what
    Ctrl-C leaves behind; the default is that nothing was written.
    SIGTERM and SIGHUP unwind like Ctrl-C (temporary files are removed on the
    way out); the status is then 128 + the signal (130, 143, 129).
    """
    try:
        with termination_raises():
            return args.func(args)
    except (GFixError, FileNotFoundError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        forget_handled_interrupt()  # the status below is the answer, also under `python -m`
        print(f"{prog}: interrupted ({getattr(args, 'interrupted', 'no output was written')})", file=sys.stderr)
        return exit_status(exc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return run_command(args, "gfix")


if __name__ == "__main__":
    sys.exit(main())
