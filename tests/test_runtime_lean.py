"""The lean runtime: per-base factor cache, base identity, and decoding a later
video on a base without diffusers, transformers or the trainable Enhancer."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from gfix_sdk.bitstream.writer import copy_with_enhancer
from gfix_sdk.enhance.adapter import BaseMismatchError, decode_adapter, encode_adapter
from gfix_sdk.enhance.base import load_base
from gfix_sdk.enhance.mlora import low_rank_factors
from gfix_sdk.enhance.model import AdapterConfig, Enhancer
from gfix_sdk.export import FoldedEnhancer, initializer_names, weights_layout
from gfix_sdk.runtime import backends
from gfix_sdk.runtime import factors as fc

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
CONFIG = AdapterConfig(patch=32, overlap=8)


@pytest.fixture(scope="module")
def fresh(tiny_base_dir):
    """A base-built Enhancer (fresh SVDs), never given cached factors."""
    return Enhancer(load_base(tiny_base_dir), CONFIG)


def make_payload(tiny_base_dir, tiny_base_hash, seed, enhancer=None):
    """An adapter payload with small random values (what training would send)."""
    enhancer = enhancer or Enhancer(load_base(tiny_base_dir), CONFIG)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensors in enhancer.groups().values():
            for t in tensors:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.01)
        enhancer.t.fill_(150.0 + seed)
    return encode_adapter(enhancer, {g: 1e-3 for g in enhancer.groups()}, tiny_base_hash)


@pytest.fixture(scope="module")
def payloads(tiny_base_dir, tiny_base_hash):
    return [make_payload(tiny_base_dir, tiny_base_hash, seed) for seed in (1, 2, 3)]


@pytest.fixture(scope="module")
def videos(payloads, tmp_path_factory):
    """Three .gfix files with the same Gaussian frames and different adapters."""
    from gfix_sdk.encoder import encode_frames
    from gfix_sdk.gaussians.sequence import SequenceConfig
    from gfix_sdk.io import load_bundled_clip

    folder = tmp_path_factory.mktemp("lean_videos")
    frames, info = load_bundled_clip(max_frames=1, size=(64, 48))
    plain = folder / "plain.gfix"
    encode_frames(frames, plain, width=64, height=48, fps=info.fps,
                  config=SequenceConfig(gaussians=60, key_iterations=10, p_iterations=5), progress=False)
    return [copy_with_enhancer(plain, folder / f"v{i}.gfix", payload) for i, payload in enumerate(payloads)]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty private cache."""
    root = tmp_path / "cache"
    monkeypatch.setenv("GFIX_CACHE", str(root))
    return root


@pytest.fixture(scope="module")
def first_video_cache(tiny_base_dir, payloads, tmp_path_factory):
    """A cache after the first video on the base was opened with onnxruntime
    (the full path: base hash recorded, factors cached, template exported)."""
    root = tmp_path_factory.mktemp("first_video_cache")
    saved = os.environ.get("GFIX_CACHE")
    os.environ["GFIX_CACHE"] = str(root)
    try:
        backend, _ = backends.open_backend("onnxruntime", payloads[0], tiny_base_dir, torch.device("cpu"))
    finally:
        if saved is None:
            del os.environ["GFIX_CACHE"]
        else:
            os.environ["GFIX_CACHE"] = saved
    assert {p.name for p in root.iterdir()} == {"bases", "factors", "onnx"}
    return root


@pytest.fixture
def warm(first_video_cache, tmp_path, monkeypatch):
    """A private copy of :func:`first_video_cache` (one ONNX export for the whole module)."""
    import shutil

    root = shutil.copytree(first_video_cache, tmp_path / "cache")
    monkeypatch.setenv("GFIX_CACHE", str(root))
    return root


def _no_full_path(monkeypatch):
    import gfix_sdk.enhance.pipeline as pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("the lean path must not rebuild the enhancer")

    monkeypatch.setattr(pipeline, "load_enhancer", refuse)


