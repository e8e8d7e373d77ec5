"""``run_eval``: every codec at every rate point on every video, scored and reported.

For each video (its first ``frames`` frames) and each codec, each rate point
is encoded and decoded by the codec (:class:`~gfix_sdk.anchors.RatePointCodec`)
and scored against the source (:mod:`gfix_sdk.eval.scoring`). The output
folder gets:

* ``points.csv`` and ``points.json``: every point (rewritten after each
  point, so an interrupted run keeps what it finished; ``"complete"`` in the
  JSON tells);
* ``rd_<video>.png``: RD curves, one panel per metric;
* ``summary.md``: settings, metrics and omission reasons, and per video the
  points and BD-rate tables of every codec against every anchor.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gfix_sdk.anchors.base import RatePointCodec, RateValue
from gfix_sdk.eval.bdtables import BDCell, bd_cells
from gfix_sdk.eval.codecs import DEFAULT_ANCHORS, CodecOptions, build_codecs
from gfix_sdk.eval.dispatch import Encoded, Job, describe, point_runner
from gfix_sdk.eval.plots import plot_rd
from gfix_sdk.eval.records import JSON_FORMAT, RatePointResult, csv_text, json_text, write_atomic
from gfix_sdk.eval.scoring import METRICS, Scorers, VideoScorer, metric_spec
from gfix_sdk.eval.summary import summary_markdown
from gfix_sdk.eval.videos import VideoSpec, unique_names, video_spec
from gfix_sdk.scale.runtime import check_address

DEFAULT_FRAMES = 96  # the GFix paper's protocol (first 96 frames of each UVG sequence)
DEFAULT_POINTS = 4


@dataclass
class EvalResult:
    """What :func:`run_eval` produced."""

    out_dir: Path
    points: list[RatePointResult]
    cells: list[BDCell]
    metrics: tuple[str, ...]
    """Metric keys the report has."""
    omitted: dict[str, str]
    """Metric key -> why it was left out."""
    csv_path: Path
    json_path: Path
    summary_path: Path
    plots: dict[str, Path] = field(default_factory=dict)
    """Video name -> RD plot."""


def _check_positive(value: object, name: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")
    return value


def _plan(specs: Sequence[VideoSpec], codecs: Sequence[RatePointCodec], points: int,
          rate_values: Mapping[str, Sequence[RateValue]]) -> dict[str, dict[str, list[RateValue]]]:
    """Rate values of every codec on every video (defaults depend on the frame size)."""
    unknown = sorted(set(rate_values) - {c.name for c in codecs})
    if unknown:
        raise ValueError(f"rate values given for codecs that are not evaluated: {unknown}")
    plan: dict[str, dict[str, list[RateValue]]] = {}
    for spec in specs:
        info = spec.probe()
        plan[spec.name] = {}
        for codec in codecs:
            values = list(rate_values.get(codec.name) or codec.rate_points(points, info.width, info.height))
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{codec.name}: rate values must be distinct and non-empty, got {values}")
            plan[spec.name][codec.name] = values
    return plan


def run_eval(
    videos: Sequence[str | os.PathLike[str] | VideoSpec],
    anchors: Sequence[str | RatePointCodec] = DEFAULT_ANCHORS,
    frames: int | None = DEFAULT_FRAMES,
    out_dir: str | os.PathLike[str] = "gfix-eval",
    *,
    points: int = DEFAULT_POINTS,
    rate_values: Mapping[str, Sequence[RateValue]] | None = None,
    lpips: str | os.PathLike[str] | None = None,
    fid_weights: str | os.PathLike[str] | None = None,
    vmaf: bool = True,
    codec_options: CodecOptions | None = None,
    metric_device: str = "cpu",
    progress: bool = True,
    workers: int = 1,
    ray_address: str | None = None,
    cpus_per_worker: int | None = None,
) -> EvalResult:
    """Run every codec at every rate point on every video; write the report.

    Args:
        videos: paths :mod:`gfix_sdk.io` reads, ``"bundled"``, or
            :class:`~gfix_sdk.eval.videos.VideoSpec` (e.g. from
            :func:`~gfix_sdk.eval.videos.uvg_videos`).
        anchors: codecs, each a built-in name (``h264``, ``h265``, ``av1``, ``gs``, ``gfix``), a
            ``module:attribute`` string, or an object following
            :class:`~gfix_sdk.anchors.RatePointCodec`. Every codec is
            compared with every other one.
        frames: first frames of each video to code (None: all).
        out_dir: output folder (created; existing report files replaced).
        points: rate points per codec when ``rate_values`` does not list them.
        rate_values: codec name -> knob values (CRFs, Gaussian counts), used
            for every video instead of the codec's defaults.
        lpips, fid_weights: weights files (None: ``$GFIX_LPIPS`` /
            ``$GFIX_FID_WEIGHTS``; a metric without weights is omitted).
        vmaf: False leaves VMAF out.
        codec_options: settings of the built-in codecs (GFix base model, ...).
        metric_device: where LPIPS and FID run.
        progress: show a progress bar over all rate points.
        workers: rate points encoded at once as Ray tasks (needs the
            ``cluster`` extra; see :mod:`gfix_sdk.eval.dispatch`). They are
            scored here, in the serial run's order: the same report.
        ray_address: run the tasks on an existing Ray cluster (``"auto"``,
            ``"ray://HOST:PORT"``); None with ``workers > 1``: a local
            runtime, started and stopped here.
        cpus_per_worker: CPUs (and torch threads) per rate-point task
            (default: CPUs / workers).

    Returns:
        The points, BD-rate cells and written paths.

    Raises:
        ValueError, FileNotFoundError: bad arguments, a missing video, an
            unknown codec, or a weights file of the wrong kind (all before
            any encoding starts).
        MissingDependencyError: ``workers > 1`` or an address without Ray.
    """
    from gfix_sdk import __version__

    frames = _check_positive(frames, "frames", allow_none=True)
    points = _check_positive(points, "points")  # type: ignore[assignment]
    workers = _check_positive(workers, "workers")  # type: ignore[assignment]
    check_address(ray_address)
    if not videos:
        raise ValueError("no videos to evaluate")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs = unique_names([video_spec(v) for v in videos])
    codecs, notes = build_codecs(list(anchors), codec_options or CodecOptions(), out)
    scorers = Scorers(lpips=lpips, fid_weights=fid_weights, vmaf=vmaf, device=metric_device)
    plan = _plan(specs, codecs, points, rate_values or {})
    metrics = tuple(metric_spec(k) for k in scorers.available)
    codec_names = [c.name for c in codecs]

    header = {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "version": __version__, "frames": frames}
    video_records: list[dict[str, Any]] = []
    results: list[RatePointResult] = []
    problems: list[dict[str, str]] = []
    paths = {"csv": out / "points.csv", "json": out / "points.json", "summary": out / "summary.md"}

    def document(cells: list[BDCell] | None) -> dict[str, Any]:
        return {
            "format": JSON_FORMAT, "created": header["created"], "gfix_sdk": __version__,
            "complete": cells is not None,
            "settings": {"frames": frames, "points": points,
                         "codecs": [{"name": c.name, "knob": c.rate_knob, "class": type(c).__name__}
                                    for c in codecs],
                         "rate_values": {v: {c: list(vals) for c, vals in per.items()} for v, per in plan.items()}},
            "videos": video_records,
            "metrics": {m.key: {"label": m.label, "higher_is_better": m.higher_is_better,
                                "available": m.key not in scorers.omitted,
                                "detail": scorers.details.get(m.key), "omitted_reason": scorers.omitted.get(m.key)}
                        for m in METRICS},
            "omitted": dict(scorers.omitted),
            "notes": notes,
            "problems": problems,
            "points": [p.record() for p in results],
            "bd_rate": [c.record() for c in cells or []],
        }

    def save(cells: list[BDCell] | None) -> None:
        write_atomic(paths["csv"], csv_text(results))
        write_atomic(paths["json"], json_text(document(cells)))

    total = sum(len(values) for per in plan.values() for values in per.values())
    bar = tqdm(total=total, desc="eval", unit="point", disable=not progress)
    try:
        with point_runner(workers, ray_address, cpus_per_worker) as runner:
            for spec in specs:
                video, info = spec.load(frames)
                video_records.append({"name": spec.name, "source": spec.path, "width": info.width,
                                      "height": info.height, "fps": info.fps, "frames": len(video)})
                jobs = [(codec, value) for codec in codecs for value in plan[spec.name][codec.name]]

                def started(job: Job, name: str = spec.name) -> None:
                    bar.set_description(f"{name} {describe(job)}")

                with scorers.for_video(video, info.fps) as scorer:
                    for (codec, value), encoded in runner.run(jobs, video, info.fps, started):
                        point = _score_point(codec, value, encoded, spec.name, video, info.fps, scorer, problems)
                        results.append(point)
                        save(None)
                        bar.set_postfix(kbps=f"{point.kbps:.0f}", psnr=f"{point.scores.get('psnr') or 0:.2f}")
                        bar.update(1)
    finally:
        bar.close()

    cells = [cell for spec in specs
             for cell in bd_cells(spec.name, results, codec_names, metrics, scorers.omitted)]
    plots: dict[str, Path] = {}
    if metrics:
        for spec in specs:
            plots[spec.name] = plot_rd(out / f"rd_{spec.name}.png", spec.name, results, codec_names, metrics)
    save(cells)
    text = summary_markdown(header=header, videos=video_records, codecs=codec_names, metrics=metrics,
                            details=scorers.details, omitted=scorers.omitted, notes=notes, problems=problems,
                            points=results, cells=cells, plots={k: v.name for k, v in plots.items()})
    write_atomic(paths["summary"], text)
    return EvalResult(out_dir=out, points=results, cells=cells, metrics=tuple(m.key for m in metrics),
                      omitted=dict(scorers.omitted), csv_path=paths["csv"], json_path=paths["json"],
                      summary_path=paths["summary"], plots=plots)


def _score_point(codec: RatePointCodec, value: RateValue, encoded: Encoded, video_name: str, video: np.ndarray,
                 fps: float, scorer: VideoScorer, problems: list[dict[str, str]]) -> RatePointResult:
    """Score one encoded rate point against the source."""
    clip, seconds = encoded
    if clip.decoded.shape != video.shape:
        raise ValueError(
            f"{codec.name} at {codec.rate_knob}={value} decoded {clip.decoded.shape}, not the input's {video.shape}"
        )
    scores, point_problems = scorer.score(clip.decoded)
    param = f"{codec.rate_knob}={value}"
    for metric, reason in point_problems.items():
        problems.append({"video": video_name, "codec": codec.name, "param": param, "metric": metric,
                         "reason": reason})
    return RatePointResult(video=video_name, codec=codec.name, knob=codec.rate_knob, value=value,
                           bytes=clip.num_bytes, frames=len(video), width=video.shape[2], height=video.shape[1],
                           fps=fps, seconds=seconds, scores=scores, params=dict(clip.params))
