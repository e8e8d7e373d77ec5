"""Perceptual similarity: LPIPS (AlexNet or VGG16 backbone) in plain torch.

:class:`LPIPS` takes ``(B, 3, H, W)`` images in [0, 1] and returns ``(B,)``
distances; :func:`load_lpips` builds it from one local weights file, which
``python -m gfix_sdk.perceptual.convert`` creates (nothing is downloaded at
run time).
"""

from gfix_sdk.perceptual.lpips import LPIPS, load_lpips

__all__ = ["LPIPS", "load_lpips"]