# --------------------------------------------------------------------------- factor cache
def test_cached_factors_equal_freshly_computed_ones_bit_for_bit(tiny_base_dir, tiny_base_hash, fresh, tmp_path):
    base = load_base(tiny_base_dir)
    built = fc.build_factor_set(base, tiny_base_hash, CONFIG)
    assert built.lean  # the stand-in's safetensors hold exactly the modules' weights
    path = fc.save_factor_set(built, fc.factor_path(tiny_base_hash, CONFIG, tmp_path))
    assert path.name.startswith(tiny_base_hash.hex()) and [p.name for p in path.parent.iterdir()] == [path.name]
    loaded = fc.load_factor_set(tiny_base_hash, CONFIG, tmp_path)
    assert loaded is not None and loaded.layers == built.layers and loaded.lean
    layers = {("unet", n): m for n, m in fresh.unet_layers.items()}
    layers |= {("vae", n): m for n, m in fresh.vae_layers.items()}
    assert set(loaded.factors) == set(layers) and len(layers) > 50
    for key, layer in layers.items():
        a, b = loaded.factors[key]
        # The encoder's Enhancer (fresh SVD), the cache and the SVD function itself agree exactly.
        assert torch.equal(a, layer.A) and torch.equal(b, layer.B), key
        a2, b2 = low_rank_factors(layer.base.weight, CONFIG.unet_rank if key[0] == "unet" else CONFIG.vae_rank)
        assert torch.equal(a, a2) and torch.equal(b, b2), key
    assert torch.equal(loaded.prompt, fresh.prompt.E)
    assert torch.equal(loaded.prompt_factors[0], fresh.prompt.A)
    assert torch.equal(loaded.prompt_factors[1], fresh.prompt.B)
    assert torch.equal(loaded.alphas_cumprod, fresh.alphas_cumprod)
    assert all(torch.equal(w, s.init) for w, s in zip(loaded.skips, fresh.skips, strict=True))


def test_an_enhancer_from_cached_factors_is_the_same_model(tiny_base_dir, tiny_base_hash, fresh, payloads, tmp_path):
    from gfix_sdk.enhance.adapter import apply_adapter

    base = load_base(tiny_base_dir)
    factors = fc.factor_set_for(base, tiny_base_hash, CONFIG, tmp_path)
    cached = Enhancer(base, CONFIG, factors=factors)
    coded = decode_adapter(payloads[0])
    apply_adapter(cached, coded, tiny_base_hash)
    reference = Enhancer(load_base(tiny_base_dir), CONFIG)
    apply_adapter(reference, coded, tiny_base_hash)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(cached.eval()(x), reference.eval()(x))
    other = AdapterConfig(patch=32, unet_rank=4)
    with pytest.raises(ValueError, match="another adapter configuration"):
        Enhancer(load_base(tiny_base_dir), other, factors=factors)


