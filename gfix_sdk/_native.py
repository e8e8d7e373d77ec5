"""Lazy access to the compiled modules, so that ``import gfix_sdk`` never fails.

``_C`` holds the CPU kernels and is always built; ``_C_cuda`` holds the CUDA
kernels and exists only when a CUDA toolkit was found at build time.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any


class NativeModuleError(RuntimeError):
    """The compiled part of gfix_sdk is missing or cannot be loaded."""


@functools.cache
def _load(name: str) -> tuple[ModuleType | None, str | None]:
    try:
        return importlib.import_module(f"gfix_sdk.{name}"), None
    except ImportError as exc:  # not built, or built for another Python
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, KeyboardInterrupt):
            # Ctrl-C (or SIGTERM, see gfix_sdk._signals) while the module initialised: pybind11
            # reports it as "initialization failed". An interruption, not a missing build, and
            # not to be cached as one.
            raise cause from None
        return None, f"{type(exc).__name__}: {exc}"


def cpu_module() -> ModuleType:
    """The CPU kernel module; raises :class:`NativeModuleError` if unavailable."""
    module, error = _load("_C")
    if module is None:
        raise NativeModuleError(
            "gfix_sdk's native module (gfix_sdk._C) is not available "
            f"({error}). Build it with `pip install -e .` from the source tree "
            "(needs a C++17 compiler and CMake)."
        )
    return module


def cuda_module() -> ModuleType:
    """The CUDA kernel module; raises :class:`NativeModuleError` if it was not built."""
    module, error = _load("_C_cuda")
    if module is None:
        raise NativeModuleError(
            "gfix_sdk was built without its CUDA kernels (gfix_sdk._C_cuda: "
            f"{error}). Rebuild on a machine with the CUDA toolkit (nvcc) with "
            "`GFIX_CUDA=ON pip install -e .`, or move the tensors to the CPU."
        )
    return module


def build_config() -> dict[str, Any]:
    """What the native build contains: CPU kernel flags and CUDA availability.

    Returns a dict with ``cpu`` (the CPU module's build info, or ``None``),
    ``cpu_error``, ``cuda_built`` (bool), ``cuda_devices`` (devices the CUDA
    module can see; 0 without a driver) and ``cuda_error``.
    """
    cpu, cpu_error = _load("_C")
    cuda, cuda_error = _load("_C_cuda")
    return {
        "cpu": cpu.build_info() if cpu is not None else None,
        "cpu_error": cpu_error,
        "cuda_built": cuda is not None,
        "cuda_devices": cuda.device_count() if cuda is not None else 0,
        "cuda_error": cuda_error,
    }
