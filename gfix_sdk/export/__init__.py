"""Deployment: fold the per-video adapter into the base, export ONNX, build TensorRT engines."""

from gfix_sdk.export.folded import FoldedEnhancer
from gfix_sdk.export.onnx_export import OnnxExport, export_onnx, initializer_names, refit_name_map
from gfix_sdk.export.onnx_refit import refit_onnx, weights_layout
from gfix_sdk.export.recipes import Recipe, available_recipes, load_recipe

__all__ = ["FoldedEnhancer", "OnnxExport", "export_onnx", "initializer_names", "refit_name_map", "refit_onnx",
           "weights_layout", "Recipe", "available_recipes", "load_recipe"]
