"""The single-step enhancer (Difix-style, on an SD-Turbo base).

For a rendered patch ``x`` in [0, 1]:

1. VAE-encode ``2x - 1`` deterministically (``latent_dist.mode()``, scaled by
   the VAE's scaling factor), keeping the input of every encoder down block;
2. treat the latent as the noisy sample at a learnable float timestep ``t`` and
   predict its noise with the U-Net conditioned on a learnable prompt embedding;
3. compute ``x0 = (z - sqrt(1 - abar(t)) eps) / sqrt(abar(t))`` in closed form,
   with ``abar(t)`` linearly interpolated from the scheduler's
   ``alphas_cumprod`` so that ``t`` is a float with a gradient (no
   ``scheduler.step``, which only accepts its own grid);
4. VAE-decode ``x0`` with four encoder->decoder skip connections: before each
   decoder up block, a 1x1 convolution of the matching encoder activation is
   added (initialised to 1e-5: the skips start almost closed).

Adaptation: mLoRA (or LoRA) on the chosen U-Net and VAE-decoder layers, an
mLoRA on the prompt embedding, the skip convolutions' weights (as a delta from
their fixed initialisation) and ``t``. Frames are cut into non-overlapping
``patch x patch`` tiles (the frame padded by edge replication to a multiple of
the patch, which is a multiple of 8), enhanced in batches and cropped back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gfix_sdk.enhance.base import BaseModel
from gfix_sdk.enhance.mlora import ModulatedMatrix, find_targets, inject

# Difix / pix2pix-turbo adapter targets (module-name suffixes).
UNET_TARGETS = ("to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_shortcut", "conv_out",
                "proj_in", "proj_out", "ff.net.2", "ff.net.0.proj")
VAE_DECODER_TARGETS = ("conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out",
                       "to_k", "to_q", "to_v", "to_out.0")
SKIP_INIT = 1e-5
GROUPS = ("prompt", "unet", "vae", "skip")


@dataclass(frozen=True)
class AdapterConfig:
    """Which parts are adapted and how (must match between encoder and decoder)."""

    mode: str = "mlora"  #: "mlora" or "lora" (the ablation)
    prompt_rank: int = 1024  #: capped at the embedding's own rank
    unet_rank: int = 256
    vae_rank: int = 512
    unet_targets: tuple[str, ...] = UNET_TARGETS
    vae_targets: tuple[str, ...] = VAE_DECODER_TARGETS
    prompt: str = "remove degradations"
    t_init: float = 199.0  #: starting timestep (Difix's noise level for 3DGS artifacts)
    patch: int = 512  #: patch side in pixels (multiple of 8)

    def __post_init__(self) -> None:
        if self.mode not in ("mlora", "lora"):
            raise ValueError(f"mode must be 'mlora' or 'lora', got {self.mode!r}")
        if self.patch < 8 or self.patch % 8:
            raise ValueError(f"patch must be a positive multiple of 8, got {self.patch}")
        for name in ("prompt_rank", "unet_rank", "vae_rank"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


class SkipConv(nn.Module):
    """1x1 convolution whose weight is a fixed 1e-5 initialisation plus a
    trained delta (the delta is what gets transmitted)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.register_buffer("init", torch.full((out_channels, in_channels, 1, 1), SKIP_INIT), persistent=False)
        self.delta = nn.Parameter(torch.zeros(out_channels, in_channels, 1, 1))
        self.transform: Callable[[Tensor], Tensor] | None = None

    def weight(self) -> Tensor:
        delta = self.delta if self.transform is None else self.transform(self.delta)
        return self.init + delta

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight())


def _skip_channels(vae: nn.Module) -> list[tuple[int, int]]:
    """(in, out) channels of the skip convolution feeding each decoder up block."""
    enc_boc = list(vae.config.block_out_channels)
    enc_inputs = [enc_boc[0]] + enc_boc[:-1]  # channels entering each encoder down block
    dec_boc = list(reversed(enc_boc))
    dec_inputs = [dec_boc[0]] + dec_boc[:-1]  # channels entering each decoder up block
    n = len(enc_boc)
    return [(enc_inputs[n - 1 - j], dec_inputs[j]) for j in range(n)]


