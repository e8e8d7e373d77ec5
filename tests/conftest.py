import pytest
import torch

import gfix_sdk


def _cuda_ready() -> bool:
    return torch.cuda.is_available() and gfix_sdk.build_config()["cuda_built"]


def pytest_collection_modifyitems(config, items):
    if _cuda_ready():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device and gfix_sdk built with CUDA")
    for item in items:
        if "needs_cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _private_export_cache(tmp_path_factory, monkeypatch):
    """Exports made by tests (ONNX, engines) go to a per-session temporary cache."""
    monkeypatch.setenv("GFIX_CACHE", str(tmp_path_factory.getbasetemp() / "gfix-cache"))
