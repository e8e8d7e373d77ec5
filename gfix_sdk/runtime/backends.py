"""Enhancer backends behind one interface: ``torch``, ``onnxruntime``, ``tensorrt``.

A backend maps a batch of patches ``(B, 3, P, P)`` float32 in [0, 1] to the
enhanced batch. ``torch`` runs the adapted PyTorch model itself (exactly what
the encoder evaluated); ``onnxruntime`` and ``tensorrt`` run the folded
export of the same model (outputs agree to ~1e-6 in float32, so a decoded
uint8 pixel can differ by one level where a value sits on a rounding
boundary). Exports are cached per adapter, keyed by the adapter payload's
hash, the patch, the batch bound and the opset (``$GFIX_CACHE``, default
``~/.cache/gfix``): opening the same video again does not re-export, and a
new video on a base already exported gets that graph with its own weights
written in (:mod:`gfix_sdk.export.onnx_refit`) instead of a new export.

``auto`` picks the fastest backend present: TensorRT on a CUDA GPU when the
``tensorrt`` package imports, else ONNX Runtime (CUDA execution provider on a
GPU, CPU otherwise), else PyTorch.

:func:`open_backend` (what :class:`~gfix_sdk.runtime.Decoder` calls) takes a
lean path for ``onnxruntime`` and ``tensorrt`` once a base has been seen:
with the base's hash recorded, its factors cached and an ONNX template for
the shape on disk (:mod:`gfix_sdk.runtime.factors`), a new video's folded
weights are computed from the base's safetensors and written into the
template; neither diffusers nor transformers is imported and no
:class:`~gfix_sdk.enhance.model.Enhancer` is built. Otherwise (the first
video on a base, or ``torch``) it loads the base and rebuilds the enhancer,
which also fills those caches; ``torch`` then runs the folded model
(``W + A M B`` formed once at open).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import Tensor

from gfix_sdk._fs import temp_sibling, write_atomically
from gfix_sdk.errors import GFixError
from gfix_sdk.paths import cache_root

if TYPE_CHECKING:  # the trainable model is only built on the torch path and the first open of a base
    from gfix_sdk.enhance.adapter import CodedAdapter
    from gfix_sdk.enhance.model import Enhancer

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
ONNX_OPSET = 18
#: Enhancer arithmetic: None is each backend's default (float32; TensorRT
#: builds fp16 engines). PyTorch runs any of them; fp16 only on CUDA (the CPU
#: has no fast half-precision convolutions); ONNX Runtime runs float32 only.
PRECISIONS = (None, "fp32", "fp16", "bf16")
_TORCH_DTYPES = {None: torch.float32, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_precision(precision: str | None, kind: str, device: torch.device) -> None:
    """``ValueError`` unless the resolved backend ``kind`` runs ``precision`` on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of fp32, fp16, bf16 (or None for the backend's default), "
                         f"got {precision!r}")
    if kind == "torch" and precision == "fp16" and device.type != "cuda":
        raise ValueError("precision='fp16' needs a CUDA device; on the CPU use 'bf16' or 'fp32'")
    if kind == "onnxruntime" and precision not in (None, "fp32"):
        raise ValueError(f"the onnxruntime backend runs fp32 only, got precision={precision!r} "
                         "(use backend='torch' or 'tensorrt')")
    if kind == "tensorrt" and precision == "bf16":
        raise ValueError("the tensorrt backend builds fp32 or fp16 engines, got precision='bf16'")


class EnhancerBackend(Protocol):
    name: str  #: "torch", "onnxruntime" or "tensorrt"
    device: torch.device  #: where inputs should live

    def __call__(self, patches: Tensor) -> Tensor: ...

    def close(self) -> None: ...


