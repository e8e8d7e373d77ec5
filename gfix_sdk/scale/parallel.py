"""GOP-parallel encoding on Ray: GOPs of a frame stream become Ray tasks, and
their coded frames come back in order.

The driver reads the frames, cuts them at GOP boundaries (:func:`gop_chunks`),
submits at most ``workers`` GOPs at a time and yields ``(original, coded)``
pairs in frame order, so the caller writes the file exactly as a sequential
encode does. Memory on the driver stays bounded by ``2 x workers`` GOPs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

import numpy as np
import torch

from gfix_sdk.gaussians.sequence import CodedFrame, SequenceConfig
from gfix_sdk.scale.gop import THREADS_PER_GOP, check_threads_per_gop, encode_gop, gop_chunks
from gfix_sdk.scale.runtime import ray_runtime
from gfix_sdk.scale.tasks import (MAX_RETRIES, OrderedTasks, ScaleTaskError, check_workers,
                                  cluster_cpus_per_worker, local_cpus)

#: What a GOP task runs: ``encode(frames, start_index=, config=, device=, threads=, threads_per_gop=)``.
GopEncoder = Callable[..., list[CodedFrame]]


class GopTaskError(ScaleTaskError):
    """A GOP task could not complete on the Ray cluster (e.g. its worker died
    more often than the retries allow)."""


def _run_gop(encode: GopEncoder, frames: np.ndarray, **kwargs: Any) -> list[CodedFrame]:
    # The body of every GOP task; ``encode`` travels with the task so that
    # tests (and custom fitting) can replace it.
    return encode(frames, **kwargs)


def task_device(ray: ModuleType, device: str | torch.device | None) -> str:
    """Where GOP tasks fit: ``"cpu"`` or ``"cuda"`` (Ray hands each CUDA task
    its own GPU, so an index is meaningless there). None: CUDA when the
    cluster has GPUs."""
    gpus = ray.cluster_resources().get("GPU", 0)
    if device is None:
        return "cuda" if gpus >= 1 else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"invalid device {device!r}: {exc}") from None
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if kind == "cuda" and gpus < 1:
        raise ValueError(f"device {device!r} requested but the Ray cluster has no GPU")
    return kind


class GopStream:
    """Iterating yields ``(original frame, CodedFrame)`` for every frame, in
    order; GOPs are coded by Ray tasks, at most ``workers`` at once.

    Built by :func:`ray_gop_stream`, which also cancels what is still running
    when the caller stops early (an error, Ctrl-C)."""

    def __init__(self, ray: ModuleType, frames: Iterable[np.ndarray], *, config: SequenceConfig, height: int,
                 width: int, device: str, workers: int, cpus_per_worker: int, max_retries: int,
                 encode: GopEncoder, threads_per_gop: int = THREADS_PER_GOP) -> None:
        self.device = device
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.threads_per_gop = threads_per_gop
        self._frames = frames
        self._config = config
        self._height, self._width = height, width
        self._encode = encode
        self._task = ray.remote(_run_gop).options(
            num_cpus=cpus_per_worker, num_gpus=1 if device == "cuda" else 0,
            max_retries=max_retries, retry_exceptions=False, name="gfix_gop")
        self._tasks: OrderedTasks[tuple[int, np.ndarray]] = OrderedTasks(
            ray, workers, lambda chunk: f"coding frames {chunk[0]}..{chunk[0] + len(chunk[1]) - 1}", GopTaskError)

    def _submit(self, chunk: tuple[int, np.ndarray]) -> Any:
        start, batch = chunk
        return self._task.remote(self._encode, batch, start_index=start, config=self._config, device=self.device,
                                 threads=self.cpus_per_worker, threads_per_gop=self.threads_per_gop)

    def __iter__(self) -> Iterator[tuple[np.ndarray, CodedFrame]]:
        chunks = gop_chunks(self._frames, gop=self._config.gop, height=self._height, width=self._width)
        for (_, batch), coded in self._tasks.run(chunks, self._submit):
            yield from zip(batch, coded, strict=True)

    def cancel(self) -> None:
        """Cancel the GOP tasks still running (their results are not needed)."""
        self._tasks.cancel()


@contextlib.contextmanager
def ray_gop_stream(frames: Iterable[np.ndarray], *, config: SequenceConfig, height: int, width: int,
                   workers: int, address: str | None = None, device: str | torch.device | None = None,
                   cpus_per_worker: int | None = None, max_retries: int = MAX_RETRIES,
                   encode: GopEncoder | None = None,
                   threads_per_gop: int = THREADS_PER_GOP) -> Iterator[GopStream]:
    """A :class:`GopStream` over ``frames`` on a Ray runtime (see
    :func:`~gfix_sdk.scale.runtime.ray_runtime` for ``address``).

    Args:
        frames: ``(H, W, 3)`` uint8 frames, read lazily.
        config: codec settings; GOPs are ``config.gop`` frames long.
        height, width: frame size.
        workers: GOPs coded at once.
        address: None (a local runtime with ``workers x cpus_per_worker`` CPUs),
            ``"auto"`` or ``"ray://HOST:PORT"`` (an existing cluster).
        device: "cpu" or "cuda" for the tasks (a CUDA task asks Ray for one
            GPU); None: CUDA when the cluster has GPUs.
        cpus_per_worker: CPUs each task asks for, and its rasterizer's
            threads (default: this machine's cores / workers for a local
            runtime, the cluster's CPUs / workers otherwise).
        max_retries: re-runs of a task whose worker process died.
        encode: the function each task runs (default: this module's
            :func:`encode_gop`, looked up at call time).
        threads_per_gop: torch's intra-op threads in each task (see
            :func:`~gfix_sdk.scale.gop.gop_threads`): the same as a
            sequential encode's, so the bytes are too.
    """
    check_workers(workers, cpus_per_worker)
    check_threads_per_gop(threads_per_gop)
    with ray_runtime(address, num_cpus=local_cpus(workers, cpus_per_worker)) as ray:
        stream = GopStream(ray, frames, config=config, height=height, width=width,
                           device=task_device(ray, device), workers=workers,
                           cpus_per_worker=cluster_cpus_per_worker(ray, workers, cpus_per_worker),
                           max_retries=max_retries, encode=encode or encode_gop, threads_per_gop=threads_per_gop)
        try:
            yield stream
        finally:
            stream.cancel()


__all__ = ["GopEncoder", "GopStream", "GopTaskError", "MAX_RETRIES", "ray_gop_stream", "task_device"]
