"""Encoding whole libraries of videos: one task group per video, one progress
bar over all frames, and a summary table (CSV and JSON) of what each video
became. A video that fails is reported; the others are still written.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from gfix_sdk._fs import temp_sibling
from gfix_sdk.errors import GFixError

SUMMARY_FIELDS = ("input", "output", "status", "frames", "bytes", "kbps", "psnr_db", "seconds", "error")
_PROBE_OPTIONS = ("size", "fps", "bit_depth", "max_frames")


@dataclass
class VideoResult:
    """What became of one input video (one row of the summary)."""

    input: str  #: the input path as given
    output: str  #: the .gfix path (written only when ``status == "ok"``)
    status: str = "pending"  #: "ok" or "failed"
    frames: int = 0  #: frames coded
    bytes: int = 0  #: size of the .gfix file
    kbps: float = math.nan  #: bitrate of the .gfix file, kbit/s
    psnr_db: float = math.nan  #: mean PSNR of the Gaussian reconstruction, dB
    seconds: float = 0.0  #: wall time of this video's encode
    error: str = ""  #: why it failed ("" when it did not)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class LibraryReport:
    """The outcome of :func:`encode_many`."""

    videos: list[VideoResult]  #: one per input, in input order
    csv_path: Path | None = None  #: the summary table, when written
    json_path: Path | None = None  #: the same rows as a JSON list, when written
    seconds: float = 0.0  #: wall time of the whole run
    failed: list[VideoResult] = field(init=False)  #: the videos that failed

    def __post_init__(self) -> None:
        self.failed = [v for v in self.videos if not v.ok]


class _Stopped(Exception):
    """Raised inside a video's encode when the run is being abandoned."""


def output_paths(inputs: Sequence[str | os.PathLike[str]], out_dir: Path) -> list[Path]:
    """``out_dir / <input stem>.gfix`` for each input; ``ValueError`` when two
    inputs would write the same file."""
    outputs = [out_dir / f"{Path(os.fspath(name).rstrip('/')).stem}.gfix" for name in inputs]
    seen: dict[Path, str] = {}
    for name, out in zip(inputs, outputs):
        if out in seen:
            raise ValueError(f"inputs {seen[out]!r} and {os.fspath(name)!r} would both be written to {out}; "
                             "rename one or encode them into different folders")
        seen[out] = os.fspath(name)
    return outputs


def _probe_frames(source: str, options: dict[str, Any]) -> int | None:
    """Frames the encode will code (None: unknown); raises what opening raises."""
    from gfix_sdk.io import open_video

    probe = {k: options[k] for k in _PROBE_OPTIONS if options.get(k) is not None}
    with open_video(source, **probe) as video:
        total = video.info.num_frames
    if total is not None and options.get("max_frames") is not None:
        total = min(total, options["max_frames"])
    return total


def write_summary(videos: Sequence[VideoResult], out_dir: Path, stem: str = "summary") -> tuple[Path, Path]:
    """Write ``stem.csv`` and ``stem.json`` in ``out_dir`` (each atomically); return their paths."""
    rows = [{k: v for k, v in asdict(video).items() if k in SUMMARY_FIELDS} for video in videos]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    # JSON has no NaN: a failed video's kbps and PSNR become null.
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in rows]
    paths = out_dir / f"{stem}.csv", out_dir / f"{stem}.json"
    for path, content in zip(paths, (text.getvalue(), json.dumps(clean, indent=1) + "\n")):
        temp = temp_sibling(path)
        try:
            temp.write_text(content)
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
    return paths


