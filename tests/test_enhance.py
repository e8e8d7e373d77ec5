"""GFix enhancer: base loading, mLoRA, adapter coding, training, decoding."""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from gfix_sdk.enhance.adapter import BaseMismatchError, apply_adapter, decode_adapter, encode_adapter
from gfix_sdk.enhance.base import BaseModelError, base_hash, build_tiny_base, check_base_dir, load_base
from gfix_sdk.enhance.mlora import AdaptedConv2d, fold_into, low_rank_factors
from gfix_sdk.enhance.model import GROUPS, AdapterConfig, Enhancer, interpolate_alpha_bar
from gfix_sdk.errors import GFixFormatError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SMALL = AdapterConfig(patch=64)


@pytest.fixture(scope="session")
def random_base_dir(tmp_path_factory):
    return build_tiny_base(tmp_path_factory.mktemp("random_base"))


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
    from gfix_sdk.encoder import encode_frames
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
    from gfix_sdk.enhance.train import LAMBDA_PRESETS, TrainConfig

    frames, recons, report = gaussian_clip
    settings = EnhanceSettings(base=str(tiny_base_dir), train=TrainConfig(steps=80, lmbda=LAMBDA_PRESETS[2]),
                               device="cpu")
    fitted = fit_adapter(frames, recons, settings, progress=False)
    result = fitted.result
    # On the fixed validation crops, after quantisation (the per-step losses of
    # random crops are too noisy to compare once the base starts close to the target).
    assert result.final_distortion < result.initial_distortion
    # The coded adapter is a small fraction of the Gaussian payload ...
    assert len(fitted.payload) < 0.10 * report.payload_bytes
    # ... and the trained rate estimate matches the coded symbols within 5 %,
    # plus each group's model header (a few bytes the estimate does not model;
    # they dominate when the fitted maps are nearly all zero, as here).
    groups = fitted.coded.group_bytes()
    coded = sum(groups.values())
    assert abs(coded - result.estimated_bits / 8) <= 0.05 * coded + 4 * len(groups)


def test_decoder_reproduces_the_encoders_enhanced_frames(tiny_base_dir, tmp_path, monkeypatch):
    from gfix_sdk.encoder import encode_frames
    from gfix_sdk.enhance.pipeline import EnhanceSettings
    from gfix_sdk.enhance.train import TrainConfig
    from gfix_sdk.gaussians.sequence import SequenceConfig
    from gfix_sdk.io import load_bundled_clip
    from gfix_sdk.runtime import Decoder

    monkeypatch.delenv("GFIX_BASE", raising=False)
    frames, info = load_bundled_clip(max_frames=3, size=(160, 90))
    gaussian, enhanced = [], {}
    settings = EnhanceSettings(base=str(tiny_base_dir), adapter=AdapterConfig(patch=64),
                               train=TrainConfig(steps=10), device="cpu", always_keep=True)
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
                      "--device", "cpu", "--vmaf-weight", "2"]) == 0
    assert "+ 2 (1 - VMAF-NEG/100)" in capsys.readouterr().out  # the summary names the loss it trained
    assert gfix_main(["decode", str(out), "-o", str(tmp_path / "dec"), "--base", str(tiny_base_dir)]) == 0
    assert len(list((tmp_path / "dec").glob("*.png"))) == 2
    assert gfix_main(["params", "--table"]) == 0
    assert "mLoRA" in capsys.readouterr().out
    assert gfix_main(["base", "--tiny", str(tmp_path / "rnd"), "--random"]) == 0
    check_base_dir(tmp_path / "rnd")


@pytest.fixture(scope="module")
def seeded_vgg_weights(tmp_path_factory):
    """Seeded random LPIPS-VGG weights (positive heads): a valid metric without any download."""
    from gfix_sdk.perceptual import LPIPS

    torch.manual_seed(0)
    model = LPIPS(net="vgg")
    for head in model.heads:
        head.weight.data.abs_()
    path = tmp_path_factory.mktemp("vgg") / "lpips_vgg.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize("l2_weight", [1.0, 30.0])
