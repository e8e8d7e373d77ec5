"""ONNX export of a folded enhancer.

One graph holds the whole single-step enhancer (VAE encoder -> U-Net ->
closed-form x0 -> VAE decoder with skips); input ``rendered`` and output
``enhanced`` are ``(batch, 3, height, width)`` float32 in [0, 1], with the
batch bounded to ``[1, max_batch]`` and height and width multiples of 8 up to
the patch (the tiles :mod:`gfix_sdk.enhance.tiling` cuts: a frame within the
patch bound goes through in one pass at its own size).

The exporter's own graph optimiser is *off*: it would fold ``Transpose(W)``
of every Linear weight into a new anonymous initializer, and TensorRT's refit
needs the weights under their own names (ONNX Runtime and TensorRT constant-
fold at load time anyway, so inference speed is unaffected). Graphs over
2 GB are written with external data, as ONNX's protobuf limit requires.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from gfix_sdk.export.folded import FoldedEnhancer

INPUT_NAME = "rendered"
OUTPUT_NAME = "enhanced"
PROTOBUF_LIMIT = 2 * 1024**3


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote."""

    path: Path  #: the .onnx file (external data, if any, beside it)
    patch: int  #: largest tile side in pixels (height and width are dynamic multiples of 8 up to it)
    max_batch: int  #: largest batch the graph accepts
    opset: int
    num_bytes: int  #: model file plus external data
    seconds: float  #: export + checks


def export_onnx(
    model: FoldedEnhancer,
    path: str | os.PathLike[str],
    *,
    max_batch: int = 8,
    opset: int = 18,
) -> OnnxExport:
    """Export ``model`` to ``path`` and validate it (``onnx.checker``, shape inference).

    The graph is float32; half precision is chosen when a TensorRT engine is
    built from it (``fp16=True`` there), layer by layer."""
    import onnx

    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    patch = model.patch
    # Height and width differ in the example, so that the exporter keeps them
    # as two symbols (equal example sizes would be traced as one).
    example = torch.rand(min(2, max_batch), 3, patch, patch - 8 if patch > 8 else patch)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    rows = torch.export.Dim("rows8", min=1, max=patch // 8)
    cols = torch.export.Dim("cols8", min=1, max=patch // 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter about optional torchvision ops
        torch.onnx.export(model, (example,), str(out), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=opset, dynamo=True, optimize=False, external_data=True,
                          dynamic_shapes=({0: batch, 2: 8 * rows, 3: 8 * cols},))
    # Path-based checks also work for models with external data (> 2 GB).
    onnx.checker.check_model(str(out), full_check=False)
    onnx.shape_inference.infer_shapes_path(str(out), str(out.with_suffix(".inferred.onnx")))
    out.with_suffix(".inferred.onnx").unlink()
    size = sum(p.stat().st_size for p in out.parent.iterdir() if p.name.startswith(out.name))
    return OnnxExport(path=out, patch=model.patch, max_batch=max_batch, opset=opset, num_bytes=size,
                      seconds=time.perf_counter() - start)


def initializer_names(path: str | os.PathLike[str]) -> set[str]:
    """Names of a model's initializers (without loading external data)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {init.name for init in model.graph.initializer}


def refit_name_map(model: FoldedEnhancer, path: str | os.PathLike[str]) -> dict[str, str]:
    """Map every folded (video-specific) weight to its initializer name in the
    exported graph, i.e. the name a TensorRT refit sets. Raises ``ValueError``
    naming any weight the graph does not expose under its own name."""
    names = initializer_names(path)
    folded = model.folded_weights()
    missing = sorted(n for n in folded if n not in names)
    if missing:
        raise ValueError(f"{len(missing)} folded weights are not initializers of {path}: {missing[:5]}")
    return {name: name for name in folded}
