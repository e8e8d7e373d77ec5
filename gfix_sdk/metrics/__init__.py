"""Quality metrics for decoded video, and BD-rate between rate-quality curves.

Per frame: :func:`psnr`, :func:`mse` and :func:`ms_ssim` compare two
``(H, W, 3)`` RGB frames given either as ``uint8`` numpy arrays (range 255)
or as floating torch tensors in ``[0, 1]`` (range 1). Per sequence:
:func:`sequence_metrics` streams frame pairs and averages. Between codecs:
:func:`bd_rate` (Bjøntegaard delta rate, in percent).
"""

from gfix_sdk.metrics._frames import Frame
from gfix_sdk.metrics.bdrate import bd_rate
from gfix_sdk.metrics.msssim import ms_ssim, ms_ssim_win_size
from gfix_sdk.metrics.pixel import mse, psnr, psnr_from_mse
from gfix_sdk.metrics.sequence import SequenceMetrics, sequence_metrics

__all__ = [
    "Frame",
    "SequenceMetrics",
    "bd_rate",
    "ms_ssim",
    "ms_ssim_win_size",
    "mse",
    "psnr",
    "psnr_from_mse",
    "sequence_metrics",
]
