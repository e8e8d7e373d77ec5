"""Encoding a video into a ``.gfix`` file (the Gaussian codec payload).

Frames stream from :func:`gfix_sdk.io.open_video` through
:class:`~gfix_sdk.gaussians.sequence.SequenceEncoder` into a
:class:`~gfix_sdk.bitstream.GFixWriter`: memory stays bounded by one frame
and one reference, and the output appears only when the whole file is
written (a failed or interrupted encode leaves nothing behind). With
``workers > 1`` GOPs are coded as Ray tasks (:mod:`gfix_sdk.scale`) and
written in order: the same bytes, sooner.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from gfix_sdk import __version__
from gfix_sdk.bitstream.format import SectionType
from gfix_sdk.bitstream.header import StreamHeader
from gfix_sdk.bitstream.writer import GFixWriter
from gfix_sdk.enhance.pipeline import EnhanceSettings, fit_adapter
from gfix_sdk.gaussians.code import encode_stream_info
from gfix_sdk.gaussians.sequence import CodedFrame, SequenceConfig, SequenceEncoder, resolve_device
from gfix_sdk.io import open_video
from gfix_sdk.scale.gop import THREADS_PER_GOP, check_threads_per_gop, gop_threads


@dataclass
class EncodeReport:
    """What an encode produced."""

    path: Path  #: the written .gfix file
    width: int  #: frame width in pixels
    height: int  #: frame height in pixels
    fps: float  #: frames per second
    num_frames: int  #: frames coded
    num_bytes: int  #: size of the whole file
    payload_bytes: int  #: bytes of Gaussian frame payloads (excluding container overhead)
    seconds: float  #: wall time of the encode
    device: str = "cpu"  #: where the Gaussians were fitted
    frame_psnr: list[float] = field(default_factory=list)  #: per-frame PSNR of the Gaussian reconstruction, dB
    key_frames: list[int] = field(default_factory=list)  #: indices of key frames
    enhancer_bytes: int = 0  #: size of the ENHANCER section payload (0: no enhancer in the file)
    enhanced_psnr: list[float] = field(default_factory=list)  #: per-frame PSNR after enhancement, dB
    training: object | None = None  #: the enhancer's TrainResult, when one was trained
    #: The do-no-harm decision (an AdapterDecision), when an enhancer was trained:
    #: ``decision.kept`` says whether the file holds it, ``decision.reason`` why.
    enhancer_decision: object | None = None

    @property
    def bitrate_kbps(self) -> float:
        """File size over the clip's duration, in kbit/s."""
        return 8 * self.num_bytes / (self.num_frames / self.fps) / 1000 if self.num_frames else 0.0

    @property
    def bits_per_pixel(self) -> float:
        return 8 * self.num_bytes / (self.num_frames * self.width * self.height) if self.num_frames else 0.0

    @property
    def mean_psnr(self) -> float:
        return float(np.mean(self.frame_psnr)) if self.frame_psnr else float("nan")

    @property
    def mean_enhanced_psnr(self) -> float:
        return float(np.mean(self.enhanced_psnr)) if self.enhanced_psnr else float("nan")


def fps_fraction(fps: float) -> Fraction:
    """Exact rational frame rate (29.97 -> 30000/1001)."""
    return Fraction(fps).limit_denominator(1001)


