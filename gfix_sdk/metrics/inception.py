"""The "FID Inception" network: Inception-v3 pool3 features in plain torch.

FID is defined on the 2048-d pool3 features of the Inception-v3 graph
TensorFlow released as ``inception-2015-12-05``, not on torchvision's
Inception-v3 (other weights, and three pooling layers differ). This module
builds that network without torchvision:

* the Inception-v3 stem and its 11 "Mixed" blocks, every convolution
  bias-free and followed by batch norm (eps 0.001) and ReLU;
* TensorFlow's pooling: the 3x3 average pools inside the 35x35, 17x17 and
  first 8x8 blocks exclude the zero padding from the average
  (``count_include_pad=False``), and the last block (``Mixed_7c``) pools
  its branch with a 3x3 *max* pool;
* input: RGB in ``[0, 1]``, resized to 299x299 with bilinear interpolation
  (``align_corners=False``, no antialiasing) and mapped to ``[-1, 1]``, as
  pytorch-fid does; output: the global average of ``Mixed_7c``, ``(N, 2048)``.

Weights
-------
Module and parameter names follow torchvision's ``Inception3`` (e.g.
``Mixed_6b.branch7x7dbl_3.conv.weight``, ``Conv2d_1a_3x3.bn.running_var``)
with ``fc`` of 1008 classes and no auxiliary head, which is exactly the
key layout of pytorch-fid's weights file
``pt_inception-2015-12-05-6726825d.pth`` (the TensorFlow graph ported to
PyTorch by pytorch-fid's author). That file therefore loads directly:

1. on a machine with internet access, download it once from
   :data:`FID_WEIGHTS_URL` (about 91 MB; pytorch-fid itself caches the same
   file under ``~/.cache/torch/hub/checkpoints/`` the first time it runs, so
   a machine that has used pytorch-fid already has it);
2. copy it anywhere and pass its path (``--fid-weights`` / ``weights=``) or
   set ``$GFIX_FID_WEIGHTS``.

Its SHA-256 starts with ``6726825d`` (the suffix of the file name, as torch
hub checks it); :func:`load_fid_inception` records the digest so that
reports say which file was used. ``.safetensors`` copies with the same keys
are accepted as well (``safetensors.torch.save_file(torch.load(p), out)``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Final

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FID_WEIGHTS_FILE: Final = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL: Final = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_FILE
)
FID_WEIGHTS_SHA256_PREFIX: Final = "6726825d"
FEATURE_DIM: Final = 2048
INPUT_SIZE: Final = 299
NUM_CLASSES: Final = 1008  # the TF graph's classifier (1000 ImageNet classes + 8 unused)


class _ConvBN(nn.Module):
    """Bias-free convolution, batch norm (eps 0.001) and ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], *,
                 stride: int = 1, padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: Tensor) -> Tensor:
    # TensorFlow's SAME average pooling divides by the number of real pixels.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _Block35(nn.Module):
    """35x35 block (``Mixed_5b``..``Mixed_5d``): 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(cin, 64, 1)
        self.branch5x5_1 = _ConvBN(cin, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(cin, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg3(x)),
        ], dim=1)


class _Reduce35(nn.Module):
    """35x35 -> 17x17 grid reduction (``Mixed_6a``)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], dim=1)


class _Block17(nn.Module):
    """17x17 block with factorised 7x7 convolutions (``Mixed_6b``..``Mixed_6e``)."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))  # (kernel, padding) of 1x7 and 7x1
        self.branch1x1 = _ConvBN(cin, 192, 1)
        self.branch7x7_1 = _ConvBN(cin, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, row[0], padding=row[1])
        self.branch7x7_3 = _ConvBN(c7, 192, col[0], padding=col[1])
        self.branch7x7dbl_1 = _ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, col[0], padding=col[1])
        self.branch7x7dbl_3 = _ConvBN(c7, c7, row[0], padding=row[1])
        self.branch7x7dbl_4 = _ConvBN(c7, c7, col[0], padding=col[1])
        self.branch7x7dbl_5 = _ConvBN(c7, 192, row[0], padding=row[1])
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        single = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        return torch.cat([self.branch1x1(x), single, double, self.branch_pool(_avg3(x))], dim=1)


class _Reduce17(nn.Module):
    """17x17 -> 8x8 grid reduction (``Mixed_7a``)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(cin, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        seven = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            seven = layer(seven)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, 3, stride=2)], dim=1)


class _Block8(nn.Module):
    """8x8 block with split 1x3/3x1 branches (``Mixed_7b``, ``Mixed_7c``).

    ``max_pool``: the TF graph's last block pools its branch with a 3x3 max
    pool instead of an average pool.
    """

    def __init__(self, cin: int, *, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _ConvBN(cin, 320, 1)
        self.branch3x3_1 = _ConvBN(cin, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(single), self.branch3x3_2b(single),
            self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
            self.branch_pool(pooled),
        ], dim=1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 as used by FID, returning pool3 features; see the module doc.

    A bare instance has random weights; :func:`load_fid_inception` fills it
    from a weights file. Parameters are frozen and the module is in eval
    mode (batch norm uses its running statistics).
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _Block35(192, 32)
        self.Mixed_5c = _Block35(256, 64)
        self.Mixed_5d = _Block35(288, 64)
        self.Mixed_6a = _Reduce35(288)
        self.Mixed_6b = _Block17(768, 128)
        self.Mixed_6c = _Block17(768, 160)
        self.Mixed_6d = _Block17(768, 160)
        self.Mixed_6e = _Block17(768, 192)
        self.Mixed_7a = _Reduce17(768)
        self.Mixed_7b = _Block8(1280, max_pool=False)
        self.Mixed_7c = _Block8(2048, max_pool=True)
        # Unused for FID; present so that the published file loads with every key.
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: Tensor) -> Tensor:
        """``(N, 3, H, W)`` RGB in ``[0, 1]`` -> ``(N, 2048)`` pool3 features."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W) RGB images, got shape {tuple(images.shape)}")
        x = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2.0 * x - 1.0
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        # weights_only: loading a file never runs code from it.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a weights file"
        raise ValueError(f"{path} is not a readable torch weights file: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return state


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_fid_inception(path: str | os.PathLike[str]) -> FIDInceptionV3:
    """Build :class:`FIDInceptionV3` from a local weights file (never downloads).

    Args:
        path: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` or any
            file with the same keys (``.pth``/``.pt`` via ``torch.load`` with
            ``weights_only=True``, or ``.safetensors``). The ``fc`` classifier
            may be absent; every feature layer must be present.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a state dict of this network (the message
            lists missing or unexpected keys, or the first shape mismatch).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"FID Inception weights file not found: {file}")
    state = _read_state_dict(file)
    model = FIDInceptionV3()
    expected = model.state_dict()
    unexpected = sorted(k for k in state if k not in expected)
    # Batch-norm counters are bookkeeping, and fc is not used for features.
    missing = sorted(
        k for k in expected
        if k not in state and not k.endswith("num_batches_tracked") and not k.startswith("fc.")
    )
    if unexpected or missing:
        raise ValueError(
            f"{file} does not have the FID Inception key layout "
            f"(missing {len(missing)}: {missing[:3]}, unexpected {len(unexpected)}: {unexpected[:3]}); "
            f"expected pytorch-fid's {FID_WEIGHTS_FILE}"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ValueError(
                f"{file}: {key} has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)}"
            )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=False)
    return model.eval()
