import pytest
import torch

import gfix_sdk
from gfix_sdk.perceptual import LPIPS
from gfix_sdk.perceptual.weights_file import save_weights


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


@pytest.fixture(scope="session")
def lpips_file(tmp_path_factory):
    """Seeded random AlexNet LPIPS weights written to a file (positive heads: a
    valid metric, never zero for different images); no download needed."""
    torch.manual_seed(0)
    model = LPIPS("alex")
    for head in model.heads:
        head.weight.data.abs_()
    return save_weights(model.state_dict(), tmp_path_factory.mktemp("lpips") / "alex.pt", "alex")