def test_difix_loss_matches_an_independent_computation(seeded_vgg_weights, l2_weight):
    """w * L2 + LPIPS + 0.5 Gram, recomputed here from the LPIPS model's own
    distance and its VGG feature maps (Gram matrices normalised by C*H*W)."""
    from gfix_sdk.enhance.losses import DistortionLoss
    from gfix_sdk.perceptual import load_lpips

    loss_fn = DistortionLoss(seeded_vgg_weights, l2_weight=l2_weight)
    assert loss_fn.description == ("L2" if l2_weight == 1 else "30 L2") + " + LPIPS + 0.5 Gram"
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(2, 3, 48, 40, generator=gen)
    output = (target + 0.1 * torch.randn(2, 3, 48, 40, generator=gen)).clamp(0, 1).requires_grad_(True)
    loss = loss_fn(output, target)

    lpips = load_lpips(seeded_vgg_weights, net="vgg")
    with torch.no_grad():
        l2 = ((output - target) ** 2).mean()
        distance = lpips(output, target).mean()
        both = torch.cat([output, target]) * 2 - 1
        feats = lpips.features((both - lpips.shift) / lpips.scale)
        gram = 0.0
        for f in feats:
            b, c, h, w = f[:2].shape
            g = torch.einsum("bchw,bdhw->bcd", f, f) / (c * h * w)
            gram += ((g[:2] - g[2:]) ** 2).mean()
        expected = l2_weight * l2 + distance + 0.5 * gram
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-7)
    assert distance > 0 and gram > 0  # each term is present, not only the sum
    loss.backward()
    assert output.grad is not None and torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0
    assert float(loss_fn(target, target)) == pytest.approx(0.0, abs=1e-6)


