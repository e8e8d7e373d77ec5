"""GOP-parallel encoding on Ray: GOPs of a frame stream become Ray tasks, and
their coded frames come back in order.

The driver reads the frames, cuts them at GOP boundaries (:func:`gop_chunks`),
submits at most ``workers`` GOPs at a time and yields ``(original, coded)``
pairs in frame order, so the caller writes the file exactly as a sequential
encode does. Memory on the driver stays bounded by ``2 x workers`` GOPs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

import numpy as np
import torch

from gfix_sdk.errors import GFixError
from gfix_sdk.gaussians.sequence import CodedFrame, SequenceConfig
from gfix_sdk.scale.gop import encode_gop, gop_chunks
from gfix_sdk.scale.runtime import ray_runtime

#: What a GOP task runs: ``encode(frames, start_index=, config=, device=, threads=)``.
GopEncoder = Callable[..., list[CodedFrame]]

#: Ray re-runs a task this many times when its worker process dies (not when
#: the task raises: a codec error would only fail again).
MAX_RETRIES = 3


class GopTaskError(GFixError, RuntimeError):
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
                 encode: GopEncoder) -> None:
        self.device = device
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self._ray = ray
        self._frames = frames
        self._config = config
        self._height, self._width = height, width
        self._encode = encode
        self._task = ray.remote(_run_gop).options(
            num_cpus=cpus_per_worker, num_gpus=1 if device == "cuda" else 0,
            max_retries=max_retries, retry_exceptions=False, name="gfix_gop")
        self._running: dict[Any, int] = {}  # ObjectRef -> first frame of its GOP

    def __iter__(self) -> Iterator[tuple[np.ndarray, CodedFrame]]:
        chunks = gop_chunks(self._frames, gop=self._config.gop, height=self._height, width=self._width)
        held: dict[int, np.ndarray] = {}  # GOPs submitted and not yet yielded
        done: dict[int, list[CodedFrame]] = {}
        next_start, exhausted = 0, False
        while True:
            while not exhausted and len(self._running) < self.workers and len(held) < 2 * self.workers:
                chunk = next(chunks, None)
                if chunk is None:
                    exhausted = True
                    break
                start, batch = chunk
                ref = self._task.remote(self._encode, batch, start_index=start, config=self._config,
                                        device=self.device, threads=self.cpus_per_worker)
                self._running[ref] = start
                held[start] = batch
            if next_start in done:
                batch, coded = held.pop(next_start), done.pop(next_start)
                next_start += len(batch)
                yield from zip(batch, coded, strict=True)
                continue
            if not self._running:
                return
            ready, _ = self._ray.wait(list(self._running), num_returns=1)
            for ref in ready:
                start = self._running.pop(ref)
                done[start] = self._result(ref, start, len(held[start]))

    def _result(self, ref: Any, start: int, count: int) -> list[CodedFrame]:
        exceptions = self._ray.exceptions
        try:
            return self._ray.get(ref)
        except exceptions.RayTaskError as exc:
            # The task raised: re-raise what it raised (a ValueError stays one).
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                cause.add_note(f"(in the Ray task coding frames {start}..{start + count - 1})")
                raise cause from exc
            raise
        except exceptions.RayError as exc:
            raise GopTaskError(f"the Ray task coding frames {start}..{start + count - 1} failed: {exc}") from exc

    def cancel(self) -> None:
        """Cancel the GOP tasks still running (their results are not needed)."""
        for ref in self._running:
            with contextlib.suppress(Exception):  # best effort: it may have just finished
                self._ray.cancel(ref, force=True)
        self._running.clear()


def _cpus_per_worker(ray: ModuleType, workers: int, requested: int | None) -> int:
    cluster_cpus = int(ray.cluster_resources().get("CPU", 0))
    cpus = requested or max(1, cluster_cpus // workers)
    if cpus > cluster_cpus:
        raise ValueError(f"each GOP task asks for {cpus} CPUs but the Ray cluster has {cluster_cpus}")
    return cpus


@contextlib.contextmanager
def ray_gop_stream(frames: Iterable[np.ndarray], *, config: SequenceConfig, height: int, width: int,
                   workers: int, address: str | None = None, device: str | torch.device | None = None,
                   cpus_per_worker: int | None = None, max_retries: int = MAX_RETRIES,
                   encode: GopEncoder | None = None) -> Iterator[GopStream]:
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
        cpus_per_worker: CPUs each task asks for, and its torch threads
            (default: this machine's cores / workers for a local runtime, the
            cluster's CPUs / workers otherwise).
        max_retries: re-runs of a task whose worker process died.
        encode: the function each task runs (default: this module's
            :func:`encode_gop`, looked up at call time).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if cpus_per_worker is not None and cpus_per_worker < 1:
        raise ValueError(f"cpus_per_worker must be >= 1, got {cpus_per_worker}")
    local_cpus = cpus_per_worker or max(1, (os.cpu_count() or 1) // workers)
    with ray_runtime(address, num_cpus=workers * local_cpus) as ray:
        stream = GopStream(ray, frames, config=config, height=height, width=width,
                           device=task_device(ray, device), workers=workers,
                           cpus_per_worker=_cpus_per_worker(ray, workers, cpus_per_worker),
                           max_retries=max_retries, encode=encode or encode_gop)
        try:
            yield stream
        finally:
            stream.cancel()


__all__ = ["GopEncoder", "GopStream", "GopTaskError", "MAX_RETRIES", "ray_gop_stream", "task_device"]