def encode_many(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    workers: int = 1,
    ray_address: str | None = None,
    cpus_per_worker: int | None = None,
    videos_at_once: int = 2,
    progress: bool = True,
    summary: bool = True,
    **encode_options: Any,
) -> LibraryReport:
    """Encode every input into ``out_dir/<stem>.gfix``.

    Each video is coded by :func:`~gfix_sdk.encoder.encode_video`
    (with ``workers > 1`` or an address: its GOPs as Ray tasks, on one Ray
    runtime shared by all videos). An input that cannot be read or encoded is
    recorded as failed with the error's message, and the others go on; no
    partial ``.gfix`` file is ever left.

    Args:
        inputs: video files (anything :func:`gfix_sdk.io.open_video` reads).
        out_dir: where the ``.gfix`` files and the summary go (created if needed).
        workers: GOP tasks in flight per video (1 without an address: no Ray,
            videos one after another).
        ray_address: an existing Ray cluster (``"auto"``, ``"ray://HOST:PORT"``).
        cpus_per_worker: CPUs (and rasterizer threads) per GOP task.
        videos_at_once: videos in progress at once when Ray is used, so that
            the next video's GOPs fill the workers the last GOPs of a video
            leave idle (each keeps at most ``2 x workers`` GOPs in memory).
        progress: one progress bar over the frames of all videos.
        summary: write ``summary.csv`` and ``summary.json`` in ``out_dir``.
        **encode_options: passed to ``encode_video`` (``config``, ``max_frames``,
            ``size``, ``fps``, ``bit_depth``, ``enhance``, ``device``, ``threads_per_gop``).

    Returns:
        A :class:`LibraryReport`; ``report.failed`` lists the failures.
    """
    from gfix_sdk.encoder import encode_video

    for reserved in ("progress", "on_frame", "output"):
        if reserved in encode_options:
            raise TypeError(f"encode_many() sets {reserved!r} itself")
    if videos_at_once < 1:
        raise ValueError(f"videos_at_once must be >= 1, got {videos_at_once}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    videos = [VideoResult(os.fspath(name), os.fspath(path)) for name, path in zip(inputs, output_paths(inputs, out))]
    totals: dict[int, int | None] = {}
    for number, video in enumerate(videos):
        try:
            totals[number] = _probe_frames(video.input, encode_options)
        except (GFixError, OSError, ValueError) as exc:  # unreadable: report it, go on
            video.status, video.error = "failed", str(exc)
    known = [t for t in totals.values() if t is not None]
    bar = tqdm(total=sum(known) if len(known) == len(totals) else None, desc="encode-many", unit="frame",
               disable=not progress)
    lock, stop = threading.Lock(), threading.Event()

    def count_frame(_coded: object) -> None:
        if stop.is_set():
            raise _Stopped("the run was interrupted")
        with lock:
            bar.update(1)

    def run(number: int) -> None:
        video = videos[number]
        began = time.perf_counter()
        try:
            report = encode_video(video.input, video.output, progress=False, on_frame=count_frame,
                                  workers=workers, ray_address=ray_address, cpus_per_worker=cpus_per_worker,
                                  **encode_options)
        except _Stopped:
            raise
        except Exception as exc:  # one video's failure must not stop the others
            video.status, video.error = "failed", f"{type(exc).__name__}: {exc}"
        else:
            video.status, video.frames, video.bytes = "ok", report.num_frames, report.num_bytes
            video.kbps, video.psnr_db = report.bitrate_kbps, report.mean_psnr
        video.seconds = time.perf_counter() - began
        with lock:
            bar.set_postfix(done=sum(v.status != "pending" for v in videos), failed=sum(not v.ok for v in videos
                                                                                         if v.status != "pending"))

    use_ray = workers > 1 or ray_address is not None
    runtime: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if use_ray:
        from gfix_sdk.scale.runtime import ray_runtime
        from gfix_sdk.scale.tasks import local_cpus

        runtime = ray_runtime(ray_address, num_cpus=local_cpus(workers, cpus_per_worker))
    try:
        with runtime, ThreadPoolExecutor(max_workers=videos_at_once if use_ray else 1) as pool:
            futures = [pool.submit(run, number) for number in totals]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                # Ctrl-C: videos not started are dropped, running ones stop at
                # their next frame (their writers remove their temporary files).
                stop.set()
                for future in futures:
                    future.cancel()
                raise
    finally:
        bar.close()
    report = LibraryReport(videos, seconds=time.perf_counter() - start)
    if summary:
        report.csv_path, report.json_path = write_summary(videos, out)
    return report


__all__ = ["LibraryReport", "VideoResult", "encode_many", "output_paths", "write_summary"]