def _degraded(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Blur, noise and an unsharp mask (enhancement gain, which VMAF-NEG must not reward) of uint8 frames."""
    f = frames.astype(np.float32)
    blur = (f + np.roll(f, 1, 1) + np.roll(f, -1, 1) + np.roll(f, 1, 2) + np.roll(f, -1, 2)) / 5
    noise = f + np.random.default_rng(0).normal(0, 6, f.shape)
    sharp = f + 1.5 * (f - blur)
    return {name: np.clip(np.round(a), 0, 255).astype(np.uint8)
            for name, a in (("blur", blur), ("noise", noise), ("sharp", sharp))}


def test_vmaf_fidelity_term_agrees_with_libvmaf():
    """The loss's VMAF-NEG (vmaf-torch, on float BT.601 luma) against libvmaf's
    vmaf_v0.6.1neg on the same frames, one frame per call (so libvmaf's motion
    is 0, as the term's): within 0.25 points for blur, noise and sharpening,
    and sharpening is not rewarded (NEG) while plain VMAF rewards it."""
    from gfix_sdk.enhance.losses import VmafNeg
    from gfix_sdk.io import load_bundled_clip
    from gfix_sdk.metrics.vmaf import SequenceVMAF

    frames, _ = load_bundled_clip(max_frames=2)
    neg_lib, plain_lib = SequenceVMAF.load(model="vmaf_v0.6.1neg"), SequenceVMAF.load()
    term = VmafNeg()
    to = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    for name, distorted in _degraded(frames).items():
        with torch.no_grad():
            ours = term(to(distorted), to(frames)).numpy()
        assert ours.shape == (len(frames),)
        for i in range(len(frames)):
            lib = neg_lib(frames[i:i + 1], distorted[i:i + 1]).value
            assert abs(ours[i] - lib) < 0.25, (name, i, ours[i], lib)  # measured <= 0.12
        if name == "sharp":
            plain = plain_lib(frames[:1], distorted[:1]).value
            assert plain > neg_lib(frames[:1], distorted[:1]).value + 2  # gain that NEG refuses


def test_vmaf_term_is_added_to_the_loss_with_its_weight():
    from gfix_sdk.enhance.losses import DistortionLoss, VmafNeg, make_loss

    gen = torch.Generator().manual_seed(2)
    target = torch.rand(2, 3, 64, 72, generator=gen)
    output = (target + 0.05 * torch.randn(2, 3, 64, 72, generator=gen)).clamp(0, 1).requires_grad_(True)
    plain, with_term = DistortionLoss(None, l2_weight=30), DistortionLoss(None, l2_weight=30, vmaf_weight=3)
    assert plain.vmaf is None and with_term.description == "30 L2 + (1 - MS-SSIM) + 3 (1 - VMAF-NEG/100)"
    with torch.no_grad():
        score = VmafNeg()(output, target)
    assert 0 < float(score.mean()) < 100
    loss = with_term(output, target)
    torch.testing.assert_close(loss.detach(), plain(output, target).detach() + 3 * (1 - score.mean() / 100))
    loss.backward()
    assert output.grad is not None and torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0
    assert make_loss("l2-msssim", vmaf_weight=2).vmaf_weight == 2
    with pytest.raises(ValueError, match="vmaf_weight"):
        DistortionLoss(None, vmaf_weight=-1)


def test_loss_choice_follows_the_installed_weights(seeded_vgg_weights, monkeypatch, tmp_path):
    from gfix_sdk.enhance.losses import make_loss

    monkeypatch.setenv("GFIX_LPIPS_VGG", str(seeded_vgg_weights))
    assert make_loss("auto").description == "L2 + LPIPS + 0.5 Gram"
    assert make_loss("difix").lpips is not None
    assert make_loss("l2-msssim").description == "L2 + (1 - MS-SSIM)"
    monkeypatch.setenv("GFIX_LPIPS_VGG", str(tmp_path / "missing.pt"))
    with pytest.warns(UserWarning, match="--install"):
        assert make_loss("auto").description == "L2 + (1 - MS-SSIM)"
    with pytest.raises(FileNotFoundError, match="--install"):
        make_loss("difix")
    with pytest.raises(ValueError, match="loss must be one of"):
        make_loss("l1")


def test_training_defaults_resolve_per_base(tiny_base_dir, random_base_dir):
    from gfix_sdk.enhance.base import BaseDefaults
    from gfix_sdk.enhance.tiny import TINY_DEFAULTS
    from gfix_sdk.enhance.train import TrainConfig

    tiny, paper = load_base(tiny_base_dir), load_base(random_base_dir)
    assert tiny.defaults == TINY_DEFAULTS  # recorded in the stand-in's gfix/defaults.json
    assert paper.defaults == BaseDefaults() and (paper.defaults.patch, paper.defaults.lr) == (512, 0.05)
    assert TrainConfig().resolved(paper.defaults).steps == 2000
    for base in (tiny, paper):
        train = TrainConfig().resolved(base.defaults)
        adapter = AdapterConfig().resolved(base.defaults)
        assert (train.lr, train.steps, train.crop) == (base.defaults.lr, base.defaults.steps, base.defaults.crop)
        assert (adapter.patch, adapter.overlap) == (base.defaults.patch, base.defaults.overlap)
    # What the user gives wins; an unset overlap follows a smaller patch.
    assert TrainConfig(lr=0.01, steps=7).resolved(tiny.defaults).lr == 0.01
    assert TrainConfig().resolved(paper.defaults).vmaf_weight == 0  # the paper's loss has no VMAF term
    assert TrainConfig().resolved(tiny.defaults).vmaf_weight == TINY_DEFAULTS.vmaf_weight > 0
    assert TrainConfig(vmaf_weight=0).resolved(tiny.defaults).vmaf_weight == 0
    with pytest.raises(ValueError, match="vmaf_weight"):
        TrainConfig(vmaf_weight=-0.5)
    assert AdapterConfig(patch=64).resolved(paper.defaults).overlap == 16
    assert Enhancer(load_base(tiny_base_dir), AdapterConfig()).config.patch == TINY_DEFAULTS.patch


def test_one_fixer_step_lowers_the_loss(random_base_dir):
    """The stand-in's fixer stage trains every part of the single-step path."""
    from gfix_sdk.enhance.fixer import FixerConfig, FixerModel, skip_convs, train_fixer

    base = load_base(random_base_dir)
    base.vae.requires_grad_(True)
    base.unet.requires_grad_(True)
    skips = skip_convs(base, copy_weights=False)
    model = FixerModel(base, skips, t=199.0)
    gen = np.random.default_rng(0)
    original = gen.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    rendered = np.clip(original.astype(int) + gen.integers(-40, 41, original.shape), 0, 255).astype(np.uint8)
    x = torch.from_numpy(rendered).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(original).permute(0, 3, 1, 2).float() / 255

    def loss_fn(a, b):
        return ((a - b) ** 2).mean()

    with torch.no_grad():
        before = float(loss_fn(model(x), y))
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    # batch 4 of 32x32 crops of two 32x32 frames: every crop is a whole frame (flipped or not)
    train_fixer(model, rendered, original, loss_fn, FixerConfig(steps=1, batch=4, crop=32, lr=1e-3), progress=False)
    with torch.no_grad():
        after = float(loss_fn(model(x), y))
    assert after < before
    changed = {n.split(".")[0] for n, p in model.named_parameters() if not torch.equal(p, weights[n])}
    assert changed == {"vae", "unet", "skips"}  # encoder, U-Net, decoder and skips all move


def test_residual_base_starts_as_the_identity_and_keeps_its_wiring(random_base_dir, tmp_path):
    """A base marked residual adds the decoder's output to the input: with the
    output layer zeroed (how the stand-in's fixer starts) the whole enhancer,
    folded export included, returns its input; the wiring survives saving,
    and changes the base's hash (adapters of the two wirings do not mix)."""
    import shutil

    from gfix_sdk.enhance.base import OutputWiring, save_gfix_extras
    from gfix_sdk.enhance.fixer import skip_convs
    from gfix_sdk.export.folded import FoldedEnhancer

    base_dir = tmp_path / "residual"
    shutil.copytree(random_base_dir, base_dir)
    plain = load_base(base_dir)
    save_gfix_extras(base_dir, [c.weight.detach() for c in skip_convs(plain)], plain.defaults,
                     OutputWiring(residual=True, luma_highpass_sigma=1.5))
    base = load_base(base_dir)
    assert base.wiring == OutputWiring(True, 1.5) and plain.wiring == OutputWiring()
    assert base_hash(base) != base_hash(plain)
    torch.nn.init.zeros_(base.vae.decoder.conv_out.weight)
    torch.nn.init.zeros_(base.vae.decoder.conv_out.bias)
    enhancer = Enhancer(base, SMALL).eval()
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(enhancer(x), x)
        assert torch.equal(FoldedEnhancer(enhancer)(x), x)
    for bad in ('{"residual": "yes"}', '{"residual": false, "luma_highpass_sigma": 1.5}', '{"residul": true}'):
        (base_dir / "gfix" / "wiring.json").write_text(bad)
        with pytest.raises(BaseModelError, match="wiring"):
            load_base(base_dir)


def test_luma_highpass_keeps_chroma_and_luma_detail_only():
    """The correction filter of a residual base: a smooth luma correction is
    removed, a chroma-only correction (zero luma) and a constant-free
    checkerboard in luma pass (nearly) unchanged; computed independently in YCbCr."""
    from gfix_sdk.enhance.model import LUMA, remove_luma_lowpass

    h = w = 40
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    luma_w = torch.tensor(LUMA, dtype=torch.float64).view(1, 3, 1, 1)
    smooth = (0.05 * torch.ones(1, 3, h, w, dtype=torch.float64) + 1e-3 * xx)  # grey ramp: luma only
    out = remove_luma_lowpass(smooth, 1.5)
    assert float(out[..., 5:-5, 5:-5].abs().max()) < 1e-9  # a linear ramp survives a symmetric blur exactly
    chroma = torch.tensor([0.1, -0.05, 0.0], dtype=torch.float64).view(1, 3, 1, 1)
    chroma = (chroma - (chroma * luma_w).sum(1, keepdim=True)).expand(1, 3, h, w)  # zero luma
    torch.testing.assert_close(remove_luma_lowpass(chroma, 1.5), chroma)
    checker = (((yy + xx) % 2) * 2 - 1).expand(1, 3, h, w) * 0.1  # Nyquist luma: the blur of it is ~0
    torch.testing.assert_close(remove_luma_lowpass(checker, 1.5)[..., 5:-5, 5:-5], checker[..., 5:-5, 5:-5],
                               atol=2e-3, rtol=0)


def test_older_adapter_payloads_decode(random_base_dir):
    """Version 1 (no overlap field) reads as overlap 0, versions 1 and 2 (no
    strength field) as strength 1, version 3 (one strength) as equal luma and
    chroma strengths; the values are the same. Strengths outside [0, 1], or
    both 0, are format errors."""
    from gfix_sdk.coding import ByteReader

    base = load_base(random_base_dir)
    enhancer = Enhancer(base, AdapterConfig(patch=64, overlap=16))
    steps = _random_adapter(enhancer)
    with torch.no_grad():
        enhancer.strength.copy_(torch.tensor([0.625, 0.25]))
    payload = encode_adapter(enhancer, steps, base_hash(base))
    current = decode_adapter(payload)
    assert (current.config.overlap, current.strengths) == (16, (0.625, 0.25))
    # Rebuild the older layouts from this payload: find the overlap varint and the strength f32s.
    r = ByteReader(payload, context="test")
    r.u8("version"), r.raw(32, "hash"), r.u8("mode")
    for name in ("prompt rank", "unet rank", "vae rank", "patch"):
        r.varint(name)
    overlap_at = len(payload) - r.remaining
    r.varint("overlap")
    after_overlap = len(payload) - r.remaining
    for name in ("prompt", "unet", "vae"):
        if r.u8(name) == 1:
            r.blob(name)
    r.f32("t")
    at = len(payload) - r.remaining  # luma strength, then chroma strength
    v3 = b"\x03" + payload[1:at + 4] + payload[at + 8:]
    v2 = b"\x02" + payload[1:at] + payload[at + 8:]
    v1 = b"\x01" + payload[1:overlap_at] + payload[after_overlap:at] + payload[at + 8:]
    for old, overlap, strengths in ((decode_adapter(v3), 16, (0.625, 0.625)), (decode_adapter(v2), 16, (1.0, 1.0)),
                                    (decode_adapter(v1), 0, (1.0, 1.0))):
        assert (old.config.overlap, old.config.patch, old.strengths) == (overlap, 64, strengths)
        assert old.counts == current.counts and old.coded.keys() == current.coded.keys()
        assert all(old.coded[g][0] == current.coded[g][0] for g in old.coded)  # the same coded values
    for luma, chroma in ((-0.5, 0.5), (1.5, 0.5), (float("nan"), 0.5), (0.5, 2.0), (0.0, 0.0)):
        damaged = payload[:at] + np.float32(luma).tobytes() + np.float32(chroma).tobytes() + payload[at + 8:]
        with pytest.raises(GFixFormatError, match="strength"):
            decode_adapter(damaged)


def _ycbcr(rgb: np.ndarray) -> np.ndarray:
    """BT.601 full-range YCbCr of RGB along the last axis (an independent reference)."""
    matrix = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
    return rgb @ matrix.T


def test_strengths_scale_the_enhancers_luma_and_chroma_change_in_every_backend(random_base_dir, tmp_path):
    """Strengths (l, c) scale the Y of the change f(x) - x by l and its Cb, Cr by
    c (checked in YCbCr), for a plain and a residual base, in the trainable
    enhancer and the folded export alike; equal strengths s give x + s (f(x) - x);
    both travel in the adapter."""
    import shutil

    from gfix_sdk.enhance.base import OutputWiring, save_gfix_extras
    from gfix_sdk.enhance.fixer import skip_convs
    from gfix_sdk.export.folded import FoldedEnhancer

    residual_dir = tmp_path / "residual"
    shutil.copytree(random_base_dir, residual_dir)
    plain = load_base(residual_dir)
    save_gfix_extras(residual_dir, [c.weight.detach() for c in skip_convs(plain)], plain.defaults,
                     OutputWiring(residual=True, luma_highpass_sigma=1.5))
    x = torch.rand(2, 3, 32, 48)
    for base_dir in (random_base_dir, residual_dir):
        base = load_base(base_dir)
        digest = base_hash(base)
        enhancer = Enhancer(base, SMALL).eval()
        _random_adapter(enhancer, step=2**-9)
        with torch.no_grad():
            full = enhancer(x)
            enhancer.strength.fill_(0.375)
            torch.testing.assert_close(enhancer(x), x + 0.375 * (full - x), rtol=0, atol=1e-6)
            enhancer.strength.copy_(torch.tensor([0.25, 0.75]))
            scaled = enhancer(x)
            torch.testing.assert_close(FoldedEnhancer(enhancer)(x), scaled.clamp(0, 1), rtol=0, atol=1e-5)
        change = _ycbcr((full - x).permute(0, 2, 3, 1).double().numpy())
        got = _ycbcr((scaled - x).permute(0, 2, 3, 1).double().numpy())
        np.testing.assert_allclose(got[..., 0], 0.25 * change[..., 0], atol=1e-5)
        np.testing.assert_allclose(got[..., 1:], 0.75 * change[..., 1:], atol=1e-5)
        fresh = Enhancer(load_base(base_dir), SMALL)
        apply_adapter(fresh, decode_adapter(encode_adapter(enhancer, {g: 2**-9 for g in GROUPS}, digest)),
                      digest)
        assert fresh.strength.tolist() == [0.25, 0.75]


def test_candidate_strengths_keep_the_fidelity_bounds():
    """For each luma strength the encoder takes the strongest chroma strength
    (multiples of 1/8) keeping the mean-PSNR floor, and keeps the pair only if
    it keeps the VMAF floor too (here a stand-in score on luma, as VMAF reads
    luma only); checked against a brute-force scan with an independent PSNR.
    A perfect enhancer keeps (1, 1); one that ruins frames has no candidate."""
    from gfix_sdk.enhance.pipeline import STRENGTHS, FidelityBounds, candidate_strengths

    gen = np.random.default_rng(0)
    originals = gen.integers(40, 216, (3, 24, 32, 3)).astype(np.uint8)
    rendered = np.clip(originals + gen.normal(0, 4, originals.shape), 0, 255).round().astype(np.uint8)
    enhanced = np.clip(rendered + gen.normal(0, 6, originals.shape), 0, 255).round().astype(np.uint8)

    def psnr(a):  # per frame, then the mean, as the metrics report it
        mse = [np.mean((f.astype(float) - o.astype(float)) ** 2) for f, o in zip(a, originals)]
        return float(np.mean([10 * np.log10(255**2 / m) for m in mse]))

    def luma_score(a):  # stand-in for VMAF: higher is better, luma only
        return -float(np.mean((_ycbcr(a.astype(float))[..., 0] - _ycbcr(originals.astype(float))[..., 0]) ** 2))

    def scaled(luma, chroma):
        change = _ycbcr(enhanced.astype(float) - rendered.astype(float))
        change[..., 0] *= luma
        change[..., 1:] *= chroma
        rgb = change @ np.linalg.inv(np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5],
                                               [0.5, -0.418688, -0.081312]])).T
        return np.clip(np.round(rendered + rgb), 0, 255)

    def bounds(psnr_drop, vmaf_drop, originals=originals, rendered=rendered):
        vmaf_floor = None if vmaf_drop is None else luma_score(rendered) - vmaf_drop
        return FidelityBounds(originals, psnr(rendered) - psnr_drop, vmaf_floor, psnr_drop, vmaf_drop,
                              _vmaf=luma_score)

    seen = set()
    for psnr_drop, vmaf_drop in ((0.25, None), (0.5, 0.0), (0.5, 0.5), (1.0, 2.0), (2.0, 1.0)):
        expected = []
        for luma in STRENGTHS:
            chroma = next((c for c in STRENGTHS if psnr(scaled(luma, c)) >= psnr(rendered) - psnr_drop), None)
            if chroma is None or luma == chroma == 0:
                continue
            if vmaf_drop is None or luma_score(scaled(luma, chroma)) >= luma_score(rendered) - vmaf_drop:
                expected.append((luma, chroma))
        assert candidate_strengths(rendered, enhanced, bounds(psnr_drop, vmaf_drop)) == expected
        assert (1.0, 1.0) not in expected  # this case needs scaling
        seen.add(len({luma for luma, _ in expected}))
    assert len(seen) > 2  # the bounds matter: different numbers of luma strengths survive
    assert candidate_strengths(rendered, originals, bounds(0.0, 0.0))[0] == (1.0, 1.0)
    assert candidate_strengths(rendered, 255 - rendered, bounds(0.01, 0.0)) == []


