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
def tiny_base_dir(tmp_path_factory):
    """A private copy of the shipped stand-in base (tests that change it copy it again)."""
    from gfix_sdk.enhance.tiny import install_tiny_base

    return install_tiny_base(tmp_path_factory.mktemp("tiny_base"))


@pytest.fixture(scope="session")
def tiny_base_hash(tiny_base_dir):
    from gfix_sdk.enhance.base import base_hash, load_base

    return base_hash(load_base(tiny_base_dir))


@pytest.fixture(scope="session")
def lpips_file(tmp_path_factory):
    """Seeded random AlexNet LPIPS weights written to a file (positive heads: a
    valid metric, never zero for different images); no download needed."""
    torch.manual_seed(0)
    model = LPIPS("alex")
    for head in model.heads:
        head.weight.data.abs_()
    return save_weights(model.state_dict(), tmp_path_factory.mktemp("lpips") / "alex.pt", "alex")


@pytest.fixture
def decodes_in_pyav(tmp_path):
    """Check an anchor's ``EncodedClip`` as a plain PyAV client would read it:
    ``check(clip, stream_format, profile, suffix)``."""
    import io

    import av
    import numpy as np

    from gfix_sdk.io.yuv import yuv420_to_rgb

    def check(clip, stream_format: str, profile: str, suffix: str) -> None:
        with av.open(io.BytesIO(clip.data), format=stream_format) as container:
            stream = container.streams.video[0]
            packets = list(container.demux(stream))
            # The demuxer's own split of the stream accounts for every counted byte.
            assert sum(p.size for p in packets) == clip.num_bytes
            pictures = [f for p in packets for f in p.decode()]
            assert stream.codec_context.profile == profile
        assert len(pictures) == clip.num_frames
        first = pictures[0]
        assert (first.width, first.height, first.format.name) == (160, 90, "yuv420p")
        # Tagged BT.601 (bt470bg matrix, AVCOL_SPC_BT470BG = 5), limited range (1).
        assert (int(first.colorspace), int(first.color_range)) == (5, 1)
        # Its pictures, converted with the SDK's BT.601 path, are exactly `decoded`.
        for picture, decoded in zip(pictures, clip.decoded, strict=True):
            planes = [
                np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width]
                for p in picture.planes
            ]
            np.testing.assert_array_equal(yuv420_to_rgb(*planes), decoded)
        # Written to disk under its usual suffix, FFmpeg recognises it without a format hint.
        path = tmp_path / f"anchor{suffix}"
        path.write_bytes(clip.data)
        with av.open(str(path)) as container:
            assert sum(1 for _ in container.decode(video=0)) == clip.num_frames

    return check
