"""Deployment: folding, ONNX export and parity, refit name map, backends, gfix-export."""

import json

import numpy as np
import onnx
import pytest
import torch

from gfix_sdk.enhance.base import base_hash, load_base
from gfix_sdk.enhance.model import AdapterConfig, Enhancer
from gfix_sdk.enhance.tiny import install_tiny_base
from gfix_sdk.export import (
    FoldedEnhancer,
    export_onnx,
    initializer_names,
    load_recipe,
    refit_name_map,
    refit_onnx,
    weights_layout,
)
from gfix_sdk.runtime.backends import OnnxRuntimeBackend, TorchBackend, available_backends, create_backend

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return install_tiny_base(tmp_path_factory.mktemp("tiny"))


def adapted_enhancer(base_dir, seed=0):
    enhancer = Enhancer(load_base(base_dir), AdapterConfig(patch=32))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensors in enhancer.groups().values():
            for t in tensors:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.02)
        enhancer.t.fill_(171.5)
    return enhancer.eval()


@pytest.fixture(scope="module")
def exported(base_dir, tmp_path_factory):
    enhancer = adapted_enhancer(base_dir)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = enhancer(x).clamp(0, 1)
    folded = FoldedEnhancer(enhancer)
    result = export_onnx(folded, tmp_path_factory.mktemp("onnx") / "enhancer.onnx", max_batch=4)
    return folded, result, x, reference


def test_folded_model_equals_modulated_model(exported):
    folded, _, x, reference = exported
    with torch.no_grad():
        torch.testing.assert_close(folded(x), reference, atol=1e-5, rtol=0)
    assert not any(type(m).__name__.startswith("Adapted") for m in folded.modules())


def test_onnx_graph_is_valid_and_free_of_adapter_ops(exported):
    _, result, _, _ = exported
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model)
    inferred = onnx.shape_inference.infer_shapes(model)
    output = inferred.graph.output[0].type.tensor_type.shape.dim
    # Channels fixed; batch, height and width symbolic (tiles are multiples of 8 up to the patch).
    assert output[1].dim_value == 3 and all(d.dim_param and not d.dim_value for d in (output[0], output[2], output[3]))
    names = initializer_names(result.path)
    assert not any(n.endswith((".M", ".A", ".B", ".delta")) or ".base." in n for n in names)


def test_onnxruntime_matches_pytorch(exported):
    import onnxruntime as ort

    _, result, x, reference = exported
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        out = session.run(None, {"rendered": x[:batch].numpy()})[0]
        assert np.abs(out - reference[:batch].numpy()).max() <= 1e-4
    # Tiles smaller than the patch, and not square: a frame within the patch bound goes in one pass.
    folded = exported[0]
    for height, width in ((16, 32), (32, 24), (8, 8)):
        tile = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(height * width))
        out = session.run(None, {"rendered": tile.numpy()})[0]
        with torch.no_grad():
            expected = folded(tile).numpy()
        assert out.shape == (2, 3, height, width) and np.abs(out - expected).max() <= 1e-4


def test_refit_name_map_is_complete(exported):
    folded, result, _, _ = exported
    names = refit_name_map(folded, result.path)
    weights = folded.folded_weights()
    assert set(names) == set(weights)
    # Every adapted layer, the four skip convolutions, the prompt, the timestep constants and the strength.
    assert len(weights) == len(folded._adapted_names) + 4 + 4
    assert set(names.values()) <= initializer_names(result.path)
    assert all(f"skips.{i}.weight" in names for i in range(4)) and "prompt" in names


def test_refit_map_reports_missing_weights(exported, tmp_path):
    folded, result, _, _ = exported
    model = onnx.load(str(result.path))
    victim = next(iter(folded.folded_weights()))
    for init in model.graph.initializer:
        if init.name == victim:
            init.name = victim + "_gone"
    onnx.save(model, str(tmp_path / "broken.onnx"))
    with pytest.raises(ValueError, match="not initializers"):
        refit_name_map(folded, tmp_path / "broken.onnx")


