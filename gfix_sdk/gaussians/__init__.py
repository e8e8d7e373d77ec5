"""Gaussian frames: model, image-guided initialisation, fitting."""

from gfix_sdk.gaussians.fit import FitConfig, FitResult, fit_frame, psnr
from gfix_sdk.gaussians.init import init_from_image
from gfix_sdk.gaussians.model import GaussianFrame

__all__ = ["GaussianFrame", "FitConfig", "FitResult", "fit_frame", "init_from_image", "psnr"]