def test_do_no_harm_drops_an_adapter_that_hurts(random_base_dir, tmp_path):
    """On the random-weight base, enhancement ruins the frames: the encoder must
    write no ENHANCER section, say why, and the file must decode to the Gaussian frames."""
    from gfix_sdk.bitstream import GFixReader, SectionType
    from gfix_sdk.encoder import encode_frames
    from gfix_sdk.cli import main as gfix_main
    from gfix_sdk.enhance.pipeline import EnhanceSettings
    from gfix_sdk.enhance.train import TrainConfig
    from gfix_sdk.gaussians.sequence import SequenceConfig
    from gfix_sdk.io import load_bundled_clip
    from gfix_sdk.runtime import Decoder

    frames, info = load_bundled_clip(max_frames=2, size=(160, 90))
    gaussian = []
    path = tmp_path / "dropped.gfix"
    settings = EnhanceSettings(base=str(random_base_dir), adapter=AdapterConfig(patch=64),
                               train=TrainConfig(steps=3, loss="l2-msssim"), device="cpu")
    report = encode_frames(frames, path, width=160, height=90, fps=info.fps,
                           config=SequenceConfig(gaussians=300, key_iterations=80, p_iterations=20),
                           progress=False, enhance=settings,
                           on_frame=lambda c: gaussian.append(c.reconstruction.numpy()))
    decision = report.enhancer_decision
    assert not decision.kept and decision.reason.startswith("dropped")
    assert decision.distortion_enhanced > decision.distortion_gaussian
    assert report.enhancer_bytes == 0 and report.enhanced_psnr == []
    with GFixReader(path) as reader:
        assert SectionType.ENHANCER not in {e.type for e in reader.sections}
        assert reader.metadata()["enhancer"]["kept"] is False
    with Decoder.open(path, base=random_base_dir) as dec:
        assert not dec.info.has_enhancer and not dec.info.enhanced
        assert dec.info.enhancer_note.startswith("dropped")
        for frame, expected in zip(dec.frames(), gaussian, strict=True):
            np.testing.assert_array_equal(frame, expected)
    assert gfix_main(["info", str(path)]) == 0
    # --keep-adapter writes it anyway, and says so.
    forced = encode_frames(frames, tmp_path / "kept.gfix", width=160, height=90, fps=info.fps,
                           config=SequenceConfig(gaussians=300, key_iterations=80, p_iterations=20),
                           progress=False, enhance=dataclasses.replace(settings, always_keep=True))
    assert forced.enhancer_decision.kept and forced.enhancer_bytes > 0
    assert "kept on request" in forced.enhancer_decision.reason


