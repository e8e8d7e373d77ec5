"""Quality metrics for decoded video, and BD-rate between rate-quality curves.

Per frame: :func:`psnr`, :func:`mse` and :func:`ms_ssim` compare two
``(H, W, 3)`` RGB frames given either as ``uint8`` numpy arrays (range 255)
or as floating torch tensors in ``[0, 1]`` (range 1). Per sequence:
:func:`sequence_metrics` streams frame pairs and averages. Between codecs:
:func:`bd_rate` (Bjøntegaard delta rate, in percent).

Optional sequence metrics, omitted with a reason (``MetricResult.value`` is
None) when what they need is missing: :func:`sequence_lpips` (weights from
``gfix_sdk.perceptual.convert``), :func:`sequence_fid` (pytorch-fid's
Inception weights file) and :func:`sequence_vmaf` (ffmpeg with libvmaf).
Their classes (:class:`SequenceLPIPS`, :class:`SequenceFID`,
:class:`SequenceVMAF`) keep the model or binary for many calls.
"""

from gfix_sdk.metrics._frames import Frame
from gfix_sdk.metrics.bdrate import bd_rate
from gfix_sdk.metrics.fid import SequenceFID, frechet_distance, sequence_fid
from gfix_sdk.metrics.lpips import SequenceLPIPS, sequence_lpips
from gfix_sdk.metrics.msssim import ms_ssim, ms_ssim_win_size
from gfix_sdk.metrics.pixel import mse, psnr, psnr_from_mse
from gfix_sdk.metrics.result import MetricResult, MetricUnavailable
from gfix_sdk.metrics.sequence import SequenceMetrics, sequence_metrics
from gfix_sdk.metrics.vmaf import SequenceVMAF, sequence_vmaf

__all__ = [
    "Frame",
    "MetricResult",
    "MetricUnavailable",
    "SequenceFID",
    "SequenceLPIPS",
    "SequenceMetrics",
    "SequenceVMAF",
    "bd_rate",
    "frechet_distance",
    "ms_ssim",
    "ms_ssim_win_size",
    "mse",
    "psnr",
    "psnr_from_mse",
    "sequence_fid",
    "sequence_lpips",
    "sequence_metrics",
    "sequence_vmaf",
]