def test_backends_agree(base_dir):
    enhancer = adapted_enhancer(base_dir, seed=3)
    digest = base_hash(load_base(base_dir))
    patches = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    torch_backend = create_backend("torch", enhancer, b"payload-a", digest, torch.device("cpu"))
    ort_backend = create_backend("onnxruntime", enhancer, b"payload-a", digest, torch.device("cpu"), max_batch=2)
    assert isinstance(torch_backend, TorchBackend) and isinstance(ort_backend, OnnxRuntimeBackend)
    assert ort_backend.providers == ["CPUExecutionProvider"]
    torch.testing.assert_close(ort_backend(patches), torch_backend(patches).clamp(0, 1), atol=1e-4, rtol=0)
    assert available_backends(torch.device("cpu"))[0] == "onnxruntime"
    assert create_backend("auto", enhancer, b"payload-a", digest, torch.device("cpu")).name == "onnxruntime"
    with pytest.raises(ValueError, match="backend must be one of"):
        create_backend("tvm", enhancer, b"x", digest, torch.device("cpu"))


def test_auto_picks_onnxruntime_on_a_gpu_only_with_its_gpu_providers(monkeypatch):
    from gfix_sdk.runtime import backends

    cuda = torch.device("cuda")
    monkeypatch.setattr(backends, "onnxruntime_providers", lambda: ["CPUExecutionProvider"])
    assert "onnxruntime" not in available_backends(cuda)  # the CPU build would run on the host
    assert available_backends(torch.device("cpu"))[:2] == ["onnxruntime", "torch"]
    for gpu in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        monkeypatch.setattr(backends, "onnxruntime_providers", lambda gpu=gpu: [gpu, "CPUExecutionProvider"])
        assert "onnxruntime" in available_backends(cuda)
    monkeypatch.setattr(backends, "onnxruntime_providers", lambda: [])  # not installed
    assert available_backends(torch.device("cpu")) == ["torch"]


