"""TensorRT engines for the folded enhancer: build once per base, refit per video.

All videos encoded on one base model share the enhancer's architecture; only
the folded weights differ. An engine is therefore built (slow) once per
(base model, patch, batch profile, precision, GPU, TensorRT version) with
``BuilderFlag.REFIT`` and cached; another video's weights are pushed into it
with ``trt.Refitter.set_named_weights`` (fast), using the ONNX initializer
names that :func:`gfix_sdk.export.onnx_export.refit_name_map` checks.

Cache layout: ``<cache>/<key>.engine`` plus ``<key>.json`` describing what the
key was made of (TensorRT-demo style).

**Not verified on hardware here**: this development machine has no GPU and no
TensorRT; the code follows the TensorRT 10 Python API and is exercised up to
the point where TensorRT or CUDA is required, which raises
:class:`TensorRTUnavailableError` saying what is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from gfix_sdk._fs import write_atomically
from gfix_sdk.errors import GFixError
from gfix_sdk.export.onnx_export import INPUT_NAME, OUTPUT_NAME


class TensorRTUnavailableError(GFixError, RuntimeError):
    """TensorRT or a CUDA GPU is not available."""


def require_tensorrt():
    """The ``tensorrt`` module, or a clear error naming what is missing."""
    if not torch.cuda.is_available():
        raise TensorRTUnavailableError(
            "TensorRT engines need an NVIDIA GPU with CUDA; PyTorch sees none here. Use the onnxruntime "
            "or torch backend, or run on a CUDA machine with `pip install tensorrt`.")
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailableError(
            f"the tensorrt Python package is not installed ({exc}); `pip install tensorrt` on a CUDA machine"
        ) from None
    return trt


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on besides the per-video weights."""

    base_hash: str  #: SHA-256 of the base model (hex)
    patch: int
    min_batch: int
    opt_batch: int
    max_batch: int
    fp16: bool
    weights_layout: str  #: names, shapes and dtypes of the refittable weights (onnx_refit.weights_layout)
    gpu: str  #: torch.cuda.get_device_name()
    tensorrt: str  #: tensorrt.__version__

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:24]


def engine_key(base_hash: bytes, patch: int, batch: tuple[int, int, int], fp16: bool, layout: str) -> EngineKey:
    """The cache key of an engine. ``layout`` keeps an engine from being refitted
    with a video whose adapter touches other weights (those would keep the
    previous video's values)."""
    trt = require_tensorrt()
    return EngineKey(base_hash=base_hash.hex(), patch=patch, min_batch=batch[0], opt_batch=batch[1],
                     max_batch=batch[2], fp16=fp16, weights_layout=layout, gpu=torch.cuda.get_device_name(), tensorrt=trt.__version__)


def build_engine(onnx_path: str | os.PathLike[str], key: EngineKey, *, workspace_gb: float = 4.0) -> bytes:
    """Serialized, refit-enabled engine for ``onnx_path`` with ``key``'s profile."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise GFixError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.REFIT)
    if key.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 1024**3))
    profile = builder.create_optimization_profile()
    # Tiles are multiples of 8 up to the patch on each side (a frame within the
    # patch bound goes through at its own size); optimised for whole patches.
    profile.set_shape(INPUT_NAME, (key.min_batch, 3, 8, 8), (key.opt_batch, 3, key.patch, key.patch),
                      (key.max_batch, 3, key.patch, key.patch))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise GFixError(f"TensorRT failed to build an engine from {onnx_path}")
    return bytes(serialized)


def cached_engine(cache_dir: str | os.PathLike[str], onnx_path: str | os.PathLike[str], key: EngineKey) -> Path:
    """Path of the cached engine for ``key``, building it from ``onnx_path`` if absent."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    engine_path = cache / f"{key.digest()}.engine"
    if not engine_path.exists():
        data = build_engine(onnx_path, key)
        # Uniquely named temporaries renamed into place: a crashed build never leaves
        # half an engine, and processes building the same engine at once do not collide.
        description = json.dumps(asdict(key), indent=2)
        write_atomically(engine_path.with_suffix(".json"), lambda tmp: tmp.write_text(description))
        write_atomically(engine_path, lambda tmp: tmp.write_bytes(data))
    return engine_path


class TensorRTEngine:
    """A deserialized engine with one execution context; ``refit`` then ``infer``.

    Use as a context manager so device memory is released deterministically."""

    def __init__(self, engine_path: str | os.PathLike[str]) -> None:
        trt = require_tensorrt()
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise GFixError(f"cannot deserialize the TensorRT engine {engine_path} (built for another GPU "
                            "or TensorRT version? delete it to rebuild)")
        self.context = self.engine.create_execution_context()

    def refit(self, weights: dict[str, np.ndarray]) -> None:
        """Replace the named weights (float32 arrays) and refit the engine."""
        trt = self._trt
        refitter = trt.Refitter(self.engine, self._logger)
        keep = []  # TensorRT reads the arrays during refit_cuda_engine: keep them alive
        for name, value in weights.items():
            array = np.ascontiguousarray(value, dtype=np.float32)
            keep.append(array)
            if not refitter.set_named_weights(name, trt.Weights(array)):
                raise GFixError(f"TensorRT refit: the engine has no refittable weight named {name!r}")
        missing = refitter.get_missing_weights()
        if missing:
            raise GFixError(f"TensorRT refit: weights still missing: {list(missing)[:5]}")
        if not refitter.refit_cuda_engine():
            raise GFixError("TensorRT refit failed")

    def infer(self, patches: torch.Tensor) -> torch.Tensor:
        """Run ``(B, 3, h, w)`` float32 CUDA tiles (multiples of 8 up to the patch) through the engine."""
        patches = patches.to("cuda", torch.float32).contiguous()
        out = torch.empty_like(patches)
        self.context.set_input_shape(INPUT_NAME, tuple(patches.shape))
        self.context.set_tensor_address(INPUT_NAME, patches.data_ptr())
        self.context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise GFixError("TensorRT execution failed")
        stream.synchronize()
        return out

    def close(self) -> None:
        self.context = None
        self.engine = None

    def __enter__(self) -> TensorRTEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
