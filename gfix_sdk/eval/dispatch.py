"""Encoding an evaluation's rate points: one after another here, or as Ray
tasks (``gfix eval --workers N``) through :mod:`gfix_sdk.scale`'s executor.

Either way the driver gets ``((codec, value), (clip, seconds))`` in the
order of the jobs and scores them itself, so a parallel report equals the
serial one (all but the timings). Each task runs a codec's
:meth:`~gfix_sdk.anchors.RatePointCodec.encode_point` on ``cpus_per_worker``
torch threads; the built-in codecs' bytes do not depend on that (x264, x265
and SVT-AV1 run on one thread, the Gaussian codec fits on ``threads_per_gop``
threads), but the GFix enhancer trains on all of them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from gfix_sdk.anchors.base import EncodedClip, RatePointCodec, RateValue
from gfix_sdk.scale.tasks import MAX_RETRIES, OrderedTasks, check_workers, cluster_cpus_per_worker, local_cpus

Job = tuple[RatePointCodec, RateValue]
"""One rate point of one video: a codec and its knob value."""
Encoded = tuple[EncodedClip, float]
"""A rate point's clip and the seconds its encode took."""


def describe(job: Job) -> str:
    codec, value = job
    return f"{codec.name} {codec.rate_knob}={value}"


def encode_point(codec: RatePointCodec, frames: np.ndarray, fps: float, value: RateValue) -> Encoded:
    """``codec.encode_point(frames, fps, value)`` and its wall time."""
    start = time.perf_counter()
    clip = codec.encode_point(frames, fps, value)
    return clip, time.perf_counter() - start


def _point_task(codec: RatePointCodec, frames: np.ndarray, fps: float, value: RateValue, threads: int) -> Encoded:
    # The body of every rate-point task. Ray hands the frames over read-only;
    # a codec gets a writable array, as in a serial run.
    import torch

    torch.set_num_threads(threads)
    if not frames.flags.writeable:
        frames = frames.copy()
    return encode_point(codec, frames, fps, value)


class PointRunner(Protocol):
    def run(self, jobs: Sequence[Job], frames: np.ndarray, fps: float,
            on_start: Callable[[Job], None]) -> Iterator[tuple[Job, Encoded]]:
        """Encode every job on ``frames``; yield them in job order. ``on_start``
        is called as each one starts (or is submitted)."""
        ...


class SerialPoints:
    """Rate points one after another, in this process."""

    workers = 1

    def run(self, jobs: Sequence[Job], frames: np.ndarray, fps: float,
            on_start: Callable[[Job], None]) -> Iterator[tuple[Job, Encoded]]:
        for job in jobs:
            on_start(job)
            yield job, encode_point(job[0], frames, fps, job[1])


class RayPoints:
    """Rate points as Ray tasks, at most ``workers`` at once, each on
    ``cpus_per_worker`` CPUs (and, when the cluster has GPUs, an equal share of
    them: a task that asks for none does not see any)."""

    def __init__(self, ray: Any, workers: int, cpus_per_worker: int, max_retries: int = MAX_RETRIES) -> None:
        gpus = ray.cluster_resources().get("GPU", 0)
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.gpus_per_worker = min(1.0, gpus / workers) if gpus else 0
        self._ray = ray
        self._task = ray.remote(_point_task).options(
            num_cpus=cpus_per_worker, num_gpus=self.gpus_per_worker, max_retries=max_retries,
            retry_exceptions=False, name="gfix_eval_point")
        self._tasks: OrderedTasks[Job] = OrderedTasks(ray, workers, lambda job: f"coding {describe(job)}")

    def run(self, jobs: Sequence[Job], frames: np.ndarray, fps: float,
            on_start: Callable[[Job], None]) -> Iterator[tuple[Job, Encoded]]:
        frames_ref = self._ray.put(frames)  # once per video, not once per task

        def submit(job: Job) -> Any:
            on_start(job)
            return self._task.remote(job[0], frames_ref, fps, job[1], self.cpus_per_worker)

        yield from self._tasks.run(jobs, submit)

    def cancel(self) -> None:
        self._tasks.cancel()


@contextlib.contextmanager
def point_runner(workers: int = 1, address: str | None = None,
                 cpus_per_worker: int | None = None) -> Iterator[PointRunner]:
    """A :class:`SerialPoints` (``workers == 1``, no address), else
    :class:`RayPoints` on a Ray runtime (see
    :func:`~gfix_sdk.scale.runtime.ray_runtime`: a local one with ``workers x
    cpus_per_worker`` CPUs started and stopped here, or ``address``'s cluster).

    Raises:
        MissingDependencyError: Ray is needed and not installed (the message
            names the ``cluster`` extra).
    """
    check_workers(workers, cpus_per_worker)
    if workers == 1 and address is None:
        yield SerialPoints()
        return
    from gfix_sdk.scale.runtime import ray_runtime

    with ray_runtime(address, num_cpus=local_cpus(workers, cpus_per_worker)) as ray:
        runner = RayPoints(ray, workers, cluster_cpus_per_worker(ray, workers, cpus_per_worker))
        try:
            yield runner
        finally:
            runner.cancel()


__all__ = ["Encoded", "Job", "PointRunner", "RayPoints", "SerialPoints", "encode_point", "point_runner"]