def onnxruntime_providers() -> list[str]:
    """Execution providers of the installed onnxruntime ([] when it is not installed)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def available_backends(device: torch.device) -> list[str]:
    """Backends that run on ``device`` in this environment, fastest first.

    On a CUDA device ONNX Runtime counts only with its CUDA or TensorRT
    execution provider (the ``onnxruntime-gpu`` package, ``pip install
    "gfix-sdk[gpu]"``): the CPU build would run the enhancer on the host, far
    slower than PyTorch on the GPU."""
    found = []
    if device.type == "cuda" and importlib.util.find_spec("tensorrt") is not None:
        found.append("tensorrt")
    providers = onnxruntime_providers()
    gpu_providers = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
    if providers and (device.type != "cuda" or gpu_providers & set(providers)):
        found.append("onnxruntime")
    found.append("torch")
    return found


class TorchBackend:
    """The enhancer in PyTorch, folded once (no adapter arithmetic per forward:
    the same weights the adapted layers form in every forward, so the same
    output). ``consume=True`` folds the given enhancer's own modules (no copy
    of the base in memory; the enhancer is unusable afterwards)."""

    name = "torch"

    def __init__(self, enhancer: Enhancer, device: torch.device, *, consume: bool = False,
                 precision: str | None = None) -> None:
        from gfix_sdk.export.folded import FoldedEnhancer

        check_precision(precision, "torch", device)
        self.dtype = _TORCH_DTYPES[precision]
        folded = FoldedEnhancer(enhancer.to(device) if consume else enhancer, inplace=consume)
        # Folded first, in float32, then cast: W + A M B is formed at full precision.
        self.model = folded.to(device=device, dtype=self.dtype).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, patches: Tensor) -> Tensor:
        return self.model(patches.to(self.device, self.dtype)).float()

    def close(self) -> None:
        self.model = None


def _shape_tag(patch: int, max_batch: int) -> str:
    return f"|{patch}|{max_batch}|{ONNX_OPSET}"


def onnx_path_for(payload: bytes, patch: int, max_batch: int, cache: Path | None = None) -> Path:
    """Where the ONNX model of the adapter ``payload`` is cached."""
    root = (cache or cache_root()) / "onnx"
    return root / hashlib.sha256(payload + _shape_tag(patch, max_batch).encode()).hexdigest()[:24] / "enhancer.onnx"


def _template_pointer(base_hash: bytes, patch: int, max_batch: int, layout: str, cache: Path | None) -> Path:
    key = hashlib.sha256((base_hash.hex() + _shape_tag(patch, max_batch) + layout).encode()).hexdigest()[:24]
    return (cache or cache_root()) / "onnx" / "templates" / f"{key}.txt"


def find_template(base_hash: bytes, patch: int, max_batch: int, layout: str, cache: Path | None = None) -> Path | None:
    """The ONNX graph exported for the first video on this base, patch, batch
    bound, opset and weights layout, or None."""
    pointer = _template_pointer(base_hash, patch, max_batch, layout, cache)
    if not pointer.exists():
        return None
    template = (cache or cache_root()) / "onnx" / pointer.read_text().strip() / "enhancer.onnx"
    return template if template.exists() else None


def _write_into_place(path: Path, write) -> None:
    """``write(tmp_path)`` into a private folder renamed onto ``path``'s folder,
    so that a crash or a concurrent decoder never sees a half-written model
    (temp_sibling names it by host and pid, and removes the orphans of
    SIGKILLed exports of this entry)."""
    tmp_dir = temp_sibling(path.parent)
    try:
        write(tmp_dir / path.name)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)  # a failed or interrupted export leaves nothing behind
        raise
    _publish(tmp_dir, path.parent)


def export_for(enhancer: Enhancer, payload: bytes, base_hash: bytes, *, max_batch: int,
               cache: Path | None = None) -> tuple[Path, object]:
    """Cached ONNX export of ``enhancer`` (whose adapter is ``payload``).

    Returns the path and the folded module (None when the file was cached).
    The first video on a base (per patch, batch bound, opset and weights
    layout) is exported with ``torch.onnx`` and its graph serves as the
    template: later videos get it with their folded weights written in
    (:func:`~gfix_sdk.export.refit_onnx`), which skips the export."""
    from gfix_sdk.export.folded import FoldedEnhancer
    from gfix_sdk.export.onnx_export import export_onnx
    from gfix_sdk.export.onnx_refit import refit_onnx, weights_layout

    patch = enhancer.config.patch
    path = onnx_path_for(payload, patch, max_batch, cache)
    if path.exists():
        return path, None
    # Export from a CPU copy: the decoder keeps using `enhancer`.
    folded = FoldedEnhancer(copy.deepcopy(enhancer).cpu(), inplace=True)
    weights = folded.folded_weights()
    layout = weights_layout(weights)
    # The template is the first such video's export, named by a small pointer
    # file (onnx refuses hard-linked external data, and a copy of SD-Turbo's
    # graph would cost gigabytes).
    template = find_template(base_hash, patch, max_batch, layout, cache)
    if template is not None:
        _write_into_place(path, lambda out: refit_onnx(template, weights, out))
        return path, folded
    _write_into_place(path, lambda out: export_onnx(folded, out, max_batch=max_batch, opset=ONNX_OPSET))
    pointer = _template_pointer(base_hash, patch, max_batch, layout, cache)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(pointer, lambda tmp: tmp.write_text(path.parent.name))
    return path, folded


def refit_for(payload: bytes, weights: dict[str, Tensor], base_hash: bytes, *, patch: int, max_batch: int,
              cache: Path | None = None) -> Path | None:
    """The lean counterpart of :func:`export_for`: the cached ONNX model of
    ``payload``, written from the base's template with ``weights`` (its folded
    weights) when absent; None when there is no template for these weights yet."""
    from gfix_sdk.export.onnx_refit import refit_onnx, weights_layout

    path = onnx_path_for(payload, patch, max_batch, cache)
    if path.exists():
        return path
    template = find_template(base_hash, patch, max_batch, weights_layout(weights), cache)
    if template is None:
        return None
    _write_into_place(path, lambda out: refit_onnx(template, weights, out))
    return path


def _publish(tmp_dir: Path, final: Path) -> None:
    try:
        tmp_dir.rename(final)
    except OSError:  # another process finished the same export first
        shutil.rmtree(tmp_dir, ignore_errors=True)


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, onnx_path: Path, device: torch.device, *, max_batch: int) -> None:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        self.providers = self.session.get_providers()
        self.device = torch.device("cpu")  # inputs go through host memory (numpy)
        self.max_batch = max_batch
        self.path = Path(onnx_path)

    def __call__(self, patches: Tensor) -> Tensor:
        outputs = []
        for start in range(0, patches.shape[0], self.max_batch):
            chunk = patches[start:start + self.max_batch].detach().cpu().numpy().astype(np.float32)
            outputs.append(torch.from_numpy(self.session.run(None, {"rendered": chunk})[0]))
        return torch.cat(outputs)

    def close(self) -> None:
        self.session = None


class TensorRTBackend:
    """A refittable TensorRT engine (built once per base from ``onnx_path``, any
    graph with these weights' layout) with ``weights``, a video's folded
    weights, written in."""

    name = "tensorrt"

    def __init__(self, onnx_path: Path, weights: dict[str, Tensor], base_hash: bytes, patch: int, *,
                 max_batch: int, fp16: bool = True) -> None:
        from gfix_sdk.export.onnx_export import initializer_names
        from gfix_sdk.export.onnx_refit import weights_layout
        from gfix_sdk.export.tensorrt_engine import TensorRTEngine, cached_engine, engine_key

        key = engine_key(base_hash, patch, (1, max_batch, max_batch), fp16, weights_layout(weights))
        missing = sorted(set(weights) - initializer_names(onnx_path))
        if missing:  # refit sets the ONNX initializers by name (see refit_name_map)
            raise ValueError(f"{len(missing)} folded weights are not initializers of {onnx_path}: {missing[:5]}")
        engine_path = cached_engine(cache_root() / "tensorrt", onnx_path, key)
        self.engine = TensorRTEngine(engine_path)
        self.engine.refit({n: w.detach().cpu().numpy() for n, w in weights.items()})  # this video's weights
        self.device = torch.device("cuda")
        self.max_batch = max_batch

    @classmethod
    def from_enhancer(cls, enhancer: Enhancer, payload: bytes, base_hash: bytes, *, max_batch: int,
                      fp16: bool = True) -> TensorRTBackend:
        from gfix_sdk.export.folded import FoldedEnhancer
        from gfix_sdk.export.tensorrt_engine import require_tensorrt

        require_tensorrt()  # before any export: say what is missing first
        onnx_path, folded = export_for(enhancer, payload, base_hash, max_batch=max_batch)
        if folded is None:
            folded = FoldedEnhancer(copy.deepcopy(enhancer).cpu(), inplace=True)
        return cls(onnx_path, folded.folded_weights(), base_hash, enhancer.config.patch, max_batch=max_batch,
                   fp16=fp16)

    def __call__(self, patches: Tensor) -> Tensor:
        return torch.cat([self.engine.infer(patches[i:i + self.max_batch])
                          for i in range(0, patches.shape[0], self.max_batch)])

    def close(self) -> None:
        self.engine.close()


def _resolve_kind(kind: str, device: torch.device) -> str:
    if kind not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {kind!r}")
    if kind == "auto":
        kind = available_backends(device)[0]
    if kind == "onnxruntime" and importlib.util.find_spec("onnxruntime") is None:
        raise ValueError("backend='onnxruntime' needs the onnxruntime package (pip install onnxruntime)")
    return kind


def create_backend(kind: str, enhancer: Enhancer, payload: bytes, base_hash: bytes, device: torch.device,
                   *, max_batch: int = 8, consume: bool = False, precision: str | None = None) -> EnhancerBackend:
    """Build the requested backend (``auto``: the fastest available one) from a
    rebuilt enhancer. ``consume=True``: the backend may fold ``enhancer`` in
    place (the caller does not use it afterwards). ``precision``: see
    :data:`PRECISIONS`."""
    kind = _resolve_kind(kind, device)
    check_precision(precision, kind, device)
    if kind == "torch":
        return TorchBackend(enhancer, device, consume=consume, precision=precision)
    if kind == "onnxruntime":
        path, _ = export_for(enhancer, payload, base_hash, max_batch=max_batch)
        return OnnxRuntimeBackend(path, device, max_batch=max_batch)
    return TensorRTBackend.from_enhancer(enhancer, payload, base_hash, max_batch=max_batch,
                                         fp16=precision != "fp32")


def open_backend(kind: str, payload: bytes, base: str | os.PathLike[str] | None, device: torch.device,
                 *, max_batch: int = 8, context: str = "ENHANCER",
                 precision: str | None = None) -> tuple[EnhancerBackend, CodedAdapter]:
    """The backend for a file's adapter ``payload`` on the local ``base`` (see
    the module docstring: lean when the base's caches allow, else the full
    rebuild); returns it with the parsed adapter. ``context`` names the
    section in errors (:class:`~gfix_sdk.errors.GFixFormatError`);
    ``precision``: see :data:`PRECISIONS` (checked before the base is loaded)."""
    from gfix_sdk.enhance.adapter import decode_adapter

    coded = decode_adapter(payload, context=context)
    kind = _resolve_kind(kind, device)
    check_precision(precision, kind, device)
    if kind != "torch":
        backend = _lean_backend(kind, payload, coded, base, device, max_batch, precision)
        if backend is not None:
            return backend, coded
    from gfix_sdk.enhance.pipeline import load_enhancer

    enhancer, coded = load_enhancer(payload, base, device, context=context)
    return create_backend(kind, enhancer, payload, coded.base_hash, device, max_batch=max_batch,
                          consume=True, precision=precision), coded


def _lean_backend(kind: str, payload: bytes, coded: CodedAdapter, base: str | os.PathLike[str] | None,
                  device: torch.device, max_batch: int, precision: str | None = None) -> EnhancerBackend | None:
    """The ONNX Runtime or TensorRT backend without the base's modules, or None
    when a cache it needs is missing (the caller then takes the full path)."""
    from gfix_sdk.enhance.adapter import check_base_hash
    from gfix_sdk.enhance.base import check_base_dir, resolve_base_path
    from gfix_sdk.runtime import factors as cached

    base_dir = resolve_base_path(base)
    check_base_dir(base_dir)
    digest = cached.known_base_hash(base_dir)
    if digest is None:
        return None
    check_base_hash(coded, digest)  # a wrong base is refused as on the full path
    patch = coded.config.patch
    path = onnx_path_for(payload, patch, max_batch)
    if kind == "onnxruntime" and path.exists():  # this video was opened before
        return OnnxRuntimeBackend(path, device, max_batch=max_batch)
    factors = cached.load_factor_set(digest, coded.config)
    if factors is None or not factors.lean:
        return None
    try:
        weights = cached.fold_weights(coded, factors, base_dir)
    except (OSError, KeyError, ValueError) as exc:
        if isinstance(exc, GFixError):
            raise  # e.g. the adapter does not fit this base's layers: the full path would say the same
        return None
    if kind == "onnxruntime":
        path = refit_for(payload, weights, digest, patch=patch, max_batch=max_batch)
        return None if path is None else OnnxRuntimeBackend(path, device, max_batch=max_batch)
    from gfix_sdk.export.onnx_refit import weights_layout

    template = find_template(digest, patch, max_batch, weights_layout(weights))
    if template is None:
        return None
    return TensorRTBackend(template, weights, digest, patch, max_batch=max_batch, fp16=precision != "fp32")
