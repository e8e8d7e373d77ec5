"""The native build: what it contains, and that the CUDA sources compile."""

import shutil
import subprocess
from pathlib import Path

import pytest

import gfix_sdk

CSRC = Path(__file__).resolve().parents[1] / "csrc"


def test_cpu_module_is_built():
    config = gfix_sdk.build_config()
    assert config["cpu"] is not None, config["cpu_error"]
    assert config["cpu"]["tile_size"] == 16


def test_cuda_module_built_when_nvcc_present():
    # CMake builds gfix_sdk._C_cuda whenever it finds nvcc (GFIX_CUDA=AUTO).
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not installed")
    config = gfix_sdk.build_config()
    assert config["cuda_built"], config["cuda_error"]
    # The devices the CUDA module sees, counted independently.
    import glob
    import os

    import torch

    if torch.version.cuda is not None:
        expected = torch.cuda.device_count()
    elif not glob.glob("/dev/nvidia[0-9]*"):
        expected = 0  # no driver: the module loads and sees none
    elif shutil.which("nvidia-smi") and "CUDA_VISIBLE_DEVICES" not in os.environ:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
        expected = sum(line.startswith("GPU ") for line in listed.splitlines())
    else:
        pytest.skip("a driver but no way to count its devices independently")
    assert config["cuda_devices"] == expected


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_sources_compile(tmp_path):
    """Compile-only check of the CUDA kernels for one architecture, with warnings as errors."""
    result = subprocess.run(
        ["nvcc", "-std=c++17", "-O3", "--use_fast_math", "-arch=sm_80", f"-I{CSRC}",
         "-Werror", "all-warnings", "-c", str(CSRC / "raster_cuda.cu"), "-o", str(tmp_path / "raster_cuda.o")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "raster_cuda.o").stat().st_size > 0