def test_decision_objective_arithmetic():
    """keep iff R/pixels + lambda D(enhanced) < lambda D(gaussian), on the training loss."""
    from gfix_sdk.enhance.pipeline import decide

    class L2(torch.nn.Module):
        description = "L2"

        def forward(self, a, b):
            return ((a - b) ** 2).mean()

    original = np.full((2, 16, 16, 3), 100, np.uint8)
    rendered = original + 20
    enhanced = original + 10
    loss = L2()
    d_gauss, d_enh = (20 / 255) ** 2, (10 / 255) ** 2
    pixels = 2 * 16 * 16
    cheap = decide(original, rendered, enhanced, loss, lmbda=10.0, adapter_bits=8)
    assert cheap.kept and cheap.distortion_gaussian == pytest.approx(d_gauss, rel=1e-4)
    assert cheap.distortion_enhanced == pytest.approx(d_enh, rel=1e-4)
    assert cheap.objective_enhanced == pytest.approx(8 / pixels + 10 * d_enh, rel=1e-4)
    assert cheap.objective_gaussian == pytest.approx(10 * d_gauss, rel=1e-4)
    # An adapter whose bits outweigh the distortion it saves is dropped.
    costly_bits = int(10 * (d_gauss - d_enh) * pixels) + 8
    costly = decide(original, rendered, enhanced, loss, lmbda=10.0, adapter_bits=costly_bits)
    assert not costly.kept and costly.reason.startswith("dropped")


