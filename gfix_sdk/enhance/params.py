"""Adapter sizes on SD-Turbo's real shapes (the paper's Table I), without weights.

The U-Net and VAE are built from SD-Turbo's configurations on PyTorch's
``meta`` device (shapes only, no memory, no download); every adapted layer's
weight shape gives its parameter count:

* LoRA:  ``r (out + in k k)``  with ``r = min(rank, out, in k k)``
* mLoRA: ``r^2``               (A and B are rebuilt from the base, not sent)

Sizes are float32 (4 bytes per parameter). The paper's Table I rows v1.1/v1.2
("LoRA + decoder", "mLoRA + decoder") adapt the VAE decoder at rank 512;
its later rows add the prompt embedding (v2.2) and the U-Net at rank 256
(v2.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gfix_sdk.enhance.mlora import find_targets, layer_rank_cap
from gfix_sdk.enhance.model import AdapterConfig

SD_TURBO_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
)
SD_TURBO_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)
SD_TURBO_PROMPT_SHAPE = (77, 1024)  # CLIP tokens x OpenCLIP ViT-H width
PAPER_TABLE_MB = {"LoRA + decoder": 242.04, "mLoRA + decoder": 40.05}


@dataclass(frozen=True)
class AdapterSize:
    name: str  #: which part
    layers: int  #: adapted layers
    lora_params: int  #: parameters of vanilla LoRA
    mlora_params: int  #: parameters of mLoRA (the modulation maps)

    @property
    def lora_mb(self) -> float:
        return 4 * self.lora_params / 1e6

    @property
    def mlora_mb(self) -> float:
        return 4 * self.mlora_params / 1e6


def _layer_sizes(model: nn.Module, names: list[str], rank: int, *, cap: bool = True) -> tuple[int, int]:
    lora = mlora = 0
    for name in names:
        weight = model.get_submodule(name).weight
        r = min(rank, layer_rank_cap(weight)) if cap else rank
        lora += r * (weight.shape[0] + weight[0].numel())
        mlora += r * r
    return lora, mlora


def sd_turbo_adapter_sizes(config: AdapterConfig = AdapterConfig(), *, cap: bool = True) -> list[AdapterSize]:
    """Adapter sizes of the VAE decoder, the U-Net and the prompt on SD-Turbo shapes.
    ``cap=False`` counts the nominal rank even where it exceeds the layer's own
    rank (what PEFT-style LoRA allows)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD_TURBO_UNET)
        vae = AutoencoderKL(**SD_TURBO_VAE)
    sizes = []
    names = find_targets(vae.decoder, config.vae_targets)
    sizes.append(AdapterSize(f"VAE decoder (rank {config.vae_rank})", len(names),
                             *_layer_sizes(vae.decoder, names, config.vae_rank, cap=cap)))
    names = find_targets(unet, config.unet_targets)
    sizes.append(AdapterSize(f"U-Net (rank {config.unet_rank})", len(names),
                             *_layer_sizes(unet, names, config.unet_rank, cap=cap)))
    rows, cols = SD_TURBO_PROMPT_SHAPE
    r = min(config.prompt_rank, rows, cols) if cap else config.prompt_rank
    sizes.append(AdapterSize(f"prompt embedding (rank {config.prompt_rank})", 1, r * (rows + cols), r * r))
    return sizes


def skip_conv_params() -> int:
    """Parameters of the four 1x1 encoder->decoder skip convolutions on SD-Turbo's VAE."""
    boc = list(SD_TURBO_VAE["block_out_channels"])
    enc_in = [boc[0]] + boc[:-1]
    dec = list(reversed(boc))
    dec_in = [dec[0]] + dec[:-1]
    n = len(boc)
    return sum(enc_in[n - 1 - j] * dec_in[j] for j in range(n))


def table_text(config: AdapterConfig = AdapterConfig()) -> str:
    """The Table I comparison as printable text."""
    sizes = sd_turbo_adapter_sizes(config)
    uncapped = sd_turbo_adapter_sizes(config, cap=False)[0]
    skip_mb = 4 * skip_conv_params() / 1e6
    lines = [
        "Adapter parameter sizes on SD-Turbo shapes (float32, MB = 10^6 bytes; built on the meta device)",
        f"{'part':34s} {'layers':>6s} {'LoRA MB':>10s} {'mLoRA MB':>10s} {'ratio':>7s}",
    ]
    for s in sizes:
        lines.append(f"{s.name:34s} {s.layers:6d} {s.lora_mb:10.2f} {s.mlora_mb:10.2f} {s.lora_mb / s.mlora_mb:6.1f}x")
    decoder = sizes[0]
    lines += [
        f"{'skip convolutions (trained, sent)':34s} {4:6d} {skip_mb:10.2f} {skip_mb:10.2f}",
        "",
        f"{'Table I row':34s} {'capped MB':>10s} {'uncapped':>10s} {'paper MB':>10s}",
        f"{'v1.1 LoRA + decoder':34s} {decoder.lora_mb:10.2f} {uncapped.lora_mb:10.2f} "
        f"{PAPER_TABLE_MB['LoRA + decoder']:10.2f}",
        f"{'v1.2 mLoRA + decoder':34s} {decoder.mlora_mb:10.2f} {uncapped.mlora_mb:10.2f} "
        f"{PAPER_TABLE_MB['mLoRA + decoder']:10.2f}",
        "capped: rank min(512, layer rank) as GFix SDK builds it; uncapped: rank 512 on every layer",
        "(M is 512x512 even where the layer's rank is lower, as PEFT-style LoRA allows).",
        "",
        f"{'all (decoder + U-Net + prompt), LoRA':34s} {sum(s.lora_mb for s in sizes):10.2f}",
        f"{'all (decoder + U-Net + prompt), mLoRA':34s} {sum(s.mlora_mb for s in sizes):10.2f}",
    ]
    return "\n".join(lines)
