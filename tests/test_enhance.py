"""GFix enhancer: base loading, mLoRA, adapter coding, training, decoding."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from gfix_sdk.enhance.adapter import BaseMismatchError, apply_adapter, decode_adapter, encode_adapter
from gfix_sdk.enhance.base import BaseModelError, base_hash, build_tiny_base, check_base_dir, load_base
from gfix_sdk.enhance.mlora import AdaptedConv2d, fold_into, low_rank_factors
from gfix_sdk.enhance.model import AdapterConfig, Enhancer, interpolate_alpha_bar, merge_patches, split_patches
from gfix_sdk.enhance.tiny import install_tiny_base
from gfix_sdk.errors import GFixFormatError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SMALL = AdapterConfig(patch=64)


@pytest.fixture(scope="session")
def random_base_dir(tmp_path_factory):
    return build_tiny_base(tmp_path_factory.mktemp("random_base"))


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory):
    return install_tiny_base(tmp_path_factory.mktemp("tiny_base"))


def test_missing_or_incomplete_base_lists_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("GFIX_BASE", raising=False)
    with pytest.raises(BaseModelError, match="GFIX_BASE") as info:
        load_base(None)
    assert "huggingface-cli download stabilityai/sd-turbo" in str(info.value)
    with pytest.raises(BaseModelError, match="does not exist"):
        load_base(tmp_path / "nowhere")
    (tmp_path / "partial" / "unet").mkdir(parents=True)
    with pytest.raises(BaseModelError) as info:
        check_base_dir(tmp_path / "partial")
    message = str(info.value)
    for part in ("unet/config.json", "vae/", "text_encoder/", "tokenizer/", "scheduler/"):
        assert part in message


def test_tiny_base_has_sd_turbo_classes_and_schedule(random_base_dir):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    base = load_base(random_base_dir)
    assert isinstance(base.unet, UNet2DConditionModel) and isinstance(base.vae, AutoencoderKL)
    assert isinstance(base.text_encoder, CLIPTextModel) and isinstance(base.tokenizer, CLIPTokenizer)
    assert len(base.vae.config.block_out_channels) == 4
    assert base.unet.config.cross_attention_dim == base.text_encoder.config.hidden_size
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    torch.testing.assert_close(base.alphas_cumprod, torch.cumprod(1 - betas, 0), atol=1e-6, rtol=1e-5)
    ids = base.tokenizer("remove degradations", return_tensors="pt").input_ids
    assert ids[0, 0] == base.tokenizer.bos_token_id and ids.shape[1] > 10  # works offline


def test_gradients_reach_every_transmitted_tensor_and_t(random_base_dir):
    enhancer = Enhancer(load_base(random_base_dir), SMALL)
    for tensors in enhancer.groups().values():  # leave zero init so the test is about wiring
        for t in tensors:
            torch.nn.init.normal_(t, std=1e-3)
    out = enhancer(torch.rand(2, 3, 64, 64))
    out.square().mean().backward()
    for group, tensors in enhancer.groups().items():
        assert tensors and all(t.grad is not None and t.grad.abs().sum() > 0 for t in tensors), group
    assert enhancer.t.grad is not None and enhancer.t.grad.abs() > 0


@pytest.mark.parametrize("mode", ["mlora", "lora"])
def test_fold_equals_adapted_forward(random_base_dir, mode):
    enhancer = Enhancer(load_base(random_base_dir), AdapterConfig(patch=64, mode=mode))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensors in enhancer.groups().values():
            for t in tensors:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.02)
    x = torch.rand(1, 3, 64, 64, generator=gen)
    with torch.no_grad():
        adapted = enhancer(x)
        fold_into(enhancer.unet, enhancer.unet_layers)
        fold_into(enhancer.vae.decoder, enhancer.vae_layers)
        folded = enhancer(x)
    assert not any(isinstance(m, AdaptedConv2d) for m in enhancer.unet.modules())
    torch.testing.assert_close(folded, adapted, atol=1e-5, rtol=0)


def test_low_rank_factors_rank_cap_and_signs():
    weight = torch.randn(6, 4, 3, 3)
    a, b = low_rank_factors(weight, 512)
    assert a.shape == (6, 6) and b.shape == (6, 36)  # capped at min(6, 36)
    torch.testing.assert_close((a @ b).reshape(weight.shape), weight, atol=1e-5, rtol=0)
    pivot = a.abs().argmax(0)
    assert (a[pivot, torch.arange(6)] > 0).all()


SVD_SCRIPT = """
import hashlib, sys
from gfix_sdk.enhance.base import load_base
from gfix_sdk.enhance.mlora import find_targets, low_rank_factors
from gfix_sdk.enhance.model import UNET_TARGETS
base = load_base(sys.argv[1])
h = hashlib.sha256()
for name in find_targets(base.unet, UNET_TARGETS):
    a, b = low_rank_factors(base.unet.get_submodule(name).weight, 256)
    h.update(a.numpy().tobytes()); h.update(b.numpy().tobytes())