def interpolate_alpha_bar(alphas_cumprod: Tensor, t: Tensor) -> Tensor:
    """``abar(t)`` for a float ``t`` by linear interpolation (differentiable in ``t``)."""
    last = alphas_cumprod.shape[0] - 1
    t = t.clamp(0.0, float(last))
    lo = torch.floor(t).clamp(max=last - 1)
    frac = t - lo
    lo_i = lo.long()
    table = alphas_cumprod.to(t.dtype)
    return table[lo_i] * (1 - frac) + table[lo_i + 1] * frac


def encode_with_skips(vae: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Deterministic scaled latent of ``x`` in [0, 1] and the input of every
    encoder down block (the skip activations)."""
    encoder = vae.encoder
    h = encoder.conv_in(2 * x - 1)
    skips = []
    for block in encoder.down_blocks:
        skips.append(h)
        h = block(h)
    h = encoder.conv_out(encoder.conv_act(encoder.conv_norm_out(encoder.mid_block(h))))
    if getattr(vae, "quant_conv", None) is not None:
        h = vae.quant_conv(h)
    mean = h.chunk(2, dim=1)[0]  # latent_dist.mode() of a diagonal Gaussian
    return mean * vae.config.scaling_factor, skips


def decode_with_skips(vae: nn.Module, z: Tensor, skips: list[Tensor], skip_convs: nn.ModuleList) -> Tensor:
    """VAE decode of a scaled latent, adding ``skip_convs[j](skip)`` before up block j; output in [0, 1]."""
    z = z / vae.config.scaling_factor
    if getattr(vae, "post_quant_conv", None) is not None:
        z = vae.post_quant_conv(z)
    decoder = vae.decoder
    h = decoder.mid_block(decoder.conv_in(z), None)
    for j, block in enumerate(decoder.up_blocks):
        h = block(h + skip_convs[j](skips[-1 - j]), None)
    h = decoder.conv_out(decoder.conv_act(decoder.conv_norm_out(h)))
    return (h + 1) / 2


def single_step(vae: nn.Module, unet: nn.Module, skip_convs: nn.ModuleList, prompt: Tensor, t: Tensor,
                abar: Tensor, prediction_type: str, x: Tensor) -> Tensor:
    """The enhancer's forward pass (see the module docstring); shared by the
    trainable :class:`Enhancer` and the folded export module."""
    with torch.no_grad():  # the VAE encoder is frozen and not adapted
        z, skips = encode_with_skips(vae, x)
    batch = z.shape[0]
    prompt = prompt.to(z.dtype).expand(batch, -1, -1)
    pred = unet(z, t.to(z.dtype).expand(batch), encoder_hidden_states=prompt).sample
    if prediction_type == "v_prediction":
        x0 = abar.sqrt() * z - (1 - abar).sqrt() * pred
    else:
        x0 = (z - (1 - abar).sqrt() * pred) / abar.sqrt()
    return decode_with_skips(vae, x0, skips, skip_convs)


class Enhancer(nn.Module):
    """Single-step diffusion enhancer with per-video adapters.

    Takes ownership of ``base``'s U-Net and VAE (adapters are injected into
    them in place); load a fresh :class:`BaseModel` per enhancer.
    """

    def __init__(self, base: BaseModel, config: AdapterConfig = AdapterConfig()) -> None:
        super().__init__()
        self.config = config
        self.unet = base.unet
        self.vae = base.vae
        self.prediction_type = base.prediction_type
        self.register_buffer("alphas_cumprod", base.alphas_cumprod.clone(), persistent=False)
        with torch.no_grad():
            ids = base.tokenizer(config.prompt, padding="max_length", truncation=True,
                                 max_length=base.tokenizer.model_max_length, return_tensors="pt").input_ids
            embedding = base.text_encoder(ids)[0][0]  # (tokens, width)
        self.prompt = ModulatedMatrix(embedding, config.prompt_rank)
        self.unet_layers = inject(self.unet, find_targets(self.unet, config.unet_targets), config.unet_rank,
                                  config.mode)
        decoder_layers = find_targets(self.vae.decoder, config.vae_targets)
        self.vae_layers = inject(self.vae.decoder, decoder_layers, config.vae_rank, config.mode)
        self.skips = nn.ModuleList(SkipConv(i, o) for i, o in _skip_channels(self.vae))
        self.t = nn.Parameter(torch.tensor(float(config.t_init)))

    # ------------------------------------------------------------- parameters
    def groups(self) -> dict[str, list[nn.Parameter]]:
        """Transmitted tensors by group (fixed order: the bitstream's order)."""
        return {
            "prompt": [self.prompt.M],
            "unet": [p for name in sorted(self.unet_layers) for p in self.unet_layers[name].trainable()],
            "vae": [p for name in sorted(self.vae_layers) for p in self.vae_layers[name].trainable()],
            "skip": [s.delta for s in self.skips],
        }

    def set_transform(self, transforms: dict[str, Callable[[Tensor], Tensor]] | None) -> None:
        """Route every transmitted tensor of group ``g`` through ``transforms[g]``
        in the forward pass (e.g. straight-through quantisation), or clear them."""
        holders = {
            "prompt": [self.prompt],
            "unet": list(self.unet_layers.values()),
            "vae": list(self.vae_layers.values()),
            "skip": list(self.skips),
        }
        for group, modules in holders.items():
            for module in modules:
                module.transform = None if transforms is None else transforms.get(group)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for tensors in self.groups().values() for p in tensors] + [self.t]

    # ---------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        """Enhance a batch ``(B, 3, H, W)`` in [0, 1] (H, W multiples of 8); the
        output is not clamped (training losses see the raw values)."""
        abar = interpolate_alpha_bar(self.alphas_cumprod, self.t.to(x.dtype))
        return single_step(self.vae, self.unet, self.skips, self.prompt(), self.t, abar, self.prediction_type, x)

    @torch.no_grad()
    def enhance_image(self, image: Tensor, *, batch: int = 4) -> Tensor:
        """Enhance an ``(H, W, 3)`` float image in [0, 1] patch by patch; returns
        ``(H, W, 3)`` clamped to [0, 1]."""
        device = next(self.unet.parameters()).device
        return enhance_by_patches(lambda x: self(x.to(device)), image, self.config.patch, batch=batch)


def enhance_by_patches(run: Callable[[Tensor], Tensor], image: Tensor, patch: int, *, batch: int = 4) -> Tensor:
    """Apply ``run`` (batch of ``(B, 3, patch, patch)`` in [0, 1] -> same shape)
    to an ``(H, W, 3)`` image tile by tile; returns the clamped ``(H, W, 3)`` result
    on the image's device."""
    patches, layout = split_patches(image, patch)
    outputs = [run(patches[i:i + batch]).clamp(0, 1).to(image.device) for i in range(0, patches.shape[0], batch)]
    return merge_patches(torch.cat(outputs), layout)