def encode_frames(
    frames: Iterable[np.ndarray],
    output: str | os.PathLike[str],
    *,
    width: int,
    height: int,
    fps: float,
    config: SequenceConfig = SequenceConfig(),
    total: int | None = None,
    progress: bool = True,
    on_frame: Callable[[CodedFrame], None] | None = None,
    enhance: EnhanceSettings | None = None,
    on_enhanced: Callable[[int, torch.Tensor], None] | None = None,
    device: str | torch.device | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    cpus_per_worker: int | None = None,
    threads_per_gop: int = THREADS_PER_GOP,
) -> EncodeReport:
    """Encode RGB uint8 frames of ``height x width`` into ``output``.

    Args:
        frames: iterable of ``(H, W, 3)`` uint8 arrays (consumed lazily).
        output: the ``.gfix`` path to create (replaced atomically on success).
        width, height, fps: stream geometry and rate.
        config: codec settings (see :data:`gfix_sdk.gaussians.sequence.PRESETS`).
        total: number of frames, if known (for the progress bar).
        progress: show a progress bar with the running PSNR and bitrate.
        on_frame: called with every coded frame, in order (e.g. to keep reconstructions).
        enhance: also train GFix's enhancer adapter and store it in the file
            (needs a local base model, see :mod:`gfix_sdk.enhance.base`). The
            original and decoded frames are kept in memory for training, which
            runs here, after all GOPs are coded (with ``workers``, on the
            driver: ``enhance.device``, else ``device``, else CUDA when this
            machine has it).
        on_enhanced: called with ``(index, enhanced uint8 frame)`` after training,
            when the adapter is kept.
        device: where the Gaussians are fitted ("cpu", "cuda", "cuda:1"; default:
            CUDA when available); also the enhancer's unless ``enhance.device`` says otherwise.
            With ``workers``, "cpu" or "cuda" for the Ray tasks (default: CUDA
            when the cluster has GPUs).
        workers: GOPs coded at once as Ray tasks (needs the ``cluster`` extra).
            The file is byte-identical to ``workers=1``: GOPs (``config.gop``
            frames) are independent, are fitted with the same torch thread
            count (``threads_per_gop``) and are written in order.
        ray_address: run the tasks on an existing Ray cluster (``"auto"``,
            ``"ray://HOST:PORT"``); None with ``workers > 1``: a local runtime,
            started and stopped here. An address uses Ray even with ``workers=1``.
        cpus_per_worker: CPUs (and rasterizer threads) per GOP task; see
            :func:`gfix_sdk.scale.parallel.ray_gop_stream`.
        threads_per_gop: torch intra-op threads every GOP is fitted with,
            whatever ``workers`` is (float reductions, and so the bytes,
            depend on it; the rasterizer uses all the CPUs a GOP has: this
            process's torch threads, or ``cpus_per_worker``). Default 1.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    check_threads_per_gop(threads_per_gop)
    rate = fps_fraction(fps)
    header = StreamHeader(width=width, height=height, fps_num=rate.numerator,
                          fps_den=rate.denominator, frame_count=total or 0)
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if workers > 1 or ray_address is not None:
            from gfix_sdk.scale.parallel import ray_gop_stream  # imports Ray: only when asked for

            stream = stack.enter_context(ray_gop_stream(
                frames, config=config, height=height, width=width, workers=workers, address=ray_address,
                device=device, cpus_per_worker=cpus_per_worker, threads_per_gop=threads_per_gop))
            fit_device = stream.device
            coded_frames: Iterable[tuple[np.ndarray, CodedFrame]] = stream
            enhance_device = resolve_device(device) if enhance is not None else None
        else:
            stack.enter_context(gop_threads(threads_per_gop))  # until every GOP is in (not the enhancer)
            encoder = SequenceEncoder(config, height, width, device=device)
            fit_device = str(encoder.device)
            coded_frames = ((rgb, encoder.encode(rgb)) for rgb in frames)
            enhance_device = encoder.device
        if enhance is not None and enhance.device is None:
            enhance = replace(enhance, device=str(enhance_device))
        report = EncodeReport(path=Path(output), width=width, height=height, fps=float(rate),
                              num_frames=0, num_bytes=0, payload_bytes=0, seconds=0.0, device=fit_device)
        with GFixWriter(output, header) as writer:
            writer.write_section(
                SectionType.STREAM_INFO,
                encode_stream_info(config.quant, gaussians=config.gaussians, gop=config.gop,
                                   encoder=f"gfix_sdk {__version__}"),
            )
            originals, rendered = [], []
            bar = tqdm(coded_frames, total=total, desc="encode", unit="frame", disable=not progress)
            for rgb, coded in bar:
                if enhance is not None:
                    originals.append(np.array(rgb, dtype=np.uint8, copy=True))
                    rendered.append(coded.reconstruction.numpy())
                writer.write_frame(coded.payload, key=coded.key)
                report.num_frames += 1
                report.payload_bytes += len(coded.payload)
                report.frame_psnr.append(coded.psnr)
                if coded.key:
                    report.key_frames.append(coded.index)
                kbps = 8 * report.payload_bytes / (report.num_frames / float(rate)) / 1000
                bar.set_postfix(psnr=f"{coded.psnr:.2f} dB", kbps=f"{kbps:.0f}", key=int(coded.key))
                if on_frame is not None:
                    on_frame(coded)
            bar.close()
            stack.close()  # every GOP is in: stop a runtime we started, restore the threads, then train
            if enhance is not None and originals:
                _add_enhancer(writer, report, np.stack(originals), np.stack(rendered), enhance, progress,
                              on_enhanced)
    report.num_bytes = Path(output).stat().st_size
    report.seconds = time.perf_counter() - start
    return report


def _add_enhancer(writer, report, originals, rendered, settings, progress, on_enhanced) -> None:
    """Train the adapter on the decoded Gaussian frames, score the enhanced
    frames exactly as the decoder will produce them, and store the adapter
    only if it lowers rate + lambda x distortion (the reason goes into the
    file's METADATA either way)."""
    from gfix_sdk.gaussians.fit import psnr

    fitted = fit_adapter(originals, rendered, settings, progress=progress)
    decision = fitted.decision
    report.training = fitted.result
    report.enhancer_decision = decision
    writer.write_section(SectionType.METADATA, json.dumps({"enhancer": decision.to_json()}).encode("utf-8"))
    if not decision.kept:
        return
    writer.write_section(SectionType.ENHANCER, fitted.payload)
    report.enhancer_bytes = len(fitted.payload)
    for index, (enhanced, original) in enumerate(zip(fitted.enhanced, originals)):
        report.enhanced_psnr.append(psnr(torch.from_numpy(enhanced).float() / 255,
                                         torch.from_numpy(original).float() / 255))
        if on_enhanced is not None:
            on_enhanced(index, torch.from_numpy(enhanced))


def encode_video(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    config: SequenceConfig = SequenceConfig(),
    max_frames: int | None = None,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    bit_depth: int = 8,
    progress: bool = True,
    on_frame: Callable[[CodedFrame], None] | None = None,
    enhance: EnhanceSettings | None = None,
    device: str | torch.device | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    cpus_per_worker: int | None = None,
    threads_per_gop: int = THREADS_PER_GOP,
) -> EncodeReport:
    """Encode a video file (anything :func:`gfix_sdk.io.open_video` reads) into
    ``output``; with ``enhance`` also train GFix's enhancer and store it when it
    helps. ``device``, ``workers`` (GOPs coded at once on Ray), ``ray_address``,
    ``cpus_per_worker`` and ``threads_per_gop`` as for :func:`encode_frames`."""
    with open_video(source, size=size, fps=fps, bit_depth=bit_depth, max_frames=max_frames) as video:
        info = video.info
        total = info.num_frames
        if total is not None and max_frames is not None:
            total = min(total, max_frames)
        return encode_frames(video, output, width=info.width, height=info.height, fps=info.fps,
                             config=config, total=total, progress=progress, on_frame=on_frame,
                             enhance=enhance, device=device, workers=workers, ray_address=ray_address,
                             cpus_per_worker=cpus_per_worker, threads_per_gop=threads_per_gop)

