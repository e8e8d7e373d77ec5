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
   added (the base's pretrained skips, or 1e-5 where the base has none, as
   SD-Turbo: the skips then start almost closed). A residual base (the tiny
   stand-in) adds the decoder's output to ``x`` as a correction, optionally
   without its low-frequency luma (:class:`~gfix_sdk.enhance.base.OutputWiring`).

Adaptation: mLoRA (or LoRA) on the chosen U-Net and VAE-decoder layers, an
mLoRA on the prompt embedding, the skip convolutions' weights (as a delta from
the base's) and ``t``. Frames are enhanced in overlapping ``patch x patch``
tiles blended with smooth weights (:mod:`gfix_sdk.enhance.tiling`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gfix_sdk.enhance.base import DEFAULT_PROMPT, BaseDefaults, BaseModel, OutputWiring, prompt_embedding
from gfix_sdk.enhance.mlora import ModulatedMatrix, find_targets, inject
from gfix_sdk.enhance.tiling import enhance_tiled

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
    prompt: str = DEFAULT_PROMPT
    t_init: float = 199.0  #: starting timestep (Difix's noise level for 3DGS artifacts)
    #: Patch side in pixels (multiple of 8); None: the base's default (SD-Turbo: 512).
    patch: int | None = None
    #: Minimum overlap of neighbouring patches, blended (see :mod:`gfix_sdk.enhance.tiling`);
    #: None: the base's default, at most a quarter of the patch.
    overlap: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("mlora", "lora"):
            raise ValueError(f"mode must be 'mlora' or 'lora', got {self.mode!r}")
        if self.patch is not None and (self.patch < 8 or self.patch % 8):
            raise ValueError(f"patch must be a positive multiple of 8, got {self.patch}")
        if self.overlap is not None and self.overlap < 0:
            raise ValueError(f"overlap must be >= 0, got {self.overlap}")
        if self.patch is not None and self.overlap is not None and self.overlap > self.patch // 2:
            raise ValueError(f"overlap must be at most patch / 2 = {self.patch // 2}, got {self.overlap}")
        for name in ("prompt_rank", "unet_rank", "vae_rank"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


    def resolved(self, defaults: BaseDefaults) -> AdapterConfig:
        """This configuration with the base's defaults filled in (patch and overlap)."""
        patch = self.patch if self.patch is not None else defaults.patch
        overlap = self.overlap if self.overlap is not None else min(defaults.overlap, patch // 4)
        return replace(self, patch=patch, overlap=overlap)


class SkipConv(nn.Module):
    """1x1 convolution whose weight is the base's (pretrained skip, or a fixed
    1e-5 initialisation) plus a trained delta (the delta is what gets transmitted)."""

    def __init__(self, init: Tensor) -> None:
        super().__init__()
        self.register_buffer("init", init.detach().to(torch.float32).clone(), persistent=False)
        self.delta = nn.Parameter(torch.zeros_like(self.init))
        self.transform: Callable[[Tensor], Tensor] | None = None

    def weight(self) -> Tensor:
        delta = self.delta if self.transform is None else self.transform(self.delta)
        return self.init + delta

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight())


def skip_weights(base: BaseModel) -> list[Tensor]:
    """The base's skip convolution weights, or the near-zero initialisation
    (``SKIP_INIT``) when the base has none (SD-Turbo)."""
    shapes = [(o, i, 1, 1) for i, o in _skip_channels(base.vae)]
    if base.skips is None:
        return [torch.full(shape, SKIP_INIT) for shape in shapes]
    if [tuple(w.shape) for w in base.skips] != shapes:
        raise ValueError(f"the base's skip weights have shapes {[tuple(w.shape) for w in base.skips]}, "
                         f"its VAE needs {shapes}")
    return list(base.skips)


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


#: Luma weights (BT.601, as the metrics' YUV conversion) of an RGB correction.
LUMA = (0.299, 0.587, 0.114)


def luma_of(image: Tensor) -> Tensor:
    """The BT.601 luma ``(B, 1, H, W)`` of an RGB batch ``(B, 3, H, W)``."""
    weights = torch.tensor(LUMA, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image * weights).sum(dim=1, keepdim=True)


def remove_luma_lowpass(correction: Tensor, sigma: float) -> Tensor:
    """``correction`` minus the Gaussian-blurred (``sigma`` pixels) luma of it,
    taken from all three channels alike (in YCbCr, only Y changes): luma keeps
    its detail, chroma is untouched. Fixed weights, exported as constants."""
    radius = max(1, int(3 * sigma + 0.5))
    taps = torch.arange(-radius, radius + 1, dtype=correction.dtype, device=correction.device)
    kernel = torch.exp(-taps**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    luma = luma_of(correction)
    luma = F.pad(luma, (radius, radius, radius, radius), mode="replicate")
    luma = F.conv2d(F.conv2d(luma, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))
    return correction - luma


def scale_change(change: Tensor, strength: Tensor) -> Tensor:
    """``change`` (B, 3, H, W) with its luma scaled by ``strength[0]`` and its
    chroma by ``strength[1]``: in YCbCr (BT.601, :data:`LUMA`), Y of the result
    is ``strength[0]`` Y of ``change`` and Cb, Cr are ``strength[1]`` times
    theirs. The luma part is the change's Y added to all three channels alike
    (the luma weights sum to one, the chroma rows to zero), so the split is
    exact. Luma and chroma get their own scale because the encoder's bounds
    see them differently: VMAF reads luma only, PSNR and LPIPS all channels."""
    strength = strength.to(change.dtype)
    return strength[1] * change + (strength[0] - strength[1]) * luma_of(change)


def decode_with_skips(vae: nn.Module, z: Tensor, skips: list[Tensor], skip_convs: nn.ModuleList,
                      x: Tensor | None = None, wiring: OutputWiring = OutputWiring(),
                      strength: Tensor | None = None) -> Tensor:
    """VAE decode of a scaled latent, adding ``skip_convs[j](skip)`` before up
    block j; output in [0, 1]. A residual ``wiring`` adds the decoder's output
    to ``x`` (the input frame in [0, 1]) as a correction (see :class:`OutputWiring`).
    ``strength`` (a ``(2,)`` tensor: luma, chroma) scales the change made to
    ``x`` (see :func:`scale_change`): the encoder's fidelity control (see
    :func:`gfix_sdk.enhance.pipeline.candidate_strengths`)."""
    z = z / vae.config.scaling_factor
    if getattr(vae, "post_quant_conv", None) is not None:
        z = vae.post_quant_conv(z)
    decoder = vae.decoder
    h = decoder.mid_block(decoder.conv_in(z), None)
    for j, block in enumerate(decoder.up_blocks):
        h = block(h + skip_convs[j](skips[-1 - j]), None)
    h = decoder.conv_out(decoder.conv_act(decoder.conv_norm_out(h)))
    if not wiring.residual:
        y = (h + 1) / 2
        return y if strength is None else x + scale_change(y - x, strength)
    correction = h / 2
    if wiring.luma_highpass_sigma > 0:
        correction = remove_luma_lowpass(correction, wiring.luma_highpass_sigma)
    return x + (correction if strength is None else scale_change(correction, strength))


def single_step(vae: nn.Module, unet: nn.Module, skip_convs: nn.ModuleList, prompt: Tensor, t: Tensor,
                abar: Tensor, prediction_type: str, x: Tensor, *, wiring: OutputWiring = OutputWiring(),
                strength: Tensor | None = None) -> Tensor:
    """The enhancer's forward pass (see the module docstring); shared by the
    trainable :class:`Enhancer` and the folded export module."""
    # The adapter never touches the VAE encoder (its weights are frozen, so no
    # graph is kept for it); the stand-in's fixer pretraining does train it.
    z, skips = encode_with_skips(vae, x)
    batch = z.shape[0]
    prompt = prompt.to(z.dtype).expand(batch, -1, -1)
    pred = unet(z, t.to(z.dtype).expand(batch), encoder_hidden_states=prompt).sample
    if prediction_type == "v_prediction":
        x0 = abar.sqrt() * z - (1 - abar).sqrt() * pred
    else:
        x0 = (z - (1 - abar).sqrt() * pred) / abar.sqrt()
    return decode_with_skips(vae, x0, skips, skip_convs, x, wiring, strength)


class Enhancer(nn.Module):
    """Single-step diffusion enhancer with per-video adapters.

    Takes ownership of ``base``'s U-Net and VAE (adapters are injected into
    them in place); load a fresh :class:`BaseModel` per enhancer.

    ``factors``: the base's precomputed mLoRA factors and prompt embedding for
    this configuration (a :class:`gfix_sdk.runtime.factors.FactorSet`, the
    per-base cache), which skips the SVDs; the result is the same model.
    """

    def __init__(self, base: BaseModel, config: AdapterConfig = AdapterConfig(), *, factors=None) -> None:
        super().__init__()
        self.config = config.resolved(base.defaults)
        self.base_defaults = base.defaults  #: training defaults of the base (see TrainConfig.resolved)
        self.unet = base.unet
        self.vae = base.vae
        self.prediction_type = base.prediction_type
        self.wiring = base.wiring  #: the base's output wiring (see OutputWiring)
        self.register_buffer("alphas_cumprod", base.alphas_cumprod.clone(), persistent=False)
        unet_names = find_targets(self.unet, config.unet_targets)
        decoder_names = find_targets(self.vae.decoder, config.vae_targets)
        if factors is None:
            self.prompt = ModulatedMatrix(prompt_embedding(base, config.prompt), config.prompt_rank)
            unet_factors = vae_factors = None
        else:
            factors.check_layers(config, unet_names, decoder_names)
            self.prompt = ModulatedMatrix(factors.prompt, config.prompt_rank, factors.prompt_factors)
            unet_factors, vae_factors = factors.layer_factors("unet"), factors.layer_factors("vae")
        self.unet_layers = inject(self.unet, unet_names, config.unet_rank, config.mode, unet_factors)
        self.vae_layers = inject(self.vae.decoder, decoder_names, config.vae_rank, config.mode, vae_factors)
        self.skips = nn.ModuleList(SkipConv(w) for w in skip_weights(base))
        self.t = nn.Parameter(torch.tensor(float(config.t_init)))
        #: Scales of the change made to the frame's luma and chroma (1: as
        #: trained; see :func:`scale_change`); chosen by the encoder after
        #: training and carried by the adapter (not trained).
        self.register_buffer("strength", torch.ones(2))

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
        return single_step(self.vae, self.unet, self.skips, self.prompt(), self.t, abar, self.prediction_type, x,
                           wiring=self.wiring, strength=self.strength)

    @torch.no_grad()
    def enhance_image(self, image: Tensor, *, batch: int = 8) -> Tensor:
        """Enhance an ``(H, W, 3)`` float image in [0, 1] with blended overlapping
        patches (:func:`~gfix_sdk.enhance.tiling.enhance_tiled`); returns ``(H, W, 3)``
        clamped to [0, 1]."""
        device = next(self.unet.parameters()).device
        return enhance_tiled(lambda x: self(x.to(device)), image, self.config.patch, self.config.overlap,
                             batch=batch)


__all__ = ["AdapterConfig", "Enhancer", "GROUPS", "interpolate_alpha_bar", "remove_luma_lowpass", "single_step",
           "skip_weights"]
