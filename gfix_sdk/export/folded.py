"""The enhancer with every adapter folded into plain weights, ready to export.

``W' = W + A M B`` replaces each adapted layer, the adapted prompt embedding
becomes a constant, the skip convolutions become plain 1x1 convolutions, and
the timestep and its ``abar(t)`` become constants: the graph holds no adapter
ops, only the base architecture with this video's weights. Its output is
clamped to [0, 1] (the exported model is an inference model).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from gfix_sdk.enhance.mlora import fold_into
from gfix_sdk.enhance.model import Enhancer, interpolate_alpha_bar, single_step


class FoldedEnhancer(nn.Module):
    """``forward(x)``: ``(B, 3, P, P)`` float32 in [0, 1] -> enhanced, clamped.

    Folding works on a deep copy of ``enhancer`` by default, which is left
    usable; ``inplace=True`` folds the enhancer's own modules instead (no
    second copy of the base weights in memory) and leaves it consumed: its
    adapters are gone, so it must not be used afterwards.
    """

    def __init__(self, enhancer: Enhancer, *, inplace: bool = False) -> None:
        super().__init__()
        if not inplace:
            enhancer = copy.deepcopy(enhancer)
        # Names (in this module's state dict) of the weights the adapter changed.
        self._adapted_names = [f"unet.{n}.weight" for n in enhancer.unet_layers] + [
            f"vae.decoder.{n}.weight" for n in enhancer.vae_layers]
        with torch.no_grad():
            fold_into(enhancer.unet, enhancer.unet_layers)
            fold_into(enhancer.vae.decoder, enhancer.vae_layers)
            enhancer.unet_layers, enhancer.vae_layers = {}, {}
            self.unet, self.vae = enhancer.unet, enhancer.vae
            self.skips = nn.ModuleList()
            for skip in enhancer.skips:
                conv = nn.Conv2d(skip.delta.shape[1], skip.delta.shape[0], 1, bias=False)
                conv.weight.copy_(skip.weight())
                self.skips.append(conv)
            self.register_buffer("prompt", enhancer.prompt().detach().clone())
            t = enhancer.t.detach().clone()
            self.register_buffer("t", t)
            self.register_buffer("abar", interpolate_alpha_bar(enhancer.alphas_cumprod, t).to(torch.float32))
            self.register_buffer("strength", enhancer.strength.detach().clone().to(torch.float32))
        self.prediction_type = enhancer.prediction_type
        self.wiring = enhancer.wiring
        self.patch = enhancer.config.patch
        self.requires_grad_(False).eval()

    def forward(self, x: Tensor) -> Tensor:
        out = single_step(self.vae, self.unet, self.skips, self.prompt, self.t, self.abar, self.prediction_type, x,
                          wiring=self.wiring, strength=self.strength)
        return out.clamp(0.0, 1.0)

    def folded_weights(self) -> dict[str, Tensor]:
        """The tensors that differ between videos on one base (what a TensorRT
        refit must replace): every weight of a layer the adapter touched, the
        skip convolutions, the prompt embedding, the timestep constants and the strength."""
        return {name: t for name, t in self.state_dict().items() if name in self._video_specific_names()}

    def _video_specific_names(self) -> set[str]:
        names = {"prompt", "t", "abar", "strength"} | {f"skips.{i}.weight" for i in range(len(self.skips))}
        names |= set(self._adapted_names)
        return names
