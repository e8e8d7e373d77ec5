"""Fréchet Inception Distance (FID) between the frames of two sequences.

FID (Heusel et al., 2017) fits a Gaussian to the 2048-d Inception-v3 pool3
features of each image set and reports the Fréchet distance between them::

    FID = |mu_r - mu_d|^2 + Tr(S_r + S_d - 2 (S_r S_d)^(1/2))

Here the two sets are the reference frames and the decoded frames of one
video; every frame is one sample (resized to 299x299 by the network, see
:mod:`gfix_sdk.metrics.inception`). Lower is better; identical sequences give
0 up to round-off. Features are extracted in float32 and the statistics and
the distance computed in float64, with :func:`scipy.linalg.sqrtm`; with no
more frames than feature dimensions the square root is taken of an
``N x N`` matrix with the same non-zero spectrum (:func:`fid_from_stats`),
which is exact and takes milliseconds instead of seconds.

**A biased estimate on short clips.** FID's estimator is biased upward by a
term that shrinks roughly as ``1/N`` in the number of samples and grows with
the feature dimension; with a few hundred frames or fewer (96 per UVG
sequence in the GFix protocol) the 2048x2048 covariances have rank below
``N`` and the bias is large. Values computed here are therefore only
comparable with each other at the same number of frames (the same videos and
frame count), never with FIDs over 50,000 images in the literature.

Weights: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``, passed as
``weights=`` or through ``$GFIX_FID_WEIGHTS``; how to obtain it is in
:mod:`gfix_sdk.metrics.inception`. Without it the metric is omitted
(``value=None`` and a reason), never downloaded.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gfix_sdk.metrics._sequences import Frames, check_batch_size, iter_frames, iter_pairs
from gfix_sdk.metrics.inception import (
    FEATURE_DIM,
    FID_WEIGHTS_FILE,
    FID_WEIGHTS_URL,
    FIDInceptionV3,
    file_sha256,
    load_fid_inception,
)
from gfix_sdk.metrics.result import MetricResult, MetricUnavailable, resolve_weights_file

ENV_VAR = "GFIX_FID_WEIGHTS"
"""Environment variable naming the FID Inception weights file when no path is given."""
NAME = "fid"
MIN_FRAMES = 2  # a covariance needs two samples

_HOW_TO = (
    f"download pytorch-fid's Inception weights once on a machine with internet access,\n"
    f"    curl -L -o {FID_WEIGHTS_FILE} {FID_WEIGHTS_URL}\n"
    "(or copy the file pytorch-fid cached in ~/.cache/torch/hub/checkpoints/); it loads as is. "
    f"Then pass its path (--fid-weights / weights=) or set ${ENV_VAR}"
)


@dataclass(frozen=True)
class FeatureStats:
    """Mean and covariance of one set of Inception features (float64)."""

    mean: np.ndarray
    """``(2048,)`` feature mean."""
    cov: np.ndarray
    """``(2048, 2048)`` unbiased feature covariance."""
    count: int
    """Number of samples (frames)."""
    centered: np.ndarray | None = None
    """``(N, D)`` features minus the mean, over ``sqrt(N - 1)`` (so ``cov = centered.T @ centered``);
    kept when ``N <= D``, where it gives the exact low-rank route of :func:`fid_from_stats`."""


def feature_stats(features: np.ndarray) -> FeatureStats:
    """Mean and unbiased covariance of ``(N, D)`` features, in float64.

    Raises:
        ValueError: not 2-D, fewer than 2 samples, or non-finite values.
    """
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {feats.shape}")
    if feats.shape[0] < MIN_FRAMES:
        raise ValueError(f"FID needs at least {MIN_FRAMES} samples for a covariance, got {feats.shape[0]}")
    if not np.all(np.isfinite(feats)):
        raise ValueError("features contain non-finite values")
    count, dim = feats.shape
    mean = feats.mean(axis=0)
    centered = (feats - mean) / np.sqrt(count - 1)
    return FeatureStats(mean=mean, cov=centered.T @ centered, count=count,
                        centered=centered if count <= dim else None)


def frechet_distance(
    mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray, *, eps: float = 1e-6
) -> float:
    """Fréchet distance between ``N(mean1, cov1)`` and ``N(mean2, cov2)``.

    ``|m1 - m2|^2 + Tr(C1) + Tr(C2) - 2 Tr((C1 C2)^(1/2))`` in float64, with
    the matrix square root from :func:`scipy.linalg.sqrtm`. When the product
    is singular enough for ``sqrtm`` to return non-finite values (common
    with fewer samples than dimensions), ``eps`` is added to both diagonals
    and the root recomputed. Round-off leaves a tiny imaginary part, which is
    dropped; a large one means the inputs are not covariances.

    Raises:
        ValueError: shapes that do not match, non-finite inputs, or a
            square root with a significant imaginary part.
    """
    from scipy import linalg

    m1, m2 = np.atleast_1d(np.asarray(mean1, np.float64)), np.atleast_1d(np.asarray(mean2, np.float64))
    c1, c2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    dim = m1.shape[0]
    if m1.shape != (dim,) or m2.shape != (dim,) or c1.shape != (dim, dim) or c2.shape != (dim, dim):
        raise ValueError(
            f"means must be (D,) and covariances (D, D) for one D, got {m1.shape}, {c1.shape}, "
            f"{m2.shape}, {c2.shape}"
        )
    for name, array in (("mean1", m1), ("cov1", c1), ("mean2", m2), ("cov2", c2)):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} contains non-finite values")

    root = linalg.sqrtm(c1 @ c2)
    if not np.all(np.isfinite(root)):
        offset = eps * np.eye(dim)
        root = linalg.sqrtm((c1 + offset) @ (c2 + offset))
    root = _checked_root(root)
    diff = m1 - m2
    value = float(diff @ diff + np.trace(c1) + np.trace(c2) - 2.0 * np.trace(root))
    # Exact identity gives 0; round-off can leave a tiny negative number.
    return max(value, 0.0)


def _checked_root(root: np.ndarray) -> np.ndarray:
    """The real part of a matrix square root; ValueError if the imaginary part is significant."""
    if np.iscomplexobj(root):
        # Relative to the matrix's scale, so that the check does not depend on units.
        scale = max(1.0, float(np.max(np.abs(root))))
        imag = float(np.max(np.abs(root.imag)))
        if imag > 1e-3 * scale:
            raise ValueError(f"the covariance product's square root has an imaginary part of {imag:g}")
        root = root.real
    return root


def fid_from_stats(first: FeatureStats, second: FeatureStats) -> float:
    """Fréchet distance between two feature sets' Gaussians.

    Equal to :func:`frechet_distance` of their means and covariances. When
    a set has no more samples than dimensions (96 frames vs 2048 features),
    ``Tr((C1 C2)^(1/2))`` is computed from the ``N x N`` matrix
    ``X1 C2 X1^T`` (``X1`` the centred samples, ``C1 = X1^T X1``), which has
    the same non-zero eigenvalues as ``C1 C2`` (``eig(AB) = eig(BA)``) but is
    symmetric positive semi-definite: the same value in exact arithmetic,
    without the ``D x D`` square root of a singular product (slow, and the
    least accurate step of the usual computation).
    """
    from scipy import linalg

    low, other = (first, second) if first.centered is not None else (second, first)
    if low.centered is None:
        return frechet_distance(first.mean, first.cov, second.mean, second.cov)
    small = low.centered @ other.cov @ low.centered.T
    tr_root = float(np.trace(_checked_root(linalg.sqrtm(small))))
    diff = first.mean - second.mean
    value = float(diff @ diff + np.trace(first.cov) + np.trace(second.cov) - 2.0 * tr_root)
    return max(value, 0.0)


def resolve_fid_weights(weights: str | os.PathLike[str] | None = None) -> Path:
    """The FID weights file to use: ``weights``, else ``$GFIX_FID_WEIGHTS``.

    Raises:
        MetricUnavailable: neither is set, or the file does not exist; the
            message says where to get it.
    """
    return resolve_weights_file(weights, ENV_VAR, "FID Inception weights file", _HOW_TO)


class SequenceFID:
    """FID between frame sets with one loaded network; see the module doc.

    Build it with :meth:`load` (or around any :class:`FIDInceptionV3`, e.g.
    with random weights in tests). Reference statistics can be computed
    once with :meth:`stats` and passed instead of reference frames, so that
    many decoded versions of one video are scored against them.

    Args:
        model: the feature network.
        device: where features are computed (``"cpu"`` or ``"cuda"``).
        batch_size: frames per forward pass.
    """

    name = NAME
    higher_is_better = False

    def __init__(self, model: FIDInceptionV3, *, device: str | torch.device = "cpu", batch_size: int = 16) -> None:
        self.device = torch.device(device)
        self.batch_size = check_batch_size(batch_size)
        self.model = model.to(self.device).eval()
        self.weights: Path | None = None
        """The weights file (set by :meth:`load`)."""
        self.sha256: str | None = None
        """SHA-256 of the weights file (set by :meth:`load`)."""

    @classmethod
    def load(
        cls,
        weights: str | os.PathLike[str] | None = None,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 16,
    ) -> SequenceFID:
        """Load the network from ``weights`` (or ``$GFIX_FID_WEIGHTS``).

        Raises:
            MetricUnavailable: no weights file (the message says where to get it).
            ValueError: the file exists but is not FID Inception weights.
        """
        path = resolve_fid_weights(weights)
        scorer = cls(load_fid_inception(path), device=device, batch_size=batch_size)
        scorer.weights, scorer.sha256 = path, file_sha256(path)
        return scorer

    def features(self, frames: Frames) -> np.ndarray:
        """``(T, 2048)`` float32 pool3 features of ``uint8`` RGB frames."""
        out: list[np.ndarray] = []
        batch: list[np.ndarray] = []
        for frame in iter_frames(frames, "frames"):
            batch.append(frame)
            if len(batch) == self.batch_size:
                out.append(self._run(batch))
                batch = []
        if batch:
            out.append(self._run(batch))
        if not out:
            return np.empty((0, FEATURE_DIM), np.float32)
        return np.concatenate(out)

    def _run(self, frames: list[np.ndarray]) -> np.ndarray:
        images = torch.from_numpy(np.ascontiguousarray(np.stack(frames))).to(self.device)
        images = images.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        with torch.no_grad():
            return self.model(images).cpu().numpy()

    def stats(self, frames: Frames) -> FeatureStats:
        """Feature statistics of a frame set (e.g. a video's reference frames)."""
        return feature_stats(self.features(frames))

    def __call__(self, reference: Frames | FeatureStats, decoded: Frames) -> MetricResult:
        """FID of ``decoded`` against ``reference`` (frames or precomputed stats).

        Fewer than two frames gives an omitted result (no covariance).

        Raises:
            ValueError: invalid or mismatched frames.
        """
        if isinstance(reference, FeatureStats):
            dec_feats = self.features(decoded)
            if dec_feats.shape[0] != reference.count:
                raise ValueError(
                    f"the decoded sequence has {dec_feats.shape[0]} frames but the reference "
                    f"statistics were computed on {reference.count}"
                )
            ref_stats = reference
        else:
            refs: list[np.ndarray] = []
            decs: list[np.ndarray] = []
            for ref, dec in iter_pairs(reference, decoded):  # checks lengths and sizes
                refs.append(ref)
                decs.append(dec)
            if len(refs) < MIN_FRAMES:
                return MetricResult.omitted(NAME, f"FID omitted: needs at least {MIN_FRAMES} frames, got {len(refs)}")
            ref_stats = self.stats(refs)
            dec_feats = self.features(decs)
        if dec_feats.shape[0] < MIN_FRAMES:
            return MetricResult.omitted(NAME, f"FID omitted: needs at least {MIN_FRAMES} frames")
        value = fid_from_stats(ref_stats, feature_stats(dec_feats))
        if not math.isfinite(value):
            return MetricResult.omitted(NAME, f"FID omitted: the distance is not finite ({value})")
        return MetricResult(name=NAME, value=value)


def sequence_fid(
    reference: Frames,
    decoded: Frames,
    *,
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
) -> MetricResult:
    """FID between the frames of two ``uint8`` RGB sequences (lower is better).

    A biased estimate on short clips: see the module doc. Loads the network
    on every call; use :class:`SequenceFID` to score many sequences.

    Returns:
        The score, or, when no weights file is present, ``value=None`` with a
        reason saying where to get the file (never an exception, never a
        download).

    Raises:
        ValueError: invalid frames, or a weights file of another layout.
    """
    try:
        scorer = SequenceFID.load(weights, device=device, batch_size=batch_size)
    except MetricUnavailable as exc:
        return MetricResult.omitted(NAME, str(exc))
    return scorer(reference, decoded)


__all__ = [
    "ENV_VAR",
    "FeatureStats",
    "SequenceFID",
    "feature_stats",
    "fid_from_stats",
    "frechet_distance",
    "resolve_fid_weights",
    "sequence_fid",
]
