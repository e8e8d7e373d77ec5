"""Where gfix_sdk keeps files between runs: the export cache and local weights.

Light on purpose (no torch): every stage, the lean runtime included, imports it.

* :func:`cache_root` — exports, engines, training pairs, per-base mLoRA
  factors (``factors/``) and base-hash records (``bases/``) (``$GFIX_CACHE``,
  default ``~/.cache/gfix``); safe to delete (rebuilt on the next use).
* :func:`lpips_weights` — the LPIPS weights file of a backbone that the set-up
  converted once (``python -m gfix_sdk.perceptual.convert --net vgg --install``).
  Looked up, in order: ``$GFIX_LPIPS_VGG`` / ``$GFIX_LPIPS_ALEX``, then
  ``<python prefix>/share/gfix/`` (inside the virtual environment the set-up
  made), then ``~/.local/share/gfix/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

LPIPS_NETS = ("alex", "vgg")


def cache_root() -> Path:
    """``$GFIX_CACHE``, default ``~/.cache/gfix``."""
    return Path(os.environ.get("GFIX_CACHE", Path.home() / ".cache" / "gfix"))


def weights_dirs() -> list[Path]:
    """Folders searched for local weights files, in order."""
    return [Path(sys.prefix) / "share" / "gfix", Path.home() / ".local" / "share" / "gfix"]


def lpips_file_name(net: str) -> str:
    if net not in LPIPS_NETS:
        raise ValueError(f"unknown LPIPS backbone {net!r}; expected one of {LPIPS_NETS}")
    return f"lpips_{net}.pt"


def lpips_weights(net: str) -> Path | None:
    """The installed LPIPS weights file of ``net`` ("alex" or "vgg"), or None."""
    name = lpips_file_name(net)
    explicit = os.environ.get(f"GFIX_LPIPS_{net.upper()}")
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    for folder in weights_dirs():
        if (folder / name).is_file():
            return folder / name
    return None


def lpips_install_path(net: str) -> Path:
    """Where ``convert --install`` writes ``net``'s weights: the first writable weights folder."""
    name = lpips_file_name(net)
    for folder in weights_dirs():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder / name
    raise PermissionError(f"none of {[str(d) for d in weights_dirs()]} is writable; set GFIX_LPIPS_{net.upper()}")


__all__ = ["cache_root", "lpips_weights", "lpips_install_path", "weights_dirs", "LPIPS_NETS"]