@pytest.fixture(scope="module")
def alex_lpips(tmp_path_factory):
    """The installed LPIPS-AlexNet (real weights) when the set-up converted them, else seeded random ones."""
    from gfix_sdk.paths import lpips_weights
    from gfix_sdk.perceptual import LPIPS, load_lpips

    path = lpips_weights("alex")
    if path is not None:
        return load_lpips(path, net="alex"), "installed"
    torch.manual_seed(0)
    model = LPIPS("alex")
    for head in model.heads:
        head.weight.data.abs_()
    return model, "seeded"


def test_stand_in_enhancer_makes_bundled_frames_better(tiny_base_dir, tmp_path, alex_lpips, monkeypatch):
    """The point of GFix: with the shipped stand-in and default settings, the
    decoded enhanced frames beat the Gaussian frames on LPIPS, PSNR drops by
    at most 0.5 dB (the issue's bound) and VMAF by at most the encoder's
    default bound (where libvmaf is installed). Fails whenever enhancement harms."""
    from gfix_sdk.encoder import encode_frames
    from gfix_sdk.enhance.pipeline import EnhanceSettings
    from gfix_sdk.enhance.train import TrainConfig
    from gfix_sdk.gaussians.sequence import PRESETS
    from gfix_sdk.io import load_bundled_clip
    from gfix_sdk.enhance.pipeline import DEFAULT_MAX_VMAF_DROP
    from gfix_sdk.metrics import sequence_metrics
    from gfix_sdk.metrics.vmaf import SequenceVMAF
    from gfix_sdk.runtime import Decoder

    monkeypatch.delenv("GFIX_BASE", raising=False)
    lpips, _ = alex_lpips
    frames, info = load_bundled_clip(max_frames=4)
    path = tmp_path / "helps.gfix"
    settings = EnhanceSettings(base=str(tiny_base_dir), train=TrainConfig(steps=100), device="cpu")
    report = encode_frames(frames, path, width=info.width, height=info.height, fps=info.fps,
                           config=dataclasses.replace(PRESETS["fast"], gaussians=1500), progress=False,
                           enhance=settings)
    assert report.enhancer_decision.kept, report.enhancer_decision.reason
    decoded = {}
    for enhance in (False, True):
        with Decoder.open(path, base=tiny_base_dir, enhance=enhance, backend="torch") as dec:
            decoded[enhance] = np.stack(list(dec.frames()))
    to = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    with torch.no_grad():
        gaussian_lpips, enhanced_lpips = (float(lpips(to(decoded[e]), to(frames)).mean()) for e in (False, True))
    gaussian_psnr, enhanced_psnr = (sequence_metrics(frames, decoded[e])["mean_psnr"] for e in (False, True))
    assert enhanced_lpips < gaussian_lpips
    assert enhanced_psnr >= gaussian_psnr - 0.5
    vmaf = SequenceVMAF.load()  # dev installs have imageio-ffmpeg's libvmaf
    gaussian_vmaf, enhanced_vmaf = (vmaf(frames, decoded[e]).value for e in (False, True))
    assert enhanced_vmaf >= gaussian_vmaf - DEFAULT_MAX_VMAF_DROP