print(h.hexdigest())
"""


def test_svd_factors_bit_identical_across_processes(random_base_dir):
    digests = {
        subprocess.run([sys.executable, "-c", SVD_SCRIPT, str(random_base_dir)], capture_output=True,
                       text=True, check=True).stdout.strip()
        for _ in range(2)
    }
    assert len(digests) == 1 and len(digests.pop()) == 64


def _random_adapter(enhancer, step=2**-6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    steps = {}
    with torch.no_grad():
        for group, tensors in enhancer.groups().items():
            steps[group] = step
            for t in tensors:
                t.copy_(torch.round(torch.randn(t.shape, generator=gen) * 2) * step)
        enhancer.t.fill_(187.25)
    return steps


def test_adapter_round_trip_is_lossless(random_base_dir):
    base = load_base(random_base_dir)
    digest = base_hash(base)
    enhancer = Enhancer(base, SMALL)
    steps = _random_adapter(enhancer)
    payload = encode_adapter(enhancer, steps, digest)
    fresh = Enhancer(load_base(random_base_dir), SMALL)
    apply_adapter(fresh, decode_adapter(payload), digest)
    for (group, a), b in zip(enhancer.groups().items(), fresh.groups().values()):
        for x, y in zip(a, b):
            assert torch.equal(x, y), group
    assert float(fresh.t) == 187.25
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(enhancer(x), fresh(x))


def test_wrong_base_is_refused(random_base_dir, tmp_path):
    other = build_tiny_base(tmp_path / "other", seed=1)
    base = load_base(random_base_dir)
    enhancer = Enhancer(base, SMALL)
    payload = encode_adapter(enhancer, _random_adapter(enhancer), base_hash(base))
    other_base = load_base(other)
    with pytest.raises(BaseMismatchError, match="same SD-Turbo copy"):
        apply_adapter(Enhancer(other_base, SMALL), decode_adapter(payload), base_hash(other_base))


def test_truncated_or_corrupted_adapter_raises_format_error(random_base_dir):
    base = load_base(random_base_dir)
    enhancer = Enhancer(base, SMALL)
    payload = encode_adapter(enhancer, _random_adapter(enhancer), base_hash(base))
    for cut in range(0, len(payload), max(1, len(payload) // 25)):
        with pytest.raises(GFixFormatError):
            decode_adapter(payload[:cut])
    with pytest.raises(GFixFormatError, match="version"):
        decode_adapter(b"\x07" + payload[1:])
    with pytest.raises(GFixFormatError, match="trailing"):
        decode_adapter(payload + b"\x00")


def test_patch_split_merge_round_trip():
    image = torch.rand(45, 70, 3)
    tiles, layout = split_patches(image, 16)
    assert tiles.shape == (3 * 5, 3, 16, 16)
    assert torch.equal(merge_patches(tiles, layout), image)


def test_alpha_bar_interpolation_matches_grid_and_has_gradient():
    table = torch.linspace(0.99, 0.01, 1000, dtype=torch.float64)
    t = torch.tensor(199.0, requires_grad=True)
    value = interpolate_alpha_bar(table, t)
    assert float(value) == pytest.approx(float(table[199]))
    value.backward()
    assert t.grad is not None and float(t.grad) == pytest.approx(float(table[200] - table[199]), rel=1e-4)
    half = interpolate_alpha_bar(table, torch.tensor(199.5))
    assert float(half) == pytest.approx(float((table[199] + table[200]) / 2))


def test_params_table_on_sd_turbo_shapes():
    from gfix_sdk.enhance.params import sd_turbo_adapter_sizes, table_text

    decoder, unet, prompt = sd_turbo_adapter_sizes()
    assert decoder.layers == 39 and unet.layers > 200
    assert decoder.mlora_params < decoder.lora_params / 5
    assert prompt.mlora_params == 77 * 77
    text = table_text()
    assert "242.04" in text and "40.05" in text


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def gaussian_clip():
    """The bundled clip's first frames and their Gaussian-codec reconstructions."""
    from gfix_sdk.bitstream.encode import encode_frames
    from gfix_sdk.gaussians.sequence import SequenceConfig
    from gfix_sdk.io import load_bundled_clip

    frames, info = load_bundled_clip(max_frames=4)
    recons = []
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        report = encode_frames(frames, Path(tmp) / "g.gfix", width=info.width, height=info.height, fps=info.fps,
                               config=SequenceConfig(gaussians=1000, key_iterations=300, p_iterations=60),
                               progress=False, on_frame=lambda c: recons.append(c.reconstruction.numpy()))
    return frames, np.stack(recons), report


