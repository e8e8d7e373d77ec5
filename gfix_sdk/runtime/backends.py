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
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from gfix_sdk._fs import temp_sibling
from gfix_sdk.enhance.model import Enhancer
from gfix_sdk.paths import cache_root

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
ONNX_OPSET = 18


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
    name = "torch"

    def __init__(self, enhancer: Enhancer, device: torch.device) -> None:
        self.enhancer = enhancer.to(device).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, patches: Tensor) -> Tensor:
        return self.enhancer(patches.to(self.device))

    def close(self) -> None:
        self.enhancer = None


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

    shape = f"|{enhancer.config.patch}|{max_batch}|{ONNX_OPSET}"
    root = (cache or cache_root()) / "onnx"
    path = root / hashlib.sha256(payload + shape.encode()).hexdigest()[:24] / "enhancer.onnx"
    if path.exists():
        return path, None
    # Export from a CPU copy: the decoder keeps using `enhancer`.
    folded = FoldedEnhancer(copy.deepcopy(enhancer).cpu(), inplace=True)
    weights = folded.folded_weights()
    template_key = hashlib.sha256((base_hash.hex() + shape + weights_layout(weights)).encode()).hexdigest()[:24]
    # The template is the first such video's export, named by a small pointer
    # file (onnx refuses hard-linked external data, and a copy of SD-Turbo's
    # graph would cost gigabytes).
    pointer = root / "templates" / f"{template_key}.txt"
    template = root / pointer.read_text().strip() / "enhancer.onnx" if pointer.exists() else None
    # Write into a private folder and rename it into place, so that a crash
    # or a concurrent decoder never sees a half-written model.
    # (temp_sibling names it by host and pid, and removes the orphans of
    # SIGKILLed exports of this entry.)
    tmp_dir = temp_sibling(path.parent)
    refit = template is not None and template.exists()
    try:
        if refit:
            refit_onnx(template, weights, tmp_dir / "enhancer.onnx")
        else:
            export_onnx(folded, tmp_dir / "enhancer.onnx", max_batch=max_batch, opset=ONNX_OPSET)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)  # a failed or interrupted export leaves nothing behind
        raise
    _publish(tmp_dir, path.parent)
    if not refit:
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer_tmp = pointer.with_suffix(f".tmp{os.getpid()}")
        pointer_tmp.write_text(path.parent.name)
        os.replace(pointer_tmp, pointer)
    return path, folded


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

    def __call__(self, patches: Tensor) -> Tensor:
        outputs = []
        for start in range(0, patches.shape[0], self.max_batch):
            chunk = patches[start:start + self.max_batch].detach().cpu().numpy().astype(np.float32)
            outputs.append(torch.from_numpy(self.session.run(None, {"rendered": chunk})[0]))
        return torch.cat(outputs)

    def close(self) -> None:
        self.session = None


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, enhancer: Enhancer, payload: bytes, base_hash: bytes, *, max_batch: int,
                 fp16: bool = True) -> None:
        from gfix_sdk.export.onnx_export import refit_name_map
        from gfix_sdk.export.onnx_refit import weights_layout
        from gfix_sdk.export.tensorrt_engine import TensorRTEngine, cached_engine, engine_key

        onnx_path, folded = export_for(enhancer, payload, base_hash, max_batch=max_batch)
        if folded is None:
            from gfix_sdk.export.folded import FoldedEnhancer

            folded = FoldedEnhancer(copy.deepcopy(enhancer).cpu(), inplace=True)
        key = engine_key(base_hash, enhancer.config.patch, (1, max_batch, max_batch), fp16,
                         weights_layout(folded.folded_weights()))
        engine_path = cached_engine(cache_root() / "tensorrt", onnx_path, key)
        self.engine = TensorRTEngine(engine_path)
        names = refit_name_map(folded, onnx_path)
        weights = folded.folded_weights()
        self.engine.refit({names[n]: weights[n].numpy() for n in weights})  # this video's weights
        self.device = torch.device("cuda")
        self.max_batch = max_batch

    def __call__(self, patches: Tensor) -> Tensor:
        return torch.cat([self.engine.infer(patches[i:i + self.max_batch])
                          for i in range(0, patches.shape[0], self.max_batch)])

    def close(self) -> None:
        self.engine.close()


def create_backend(kind: str, enhancer: Enhancer, payload: bytes, base_hash: bytes, device: torch.device,
                   *, max_batch: int = 8) -> EnhancerBackend:
    """Build the requested backend (``auto``: the fastest available one)."""
    if kind not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {kind!r}")
    if kind == "auto":
        kind = available_backends(device)[0]
    if kind == "torch":
        return TorchBackend(enhancer, device)
    if kind == "onnxruntime":
        if importlib.util.find_spec("onnxruntime") is None:
            raise ValueError("backend='onnxruntime' needs the onnxruntime package (pip install onnxruntime)")
        path, _ = export_for(enhancer, payload, base_hash, max_batch=max_batch)
        return OnnxRuntimeBackend(path, device, max_batch=max_batch)
    return TensorRTBackend(enhancer, payload, base_hash, max_batch=max_batch)