def test_fidelity_bounds_convert_the_originals_once(monkeypatch):
    """The VMAF bound scores many candidate strengths against one video: the
    originals go to libvmaf's y4m once, and closing the bounds deletes that file."""
    import gfix_sdk.metrics.vmaf as vmaf_module
    from gfix_sdk.enhance.pipeline import FidelityBounds
    from gfix_sdk.io import load_bundled_clip

    frames, _ = load_bundled_clip(max_frames=2, size=(160, 90))
    rendered = np.clip(frames.astype(np.int16) + 6, 0, 255).astype(np.uint8)
    written = []
    original_write = vmaf_module.write_y4m
    monkeypatch.setattr(vmaf_module, "write_y4m", lambda handle, *a, **k: written.append(handle.name) or
                        original_write(handle, *a, **k))
    with FidelityBounds.measure(frames, rendered, 0.4, 0.5) as bounds:
        assert bounds.vmaf_floor is not None
        converted = len(written)  # the originals (after SequenceVMAF.load's own probe)
        assert bounds.keeps_vmaf(rendered) and bounds.keeps_vmaf(frames)
        assert not bounds.keeps_vmaf(np.zeros_like(frames))
        assert len(written) == converted and os.path.exists(written[-1])
    assert not os.path.exists(written[-1])