def test_training_lowers_distortion_with_a_small_adapter(tiny_base_dir, gaussian_clip):
    from gfix_sdk.enhance.pipeline import EnhanceSettings, fit_adapter
    from gfix_sdk.enhance.train import LAMBDA_PRESETS, TINY_BASE_LR, TrainConfig

    frames, recons, report = gaussian_clip
    settings = EnhanceSettings(base=str(tiny_base_dir), adapter=AdapterConfig(patch=64),
                               train=TrainConfig(steps=80, lmbda=LAMBDA_PRESETS[2], lr=TINY_BASE_LR), device="cpu")
    fitted = fit_adapter(frames, recons, settings, progress=False)
    result = fitted.result
    assert result.final_distortion < result.initial_distortion
    losses = [h["distortion"] for h in result.history]
    assert np.mean(losses[-3:]) < losses[0]
    # The coded adapter is a small fraction of the Gaussian payload ...
    assert len(fitted.payload) < 0.10 * report.payload_bytes
    # ... and the trained rate estimate matches the coded symbols within 5 %.
    coded = sum(fitted.coded.group_bytes().values())
    assert abs(coded - result.estimated_bits / 8) <= 0.05 * coded


def test_decoder_reproduces_the_encoders_enhanced_frames(tiny_base_dir, tmp_path, monkeypatch):
    from gfix_sdk.bitstream.encode import encode_frames
    from gfix_sdk.enhance.pipeline import EnhanceSettings
    from gfix_sdk.enhance.train import TrainConfig
    from gfix_sdk.gaussians.sequence import SequenceConfig
    from gfix_sdk.io import load_bundled_clip
    from gfix_sdk.runtime import Decoder

    monkeypatch.delenv("GFIX_BASE", raising=False)
    frames, info = load_bundled_clip(max_frames=3, size=(160, 90))
    gaussian, enhanced = [], {}
    settings = EnhanceSettings(base=str(tiny_base_dir), adapter=AdapterConfig(patch=64),
                               train=TrainConfig(steps=10), device="cpu")
    path = tmp_path / "gfix.gfix"
    report = encode_frames(frames, path, width=160, height=90, fps=info.fps,
                           config=SequenceConfig(gaussians=300, key_iterations=80, p_iterations=20),
                           progress=False, enhance=settings,
                           on_frame=lambda c: gaussian.append(c.reconstruction.numpy()),
                           on_enhanced=lambda i, f: enhanced.__setitem__(i, f.numpy()))
    assert report.enhancer_bytes > 0 and len(report.enhanced_psnr) == 3
    with Decoder.open(path, base=tiny_base_dir, backend="torch") as dec:
        assert dec.info.has_enhancer and dec.info.enhanced and dec.info.backend == "torch"
        for i, frame in enumerate(dec.frames()):
            np.testing.assert_array_equal(frame, enhanced[i])
    with Decoder.open(path, enhance=False) as dec:
        assert dec.info.has_enhancer and not dec.info.enhanced
        for frame, expected in zip(dec.frames(), gaussian, strict=True):
            np.testing.assert_array_equal(frame, expected)
    assert not all(np.array_equal(enhanced[i], gaussian[i]) for i in range(3))
    with pytest.raises(BaseModelError, match="GFIX_BASE"):
        Decoder.open(path)  # an enhanced file needs its base model


def test_cli_enhance_params_and_base(tiny_base_dir, tmp_path, capsys):
    from gfix_sdk.cli import main as gfix_main
    from gfix_sdk.io import load_bundled_clip, write_video

    frames, _ = load_bundled_clip(max_frames=2, size=(160, 90))
    source = tmp_path / "in.mkv"
    write_video(source, frames, fps=25, lossless=True)
    out = tmp_path / "out.gfix"
    assert gfix_main(["encode", str(source), "-o", str(out), "--preset", "fast", "--gaussians", "200", "-q",
                      "--enhance", "--base", str(tiny_base_dir), "--enhance-steps", "3", "--patch", "64",
                      "--device", "cpu"]) == 0
    assert "enhancer:" in capsys.readouterr().out
    assert gfix_main(["decode", str(out), "-o", str(tmp_path / "dec"), "--base", str(tiny_base_dir)]) == 0
    assert len(list((tmp_path / "dec").glob("*.png"))) == 2
    assert gfix_main(["params", "--table"]) == 0
    assert "mLoRA" in capsys.readouterr().out
    assert gfix_main(["base", "--tiny", str(tmp_path / "rnd"), "--random"]) == 0
    check_base_dir(tmp_path / "rnd")


def test_difix_loss_with_lpips_weights(tmp_path):
    """L2 + LPIPS + 0.5 Gram when LPIPS-VGG weights are given (random weights here:
    the test is about the wiring and gradients, not the values)."""
    from gfix_sdk.enhance.losses import DistortionLoss
    from gfix_sdk.perceptual import LPIPS

    torch.manual_seed(0)
    path = tmp_path / "lpips_vgg.pt"
    torch.save(LPIPS(net="vgg").state_dict(), path)
    loss_fn = DistortionLoss(path)
    assert loss_fn.description == "L2 + LPIPS + 0.5 Gram"
    target = torch.rand(2, 3, 32, 32)
    output = (target + 0.1 * torch.randn(2, 3, 32, 32)).requires_grad_(True)
    loss = loss_fn(output, target)
    loss.backward()
    assert loss > 0 and output.grad is not None and torch.isfinite(output.grad).all()
    assert float(loss_fn(target, target)) == pytest.approx(0.0, abs=1e-6)