def test_onnx_refit_gives_another_videos_model(exported, base_dir, tmp_path):
    import onnxruntime as ort

    folded_a, result, x, _ = exported
    other = adapted_enhancer(base_dir, seed=5)
    with torch.no_grad():
        expected = other(x).clamp(0, 1)
    folded_b = FoldedEnhancer(other, inplace=True)
    weights = folded_b.folded_weights()
    assert weights_layout(weights) == weights_layout(folded_a.folded_weights())
    path = refit_onnx(result.path, weights, tmp_path / "b" / "enhancer.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"rendered": x.numpy()})[0]
    assert np.abs(out - expected.numpy()).max() <= 1e-4
    assert np.abs(out - folded_a(x).numpy()).max() > 1e-2  # really another video's model
    dims = {i.name: list(i.dims) for i in onnx.load(str(path), load_external_data=False).graph.initializer}
    assert dims["t"] == [] and dims["abar"] == []  # scalars stay scalars
    with pytest.raises(ValueError, match="not initializers"):
        refit_onnx(result.path, {"no.such.weight": np.zeros(3, np.float32)}, tmp_path / "c" / "e.onnx")
    with pytest.raises(ValueError, match="has shape"):
        refit_onnx(result.path, {"prompt": np.zeros((2, 2), np.float32)}, tmp_path / "d" / "e.onnx")


def test_weights_layout_sees_names_and_shapes_not_values():
    a = {"w": torch.zeros(2, 3), "t": torch.tensor(1.0)}
    assert weights_layout(a) == weights_layout({"t": torch.tensor(5.0), "w": torch.ones(2, 3)})
    assert weights_layout(a) != weights_layout({"w": torch.zeros(3, 2), "t": torch.tensor(1.0)})
    assert weights_layout(a) != weights_layout({"w": torch.zeros(2, 3)})


def test_a_second_video_reuses_the_exported_graph(base_dir, tmp_path, monkeypatch):
    import gfix_sdk.export.onnx_export as onnx_export
    from gfix_sdk.runtime.backends import export_for

    digest = base_hash(load_base(base_dir))
    first, second = adapted_enhancer(base_dir, seed=6), adapted_enhancer(base_dir, seed=7)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        expected = second(x).clamp(0, 1)
    export_for(first, b"video-1", digest, max_batch=2, cache=tmp_path)

    def no_export(*args, **kwargs):
        raise AssertionError("the second video must not be exported again")

    monkeypatch.setattr(onnx_export, "export_onnx", no_export)
    path, _ = export_for(second, b"video-2", digest, max_batch=2, cache=tmp_path)
    backend = OnnxRuntimeBackend(path, torch.device("cpu"), max_batch=2)
    torch.testing.assert_close(backend(x), expected, atol=1e-4, rtol=0)
    assert export_for(second, b"video-2", digest, max_batch=2, cache=tmp_path) == (path, None)  # cached


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error path")
def test_tensorrt_without_gpu_says_what_is_missing(base_dir):
    from gfix_sdk.export.tensorrt_engine import TensorRTUnavailableError

    enhancer = adapted_enhancer(base_dir)
    with pytest.raises(TensorRTUnavailableError, match="NVIDIA GPU"):
        create_backend("tensorrt", enhancer, b"p", b"\0" * 32, torch.device("cpu"))


def test_recipes():
    recipe = load_recipe("sd-turbo-512")
    assert recipe.patch == 512 and recipe.precision == "fp16" and recipe.batch[0] <= recipe.batch[1] <= recipe.batch[2]
    assert load_recipe("tiny-cpu").precision == "fp32"
    with pytest.raises(FileNotFoundError, match="available"):
        load_recipe("no-such-recipe")


def test_gfix_export_cli_and_decoder_backends(base_dir, tmp_path, capsys):
    from gfix_sdk.encoder import encode_frames
    from gfix_sdk.enhance.pipeline import EnhanceSettings
    from gfix_sdk.enhance.train import TrainConfig
    from gfix_sdk.export.cli import main as export_main
    from gfix_sdk.gaussians.sequence import SequenceConfig
    from gfix_sdk.io import load_bundled_clip
    from gfix_sdk.runtime import Decoder

    frames, info = load_bundled_clip(max_frames=3, size=(160, 90))
    path = tmp_path / "v.gfix"
    encode_frames(frames, path, width=160, height=90, fps=info.fps,
                  config=SequenceConfig(gaussians=300, key_iterations=60, p_iterations=15), progress=False,
                  enhance=EnhanceSettings(base=str(base_dir), adapter=AdapterConfig(patch=32),
                                          train=TrainConfig(steps=5), device="cpu", always_keep=True))
    out = tmp_path / "export"
    assert export_main([str(path), "--base", str(base_dir), "--out", str(out), "--recipe", "tiny-cpu",
                        "--patch", "32", "--max-batch", "4"]) == 0
    record = json.loads((out / "export.json").read_text())
    assert record["patch"] == 32 and record["batch"][2] == 4 and (out / "enhancer.onnx").is_file()
    assert len(json.loads((out / "refit_map.json").read_text())) == record["folded_weights"]
    if not torch.cuda.is_available():
        assert export_main([str(path), "--base", str(base_dir), "--out", str(out), "--format", "trt"]) == 1
        assert "NVIDIA GPU" in capsys.readouterr().err
    # Decoder: ONNX Runtime frames agree with the PyTorch backend's to within one level.
    with Decoder.open(path, base=base_dir, backend="torch") as dec:
        reference = list(dec.frames())
    with Decoder.open(path, base=base_dir, backend="onnxruntime") as dec:
        assert dec.info.backend == "onnxruntime"
        for got, want in zip(dec.frames(), reference, strict=True):
            assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
        # Random access and the prefetching stream give the same frames.
        assert np.array_equal(dec[2], list(dec.frames())[2])


def test_prefetch_propagates_errors_and_stops_early():
    from gfix_sdk.runtime.decoder import _prefetched

    assert list(_prefetched(lambda i: i * i, range(5), 2)) == [0, 1, 4, 9, 16]

    def failing(i):
        if i == 3:
            raise RuntimeError("boom")
        return i

    with pytest.raises(RuntimeError, match="boom"):
        list(_prefetched(failing, range(10), 2))
    stream = _prefetched(lambda i: i, range(10**6), 2)
    assert next(stream) == 0
    stream.close()  # must not hang on the worker blocked on a full queue


def test_folding_copies_unless_inplace(base_dir):
    enhancer = adapted_enhancer(base_dir)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = enhancer(x)
        folded = FoldedEnhancer(enhancer)
        torch.testing.assert_close(enhancer(x), before, atol=0, rtol=0)  # the caller's enhancer is untouched
        assert enhancer.unet_layers and enhancer.vae_layers
        in_place = FoldedEnhancer(enhancer, inplace=True)
    assert not enhancer.unet_layers and not enhancer.vae_layers  # consumed: its adapters are folded away
    with torch.no_grad():
        torch.testing.assert_close(in_place(x), folded(x), atol=0, rtol=0)


def test_a_failed_export_leaves_nothing_in_the_cache(base_dir, tmp_path, monkeypatch):
    import gfix_sdk.export.onnx_export as onnx_export
    from gfix_sdk.runtime.backends import export_for

    def broken(model, path, **kwargs):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"half a graph")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(onnx_export, "export_onnx", broken)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_for(adapted_enhancer(base_dir), b"video", b"\0" * 32, max_batch=2, cache=tmp_path)
    assert list((tmp_path / "onnx").iterdir()) == []