@dataclass(frozen=True)
class PatchLayout:
    height: int
    width: int
    rows: int
    cols: int
    patch: int


def split_patches(image: Tensor, patch: int) -> tuple[Tensor, PatchLayout]:
    """``(H, W, 3)`` -> ``(rows * cols, 3, patch, patch)`` tiles of the image
    padded (edge replication) to a multiple of ``patch``."""
    height, width, _ = image.shape
    rows, cols = -(-height // patch), -(-width // patch)
    chw = image.permute(2, 0, 1)[None]
    padded = F.pad(chw, (0, cols * patch - width, 0, rows * patch - height), mode="replicate")
    tiles = padded.unfold(2, patch, patch).unfold(3, patch, patch)  # 1, 3, rows, cols, p, p
    tiles = tiles.permute(0, 2, 3, 1, 4, 5).reshape(rows * cols, 3, patch, patch)
    return tiles.contiguous(), PatchLayout(height, width, rows, cols, patch)


def merge_patches(tiles: Tensor, layout: PatchLayout) -> Tensor:
    """Inverse of :func:`split_patches` (crops the padding)."""
    p = layout.patch
    grid = tiles.reshape(layout.rows, layout.cols, 3, p, p).permute(2, 0, 3, 1, 4)
    full = grid.reshape(3, layout.rows * p, layout.cols * p)
    return full[:, : layout.height, : layout.width].permute(1, 2, 0).contiguous()


__all__ = ["AdapterConfig", "Enhancer", "GROUPS", "split_patches", "merge_patches", "enhance_by_patches",
           "interpolate_alpha_bar", "single_step"]
