"""Reading and writing the single LPIPS weights file (backbone + linear heads).

The file is a flat ``name -> tensor`` state dict of :class:`~gfix_sdk.perceptual.LPIPS`:

* ``features.{i}.weight`` / ``features.{i}.bias``: backbone convolutions, at the
  indices of the classic ``alexnet().features`` / ``vgg16().features`` blocks,
  weights in torch's ``(out, in, kh, kw)`` layout;
* ``heads.{k}.weight``: the five LPIPS v0.1 linear heads, shape ``(1, C_k, 1, 1)``.

Two containers are accepted, chosen by suffix: ``.safetensors`` (needs the
``safetensors`` package; the backbone name is also stored in its metadata) and
anything else as a ``torch.save`` file, read back with ``weights_only=True`` so
that loading a file never runs code from it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

FORMAT = "gfix-lpips/1"


def _is_safetensors(path: Path) -> bool:
    return path.suffix.lower() == ".safetensors"


def _safetensors_torch():  # noqa: ANN202 - returns a module
    try:
        import safetensors.torch as st
    except ImportError as exc:
        raise ImportError(
            "reading or writing .safetensors LPIPS weights needs the 'safetensors' package "
            "(pip install safetensors); or use a .pt file instead"
        ) from exc
    return st


def save_weights(state_dict: dict[str, torch.Tensor], path: str | os.PathLike[str], net: str) -> Path:
    """Write ``state_dict`` (CPU, contiguous copies) to ``path``; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    if _is_safetensors(out):
        _safetensors_torch().save_file(tensors, str(out), metadata={"format": FORMAT, "net": net})
    else:
        torch.save(tensors, out)
    return out


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], str | None]:
    """Read a weights file; returns the state dict and the backbone name it records (or None)."""
    src = Path(path)
    if _is_safetensors(src):
        st = _safetensors_torch()
        from safetensors import safe_open

        with safe_open(str(src), framework="pt") as handle:
            meta = handle.metadata() or {}
        return st.load_file(str(src), device="cpu"), meta.get("net")
    state = torch.load(src, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{src} is not an LPIPS weights file (expected a name -> tensor state dict)")
    return state, None
