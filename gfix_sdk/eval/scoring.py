"""Scoring decoded videos: which metrics a report has, and computing them.

PSNR (RGB, mean of per-frame values) and MS-SSIM are always computed.
LPIPS, FID and VMAF are loaded once per evaluation (:class:`Scorers`); one
that cannot be loaded is omitted for the whole report with its reason. Per
video, :class:`VideoScorer` prepares what depends on the reference only
(FID's reference statistics, VMAF's reference y4m) once for all rate points.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from gfix_sdk.metrics.result import MetricResult, MetricUnavailable


@dataclass(frozen=True)
class MetricSpec:
    """A metric column of the report."""

    key: str
    """Column name in points.csv / points.json."""
    label: str
    """Name in tables and plots."""
    higher_is_better: bool


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("psnr", "PSNR (dB)", True),
    MetricSpec("ms_ssim", "MS-SSIM", True),
    MetricSpec("lpips", "LPIPS", False),
    MetricSpec("fid", "FID", False),
    MetricSpec("vmaf", "VMAF", True),
)
METRIC_KEYS = tuple(m.key for m in METRICS)
_BY_KEY = {m.key: m for m in METRICS}


def metric_spec(key: str) -> MetricSpec:
    """The :class:`MetricSpec` of ``key``."""
    return _BY_KEY[key]


class Scorers:
    """The metrics of one evaluation, with the optional ones loaded once.

    Args:
        lpips: LPIPS weights file; None reads ``$GFIX_LPIPS`` (omitted if unset).
        fid_weights: FID Inception weights; None reads ``$GFIX_FID_WEIGHTS``.
        vmaf: False leaves VMAF out.
        device: where LPIPS and FID run (``"cpu"`` or ``"cuda"``).

    Raises:
        ValueError: a weights file that exists but is of the wrong kind
            (better to stop before hours of encoding than to omit silently).
    """

    def __init__(self, *, lpips: str | os.PathLike[str] | None = None,
                 fid_weights: str | os.PathLike[str] | None = None, vmaf: bool = True,
                 device: str = "cpu") -> None:
        from gfix_sdk.metrics.fid import SequenceFID
        from gfix_sdk.metrics.lpips import SequenceLPIPS
        from gfix_sdk.metrics.vmaf import SequenceVMAF

        self.omitted: dict[str, str] = {}
        """Metric key -> why it is left out of the whole report."""
        self.details: dict[str, str] = {
            "psnr": "RGB PSNR over all three channels, mean of the per-frame values",
            "ms_ssim": "MS-SSIM on RGB (pytorch-msssim; narrower window below 161 px)",
        }
        """Metric key -> what exactly was used (weights file, model)."""
        self.lpips: SequenceLPIPS | None = None
        self.fid: SequenceFID | None = None
        self.vmaf: SequenceVMAF | None = None
        try:
            self.lpips = SequenceLPIPS.load(lpips, device=device)
            self.details["lpips"] = f"LPIPS v0.1 ({self.lpips.net}), weights {self.lpips.weights}"
        except MetricUnavailable as exc:
            self.omitted["lpips"] = str(exc)
        try:
            self.fid = SequenceFID.load(fid_weights, device=device)
            self.details["fid"] = (f"FID Inception pool3, weights {self.fid.weights} (sha256 "
                                   f"{(self.fid.sha256 or '')[:12]}...); biased estimate on few frames")
        except MetricUnavailable as exc:
            self.omitted["fid"] = str(exc)
        if not vmaf:
            self.omitted["vmaf"] = "VMAF omitted: disabled (--no-vmaf)"
        else:
            try:
                self.vmaf = SequenceVMAF.load()
                self.details["vmaf"] = f"libvmaf {self.vmaf.model} via {self.vmaf.version or self.vmaf.ffmpeg}"
            except MetricUnavailable as exc:
                self.omitted["vmaf"] = str(exc)

    @property
    def available(self) -> tuple[str, ...]:
        """Keys of the metrics the report has, in :data:`METRICS` order."""
        return tuple(k for k in METRIC_KEYS if k not in self.omitted)

    def for_video(self, reference: np.ndarray, fps: float) -> VideoScorer:
        """A scorer for decoded versions of ``reference`` (use it as a context manager)."""
        return VideoScorer(self, reference, fps)


class VideoScorer:
    """Scores decoded versions of one reference video; see the module doc."""

    def __init__(self, scorers: Scorers, reference: np.ndarray, fps: float) -> None:
        self._scorers = scorers
        self.reference = reference
        self.fps = fps
        self._fid_stats = None
        self._vmaf_ref = None
        if scorers.fid is not None and len(reference) >= 2:
            self._fid_stats = scorers.fid.stats(reference)
        if scorers.vmaf is not None:
            self._vmaf_ref = scorers.vmaf.reference(reference, fps)

    def score(self, decoded: np.ndarray) -> tuple[dict[str, float | None], dict[str, str]]:
        """Every available metric of ``decoded``.

        Returns:
            ``(values, problems)``: ``values`` maps each available metric to
            its score or None; ``problems`` says why a metric is None for
            this video (too few frames, frames too small, ffmpeg failed).

        Raises:
            ValueError: ``decoded`` does not match the reference's shape.
        """
        if decoded.shape != self.reference.shape:
            raise ValueError(f"decoded frames have shape {decoded.shape}, the reference {self.reference.shape}")
        values: dict[str, float | None] = {}
        problems: dict[str, str] = {}
        values["psnr"], values["ms_ssim"] = self._fidelity(decoded, problems)
        s = self._scorers
        if s.lpips is not None:
            lpips = s.lpips
            self._take(values, problems, "lpips", lambda: lpips(self.reference, decoded))
        if s.fid is not None:
            fid, stats = s.fid, self._fid_stats
            if stats is None:
                values["fid"], problems["fid"] = None, "FID needs at least 2 frames"
            else:
                self._take(values, problems, "fid", lambda: fid(stats, decoded))
        if s.vmaf is not None and self._vmaf_ref is not None:
            vmaf, ref = s.vmaf, self._vmaf_ref
            self._take(values, problems, "vmaf", lambda: vmaf(ref, decoded))
        return values, problems

    def _fidelity(self, decoded: np.ndarray, problems: dict[str, str]) -> tuple[float, float | None]:
        """Mean PSNR and MS-SSIM (None, with the reason, for frames too small for MS-SSIM)."""
        from gfix_sdk.metrics import psnr, sequence_metrics
        from gfix_sdk.metrics.msssim import ms_ssim_win_size

        try:
            ms_ssim_win_size(*decoded.shape[1:3])
        except ValueError as exc:
            problems["ms_ssim"] = str(exc)
            return float(np.mean([psnr(r, d) for r, d in zip(self.reference, decoded)])), None
        result = sequence_metrics(self.reference, decoded)
        return result["mean_psnr"], result["mean_ms_ssim"]

    @staticmethod
    def _take(values: dict[str, float | None], problems: dict[str, str], key: str,
              compute: Callable[[], MetricResult]) -> None:
        try:
            result = compute()
        except RuntimeError as exc:  # an external tool failed on this input; keep the other metrics
            values[key], problems[key] = None, str(exc)
            return
        values[key] = result.value
        if result.reason:
            problems[key] = result.reason

    def close(self) -> None:
        """Delete temporary files. Idempotent."""
        if self._vmaf_ref is not None:
            self._vmaf_ref.close()
            self._vmaf_ref = None

    def __enter__(self) -> VideoScorer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