def test_a_damaged_or_foreign_factor_cache_is_rebuilt_not_trusted(tiny_base_dir, tiny_base_hash, tmp_path, monkeypatch):
    base = load_base(tiny_base_dir)
    path = fc.factor_path(tiny_base_hash, CONFIG, tmp_path)
    built = fc.build_factor_set(base, tiny_base_hash, CONFIG)
    good = fc.save_factor_set(built, path).read_bytes()
    calls = []
    real_build = fc.build_factor_set
    monkeypatch.setattr(fc, "build_factor_set", lambda *a: calls.append(1) or real_build(*a))

    def damaged(data: bytes) -> bool:
        path.write_bytes(data)
        ok = fc.load_factor_set(tiny_base_hash, CONFIG, tmp_path) is None
        fc.factor_set_for(base, tiny_base_hash, CONFIG, tmp_path)  # rebuilds and rewrites it
        # (the bytes may differ: safetensors writes the metadata keys in any order)
        again = fc.load_factor_set(tiny_base_hash, CONFIG, tmp_path)
        tensors = again.tensors() if again is not None else {}
        return ok and tensors.keys() == built.tensors().keys() and all(
            torch.equal(v, tensors[k]) for k, v in built.tensors().items())

    assert damaged(good[: len(good) // 2])  # truncated
    assert damaged(good[:-1000] + bytes(1000))  # tensors overwritten: their digest fails
    assert damaged(b"")
    assert len(calls) == 3
    # Another base's file under this base's name (renamed by hand, or a hash collision of names).
    other = fc.factor_path(b"\x07" * 32, CONFIG, tmp_path)
    other.write_bytes(good)
    assert fc.load_factor_set(b"\x07" * 32, CONFIG, tmp_path) is None
    # Another configuration's name.
    fc.factor_path(tiny_base_hash, AdapterConfig(patch=32, vae_rank=4), tmp_path).write_bytes(good)
    assert fc.load_factor_set(tiny_base_hash, AdapterConfig(patch=32, vae_rank=4), tmp_path) is None
    assert fc.load_factor_set(tiny_base_hash, CONFIG, tmp_path) is not None


def test_factor_cache_writes_are_atomic(tiny_base_dir, tiny_base_hash, tmp_path, monkeypatch):
    import safetensors.torch

    factors = fc.build_factor_set(load_base(tiny_base_dir), tiny_base_hash, CONFIG)
    path = fc.factor_path(tiny_base_hash, CONFIG, tmp_path)
    fc.save_factor_set(factors, path)
    before = path.read_bytes()

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        fc.save_factor_set(factors, path)
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == [path.name]


# --------------------------------------------------------------------------- base identity
def test_base_hash_record_goes_stale_when_a_file_changes(tiny_base_dir, tmp_path):
    import shutil

    copy = tmp_path / "base"
    shutil.copytree(tiny_base_dir, copy)
    assert fc.known_base_hash(copy, tmp_path) is None
    fc.remember_base_hash(copy, b"\x01" * 32, tmp_path)
    assert fc.known_base_hash(copy, tmp_path) == b"\x01" * 32
    weights = copy / "vae" / "diffusion_pytorch_model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert fc.known_base_hash(copy, tmp_path) is None
    fc.remember_base_hash(copy, b"\x01" * 32, tmp_path)
    (copy / "scheduler" / "extra.json").write_text("{}")  # a new file counts too
    assert fc.known_base_hash(copy, tmp_path) is None


# --------------------------------------------------------------------------- lean decoding
def test_lean_onnxruntime_equals_the_full_path(tiny_base_dir, tiny_base_hash, payloads, warm, monkeypatch):
    from gfix_sdk.enhance.pipeline import load_enhancer

    cpu = torch.device("cpu")
    first, coded = backends.open_backend("onnxruntime", payloads[0], tiny_base_dir, cpu)  # its export, cached
    assert coded.config.patch == 32
    x = torch.rand(3, 3, 32, 24, generator=torch.Generator().manual_seed(5))
    with monkeypatch.context() as m:
        _no_full_path(m)
        lean, coded2 = backends.open_backend("onnxruntime", payloads[1], tiny_base_dir, cpu)
    lean_out = lean(x)
    # The same weights as Enhancer -> FoldedEnhancer ...
    enhancer, _ = load_enhancer(payloads[1], tiny_base_dir, "cpu")
    with torch.no_grad():
        expected = enhancer(x).clamp(0, 1)
    reference = FoldedEnhancer(enhancer).folded_weights()  # a copy: `enhancer` is exported below
    weights = fc.fold_weights(coded2, fc.load_factor_set(tiny_base_hash, coded2.config), tiny_base_dir)
    assert weights.keys() == reference.keys() and weights_layout(weights) == weights_layout(reference)
    for name, value in reference.items():
        assert value.dtype == weights[name].dtype and value.shape == weights[name].shape, name
        assert (value - weights[name]).abs().max() <= 1e-6, name
    # ... so the same outputs as the full path's graph for this video, and as PyTorch.
    full_path = backends.onnx_path_for(payloads[1], 32, 8)
    lean_file = full_path.read_bytes()
    import shutil

    shutil.rmtree(full_path.parent)
    path, _ = backends.export_for(enhancer, payloads[1], tiny_base_hash, max_batch=8)  # the full path's refit
    full = backends.OnnxRuntimeBackend(path, cpu, max_batch=8)
    assert (lean_out - full(x)).abs().max() <= 1e-6
    assert (lean_out - expected).abs().max() <= 1e-5
    assert (lean_out - first(x)).abs().max() > 1e-3  # really the other video's model
    assert len(lean_file) == len(path.read_bytes())  # the same graph (both refits of the template)


def test_a_second_video_opens_without_diffusers_transformers_or_enhancer(tiny_base_dir, videos, cache):
    from gfix_sdk.runtime import Decoder

    with Decoder.open(videos[0], base=tiny_base_dir, backend="onnxruntime") as dec:  # first video: full path
        first = dec[0]
    script = (
        "import json, sys, time\n"
        "import gfix_sdk.enhance.model as model\n"
        "def refuse(*a, **k): raise AssertionError('Enhancer built')\n"
        "model.Enhancer.__init__ = refuse\n"
        "from gfix_sdk.runtime import Decoder\n"
        "start = time.perf_counter()\n"
        "with Decoder.open(sys.argv[1], base=sys.argv[2], backend='onnxruntime') as dec:\n"
        "    opened = time.perf_counter() - start\n"
        "    frame = dec[0]\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('diffusers', 'transformers')\n"
        "               or m in ('gfix_sdk.enhance.pipeline', 'gfix_sdk.enhance.train', 'gfix_sdk.enhance.losses'))\n"
        "print(json.dumps({'backend': dec.info.backend, 'heavy': heavy, 'open_s': opened}))\n"
        "frame.tofile(sys.argv[3])\n"
    )
    out = cache.parent / "frame.raw"
    env = {**os.environ, "GFIX_CACHE": str(cache)}
    for video in videos[1:]:
        result = subprocess.run([sys.executable, "-c", script, str(video), str(tiny_base_dir), str(out)],
                                capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["backend"] == "onnxruntime" and report["heavy"] == [], report
        frame = np.fromfile(out, dtype=np.uint8).reshape(first.shape)
        with Decoder.open(video, base=tiny_base_dir, backend="torch") as dec:  # full path, PyTorch
            expected = dec[0]
        assert np.abs(frame.astype(int) - expected.astype(int)).max() <= 1
        assert not np.array_equal(frame, first)


def test_the_lean_path_still_refuses_a_wrong_base(tiny_base_dir, payloads, warm, tmp_path, monkeypatch):
    import shutil

    other = tmp_path / "other_base"
    shutil.copytree(tiny_base_dir, other)
    fc.remember_base_hash(other, b"\x02" * 32)  # as if another base had been loaded from there
    _no_full_path(monkeypatch)
    for payload in payloads[:2]:  # the exported video and a new one
        with pytest.raises(BaseMismatchError, match="trained on base model"):
            backends.open_backend("onnxruntime", payload, other, torch.device("cpu"))


def test_a_corrupted_factor_cache_falls_back_to_the_full_path(tiny_base_dir, tiny_base_hash, payloads, warm):
    cpu = torch.device("cpu")
    path = fc.factor_path(tiny_base_hash, CONFIG)
    # Copies: loaded tensors map the file, which is about to be damaged in place.
    good = {k: v.clone() for k, v in fc.load_factor_set(tiny_base_hash, CONFIG).tensors().items()}
    path.write_bytes(path.read_bytes()[:100])
    backend, _ = backends.open_backend("onnxruntime", payloads[1], tiny_base_dir, cpu)  # full path, rebuilds the cache
    rebuilt = fc.load_factor_set(tiny_base_hash, CONFIG).tensors()
    assert rebuilt.keys() == good.keys() and all(torch.equal(v, rebuilt[k]) for k, v in good.items())
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert backend(x).shape == x.shape


def test_lean_tensorrt_refits_the_template_with_this_videos_weights(tiny_base_dir, tiny_base_hash, payloads, warm,
                                                                    monkeypatch):
    calls = []

    class FakeTensorRT:
        name = "tensorrt"

        def __init__(self, onnx_path, weights, base_hash, patch, *, max_batch, fp16=True):
            calls.append((onnx_path, weights, base_hash, patch, max_batch))

    monkeypatch.setattr(backends, "TensorRTBackend", FakeTensorRT)
    _no_full_path(monkeypatch)
    backend, coded = backends.open_backend("tensorrt", payloads[1], tiny_base_dir, torch.device("cpu"))
    assert isinstance(backend, FakeTensorRT) and len(calls) == 1
    template, weights, base_hash_, patch, max_batch = calls[0]
    assert base_hash_ == tiny_base_hash and patch == 32 and max_batch == 8
    assert set(weights) <= initializer_names(template)
    assert not backends.onnx_path_for(payloads[1], 32, 8).exists()  # no per-video graph for TensorRT
    record = json.loads(next((warm / "bases").iterdir()).read_text())
    assert record["hash"] == tiny_base_hash.hex()


def test_torch_backend_folds_once_and_matches_the_adapted_model(tiny_base_dir, tiny_base_hash, payloads):
    from gfix_sdk.enhance.adapter import apply_adapter

    enhancer = Enhancer(load_base(tiny_base_dir), CONFIG)
    apply_adapter(enhancer, decode_adapter(payloads[2]), tiny_base_hash)
    enhancer.eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = enhancer(x).clamp(0, 1)
    backend = backends.TorchBackend(enhancer, torch.device("cpu"))
    assert not any(type(m).__name__.startswith("Adapted") for m in backend.model.modules())
    assert enhancer.unet_layers  # not consumed by default
    assert torch.equal(backend(x), expected)  # bit for bit: W + A M B is what every forward formed
    consumed = backends.TorchBackend(enhancer, torch.device("cpu"), consume=True)
    assert torch.equal(consumed(x), expected) and not enhancer.unet_layers


def test_bf16_torch_backend_stays_close_to_float32(tiny_base_dir, tiny_base_hash, payloads):
    """bf16 folds in float32 and then casts: outputs stay float32 and within
    bf16's resolution of the float32 backend (a wrong cast order or an
    unconverted input would fail or drift far more)."""
    from gfix_sdk.enhance.adapter import apply_adapter

    enhancer = Enhancer(load_base(tiny_base_dir), CONFIG)
    apply_adapter(enhancer, decode_adapter(payloads[1]), tiny_base_hash)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    full = backends.TorchBackend(enhancer, torch.device("cpu"))(x)
    half = backends.TorchBackend(enhancer, torch.device("cpu"), precision="bf16")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    out = half(x)
    assert out.dtype == torch.float32 and out.shape == full.shape
    error = (out - full).abs()
    assert 0 < error.max() < 0.02 and error.mean() < 0.004  # measured: max 0.0040, mean 0.00086


@pytest.mark.parametrize("kind, precision, device, message", [
    ("torch", "fp16", "cpu", "needs a CUDA device"),
    ("onnxruntime", "bf16", "cpu", "fp32 only"),
    ("tensorrt", "bf16", "cuda", "fp32 or fp16"),
    ("torch", "fp64", "cpu", "precision must be one of"),
])
def test_unsupported_precisions_are_refused_by_name(kind, precision, device, message):
    with pytest.raises(ValueError, match=message):
        backends.check_precision(precision, kind, torch.device(device))


def test_decoder_refuses_a_precision_before_loading_the_base(videos, tmp_path):
    from gfix_sdk.runtime import Decoder

    with pytest.raises(ValueError, match="needs a CUDA device"):  # no base given, none needed to say so
        Decoder.open(videos[0], base=tmp_path / "no-such-base", backend="torch", precision="fp16")


@pytest.mark.parametrize("package, forbidden", [
    # the container knows nothing of what it carries
    ("gfix_sdk.bitstream", ("gfix_sdk.encoder", "gfix_sdk.enhance", "gfix_sdk.gaussians", "gfix_sdk.io",
                            "gfix_sdk.runtime", "torch")),
    # the decode runtime: no encoder, no fitting, no trainable enhancer, no diffusers/transformers
    ("gfix_sdk.runtime", ("gfix_sdk.encoder", "gfix_sdk.gaussians.fit", "gfix_sdk.gaussians.sequence",
                          "gfix_sdk.enhance", "gfix_sdk.export", "diffusers", "transformers")),
])
def test_package_imports_stay_on_their_side_of_the_layout(package, forbidden):
    script = (f"import sys, json\nimport {package}\n"
              f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({forbidden!r}))))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
