"""Running a stream of independent jobs as Ray tasks, at most ``workers`` at
once, and getting their results back in submission order.

Both GOP-parallel encoding (:mod:`gfix_sdk.scale.parallel`) and ``gfix eval
--workers`` (rate points) are such streams: the caller writes or scores the
results in the order a sequential run would, so the output is the same.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any, Generic, TypeVar

from gfix_sdk.errors import GFixError

Job = TypeVar("Job")

#: Ray re-runs a task this many times when its worker process dies (not when
#: the task raises: a codec error would only fail again).
MAX_RETRIES = 3

_END: Any = object()


class ScaleTaskError(GFixError, RuntimeError):
    """A Ray task could not complete (e.g. its worker died more often than the
    retries allow)."""


def check_workers(workers: int, cpus_per_worker: int | None) -> None:
    """``ValueError`` unless ``workers`` and ``cpus_per_worker`` (None allowed) are >= 1."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if cpus_per_worker is not None and cpus_per_worker < 1:
        raise ValueError(f"cpus_per_worker must be >= 1, got {cpus_per_worker}")


def local_cpus(workers: int, cpus_per_worker: int | None) -> int:
    """CPUs of a local runtime for ``workers`` tasks of ``cpus_per_worker``
    CPUs (default: this machine's cores shared out, at least one each)."""
    return workers * (cpus_per_worker or max(1, (os.cpu_count() or 1) // workers))


def cluster_cpus_per_worker(ray: ModuleType, workers: int, requested: int | None) -> int:
    """CPUs each task asks for: ``requested``, else the cluster's CPUs / workers."""
    cluster_cpus = int(ray.cluster_resources().get("CPU", 0))
    cpus = requested or max(1, cluster_cpus // workers)
    if cpus > cluster_cpus:
        raise ValueError(f"each task asks for {cpus} CPUs but the Ray cluster has {cluster_cpus}")
    return cpus


class OrderedTasks(Generic[Job]):
    """Runs ``submit(job)`` (which returns a Ray ObjectRef) for each job, at
    most ``workers`` at once and at most ``2 x workers`` jobs held, and yields
    ``(job, result)`` in job order.

    A task that raises re-raises its exception here, with a note naming the
    job (``describe(job)``); a task Ray cannot complete raises ``error``.
    :meth:`cancel` cancels what is still running (call it when the caller
    stops early).
    """

    def __init__(self, ray: ModuleType, workers: int, describe: Callable[[Job], str],
                 error: type[ScaleTaskError] = ScaleTaskError) -> None:
        self.workers = workers
        self._ray = ray
        self._describe = describe
        self._error = error
        self._running: dict[Any, int] = {}  # ObjectRef -> number of its job

    def run(self, jobs: Iterable[Job], submit: Callable[[Job], Any]) -> Iterator[tuple[Job, Any]]:
        pending = iter(jobs)
        held: dict[int, Job] = {}  # submitted and not yet yielded
        done: dict[int, Any] = {}
        submitted = next_out = 0
        exhausted = False
        while True:
            while not exhausted and len(self._running) < self.workers and len(held) < 2 * self.workers:
                job = next(pending, _END)
                if job is _END:
                    exhausted = True
                    break
                self._running[submit(job)] = submitted
                held[submitted] = job
                submitted += 1
            if next_out in done:
                yield held.pop(next_out), done.pop(next_out)
                next_out += 1
                continue
            if not self._running:
                return
            ready, _ = self._ray.wait(list(self._running), num_returns=1)
            for ref in ready:
                number = self._running.pop(ref)
                done[number] = self._result(ref, held[number])

    def _result(self, ref: Any, job: Job) -> Any:
        exceptions = self._ray.exceptions
        try:
            return self._ray.get(ref)
        except exceptions.RayTaskError as exc:
            # The task raised: re-raise what it raised (a ValueError stays one).
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                cause.add_note(f"(in the Ray task {self._describe(job)})")
                raise cause from exc
            raise
        except exceptions.RayError as exc:
            raise self._error(f"the Ray task {self._describe(job)} failed: {exc}") from exc

    def cancel(self) -> None:
        """Cancel the tasks still running (their results are not needed)."""
        for ref in self._running:
            with contextlib.suppress(Exception):  # best effort: it may have just finished
                self._ray.cancel(ref, force=True)
        self._running.clear()


__all__ = ["MAX_RETRIES", "OrderedTasks", "ScaleTaskError", "check_workers", "cluster_cpus_per_worker",
           "local_cpus"]
