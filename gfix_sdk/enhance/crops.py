"""Random aligned crops of (rendered, original) frame pairs, for training."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class CropSampler:
    """Random aligned ``crop x crop`` crops of ``(N, H, W, 3)`` uint8 pairs.

    The crop is shrunk to the frames' shorter side (rounded down to a multiple
    of 8) when they are smaller; ``flips`` adds random horizontal flips."""

    def __init__(self, rendered: np.ndarray, original: np.ndarray, crop: int, seed: int, *,
                 flips: bool = False) -> None:
        if rendered.shape != original.shape or rendered.ndim != 4:
            raise ValueError("rendered and original must both be (N, H, W, 3) and of one shape")
        _, h, w, _ = rendered.shape
        self.crop = min(crop, (min(h, w) // 8) * 8)
        if self.crop < 8:
            raise ValueError(f"frames of {w}x{h} are too small to train on")
        self.rendered, self.original, self.flips = rendered, original, flips
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int) -> tuple[Tensor, Tensor]:
        """``(rendered, original)`` crops, ``(batch, 3, crop, crop)`` float32 in [0, 1]."""
        n, h, w, _ = self.rendered.shape
        c = self.crop
        idx = self.rng.integers(0, n, batch)
        ys, xs = self.rng.integers(0, h - c + 1, batch), self.rng.integers(0, w - c + 1, batch)
        flip = self.rng.random(batch) < 0.5 if self.flips else np.zeros(batch, dtype=bool)
        pairs = []
        for array in (self.rendered, self.original):
            crops = np.stack([array[i, y:y + c, x:x + c, ::-1] if f else array[i, y:y + c, x:x + c]
                              for i, y, x, f in zip(idx, ys, xs, flip)])
            pairs.append(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0)
        return pairs[0], pairs[1]
