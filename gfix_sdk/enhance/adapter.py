"""The ENHANCER section: the coded per-video adapter.

Payload (little-endian, version 4)::

    u8      version
    32 B    SHA-256 of the base model (see :func:`gfix_sdk.enhance.base.base_hash`)
    u8      mode (0 mLoRA, 1 LoRA)
    varint  prompt rank, U-Net rank, VAE rank, patch size, patch overlap
    3 x     (u8 flag, [blob]): prompt text, U-Net targets, VAE-decoder targets
            (comma-separated); flag 0 = the default (no blob follows), 1 = custom
    f32     timestep t
    f32     luma strength, f32 chroma strength (version 4; version 3 has one
            f32 for both, versions 1-2 none: 1): scales of the change the
            enhancer makes to a frame's luma and chroma, chosen by the encoder
            (see :func:`gfix_sdk.enhance.model.scale_change`)
    then for each group in (prompt, unet, vae, skip):
        f64     quantisation step
        varint  number of values
        ...     the integers round(value / step), coded by gfix_sdk.coding

A group's values are its tensors flattened and concatenated in the order of
:meth:`Enhancer.groups` (layers sorted by name), so the decoder, which
rebuilds the same layer list from the same base and configuration, splits
them back. :func:`decode_adapter` reads the header and steps over each
group's coded values without decoding them; they are decoded only once the
decoder knows from that rebuild (or the lean runtime's cached layer list) how
many there must be, and a count that differs is refused first
(:meth:`CodedAdapter.group_values`): a crafted 100-byte payload declaring
2**28 values costs no memory.

Version 1 (no overlap field: patches did not overlap) is still read, as
overlap 0; versions 1 and 2 (no strength field) as strength 1; version 3 (one
strength) as equal luma and chroma strengths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gfix_sdk.coding import ByteReader, ByteWriter, decode_symbols, encode_symbols, skip_symbols
from gfix_sdk.enhance.model import GROUPS, AdapterConfig, Enhancer
from gfix_sdk.errors import GFixError, GFixFormatError

ADAPTER_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
#: Per group: far above SD-Turbo's largest (LoRA) adapter. A format bound only: nothing is
#: allocated by it (values are decoded once the base says how many there must be).
MAX_VALUES = 1 << 28
_MODES = ("mlora", "lora")


class BaseMismatchError(GFixError, ValueError):
    """The file's adapter was trained on a different base model."""


@dataclass
class CodedAdapter:
    """A parsed ENHANCER payload: everything needed to rebuild the adapter.

    The values stay entropy-coded until :meth:`group_values` is told how many
    a group must hold (see the module docstring)."""

    base_hash: bytes
    config: AdapterConfig
    t: float
    steps: dict[str, float]
    counts: dict[str, int]  #: number of values each group declares
    #: Each group's coded values: (their bytes, the offset of those bytes in the payload).
    coded: dict[str, tuple[bytes, int]]
    luma_strength: float = 1.0  #: scale of the enhancer's change to a frame's luma, in [0, 1]
    chroma_strength: float = 1.0  #: scale of its change to the chroma, in [0, 1]
    context: str = "ENHANCER"  #: what errors call the payload (e.g. the file and the section)

    @property
    def strengths(self) -> tuple[float, float]:
        """``(luma, chroma)``, as the enhancer's ``strength`` buffer holds them."""
        return (self.luma_strength, self.chroma_strength)

    def group_bytes(self) -> dict[str, int]:
        """Coded size of each group's values, in bytes."""
        return {g: len(data) for g, (data, _) in self.coded.items()}

    def group_values(self, group: str, expected: int) -> np.ndarray:
        """The int64 grid indices of ``group``, which must hold ``expected``
        values (what the base's layers need); raises GFixFormatError naming
        the group, before decoding anything, when the payload declares another
        count, and when the coded values are damaged."""
        if self.counts[group] != expected:
            raise GFixFormatError(
                f"{self.context}: group {group} holds {self.counts[group]} values but this base model's "
                f"{self.config.mode} layers need {expected}"
            )
        data, offset = self.coded[group]
        reader = ByteReader(data, context=self.context, offset=offset)
        values = decode_symbols(reader, expected, f"{group} values")
        reader.expect_end()
        return values


def _config_texts(cfg: AdapterConfig) -> tuple[str, str, str]:
    return cfg.prompt, ",".join(cfg.unet_targets), ",".join(cfg.vae_targets)


def _utf8(data: bytes, reader: ByteReader, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise reader.error(f"{name} is not valid UTF-8") from None


def quantize_groups(enhancer: Enhancer, steps: dict[str, float]) -> dict[str, np.ndarray]:
    """Grid indices of every transmitted tensor, concatenated per group."""
    out = {}
    for group, tensors in enhancer.groups().items():
        flat = torch.cat([t.detach().reshape(-1).cpu() for t in tensors]) if tensors else torch.zeros(0)
        out[group] = torch.round(flat / steps[group]).to(torch.int64).numpy()
    return out


def encode_adapter(
    enhancer: Enhancer,
    steps: dict[str, float],
    base_hash: bytes,
    mixture_hints: dict[str, tuple[float, float, float]] | None = None,
) -> bytes:
    """Code an enhancer's adapter (its current values, rounded to ``steps``).
    ``mixture_hints``: the trained rate model per group (see TrainResult)."""
    return write_adapter(enhancer.config, quantize_groups(enhancer, steps), steps, base_hash,
                         t=float(enhancer.t.detach()), strengths=tuple(float(v) for v in enhancer.strength),
                         mixture_hints=mixture_hints)


def write_adapter(
    cfg: AdapterConfig,
    values: dict[str, np.ndarray],
    steps: dict[str, float],
    base_hash: bytes,
    *,
    t: float,
    strengths: tuple[float, float],
    mixture_hints: dict[str, tuple[float, float, float]] | None = None,
) -> bytes:
    """The ENHANCER payload of grid indices ``values`` per group (in
    :data:`GROUPS` order) on ``steps``: the layout :func:`encode_adapter`
    writes, without an :class:`Enhancer` (for the fuzzer's seed)."""
    w = ByteWriter()
    w.u8(ADAPTER_VERSION)
    w.raw(base_hash)
    w.u8(_MODES.index(cfg.mode))
    if cfg.patch is None or cfg.overlap is None:
        raise ValueError("encode_adapter needs a resolved AdapterConfig (patch and overlap set)")
    for value in (cfg.prompt_rank, cfg.unet_rank, cfg.vae_rank, cfg.patch, cfg.overlap):
        w.varint(value)
    for text, default in zip(_config_texts(cfg), _config_texts(AdapterConfig())):
        w.u8(0 if text == default else 1)
        if text != default:
            w.blob(text.encode("utf-8"))
    w.f32(t)
    for strength in strengths:  # luma, chroma
        w.f32(strength)
    for group in GROUPS:
        w.f64(steps[group])
        w.varint(len(values[group]))
        hint = (mixture_hints[group],) if mixture_hints and group in mixture_hints else ()
        w.raw(encode_symbols(values[group], mixture_hints=hint))
    return w.getvalue()


def decode_adapter(payload: bytes, *, context: str = "ENHANCER") -> CodedAdapter:
    """Parse an ENHANCER payload; raises GFixFormatError (prefixed with
    ``context``, e.g. the file's name and the section) on any inconsistency.
    The values are not decoded here (memory stays of the payload's size);
    :meth:`CodedAdapter.group_values` decodes a group once its count is known."""
    r = ByteReader(payload, context=context)
    version = r.u8("adapter version")
    if version not in READABLE_VERSIONS:
        raise r.error(f"unsupported adapter version {version}")
    base_hash = r.raw(32, "base hash")
    mode_index = r.u8("mode")
    if mode_index >= len(_MODES):
        raise r.error(f"unknown adapter mode {mode_index}")
    ranks = [r.varint(name, maximum=1 << 16) for name in ("prompt rank", "unet rank", "vae rank")]
    patch = r.varint("patch", maximum=1 << 14)
    overlap = r.varint("overlap", maximum=1 << 13) if version >= 2 else 0
    texts = []
    for name, default in zip(("prompt", "unet targets", "vae targets"), _config_texts(AdapterConfig())):
        flag = r.u8(f"{name} flag")
        if flag > 1:
            raise r.error(f"{name}: unknown flag {flag}")
        texts.append(default if flag == 0 else _utf8(r.blob(name), r, name))
    try:
        config = AdapterConfig(
            mode=_MODES[mode_index], prompt_rank=ranks[0], unet_rank=ranks[1], vae_rank=ranks[2],
            unet_targets=tuple(filter(None, texts[1].split(","))), vae_targets=tuple(filter(None, texts[2].split(","))),
            prompt=texts[0], patch=patch, overlap=overlap,
        )
    except ValueError as exc:
        raise r.error(f"invalid adapter configuration: {exc}") from None
    t = r.f32("timestep")
    if not np.isfinite(t):
        raise r.error("timestep is not finite")
    if version >= 4:
        strengths = (r.f32("luma strength"), r.f32("chroma strength"))
    else:
        strengths = (r.f32("strength"),) * 2 if version == 3 else (1.0, 1.0)
    for name, strength in zip(("luma", "chroma"), strengths):
        if not (np.isfinite(strength) and 0.0 <= strength <= 1.0):
            raise r.error(f"{name} strength {strength} outside [0, 1]")
    if not any(strengths):
        raise r.error("luma and chroma strengths are both 0 (an adapter that changes nothing is not written)")
    steps, counts, coded = {}, {}, {}
    for group in GROUPS:
        steps[group] = r.f64(f"{group} step")
        if not (np.isfinite(steps[group]) and steps[group] > 0):
            raise r.error(f"{group}: invalid quantisation step {steps[group]}")
        counts[group] = r.varint(f"{group} count", maximum=MAX_VALUES)
        start = r.pos
        skip_symbols(r, counts[group], f"{group} values")
        coded[group] = (bytes(payload[start:r.pos]), start)
    r.expect_end()
    return CodedAdapter(base_hash=base_hash, config=config, t=t, steps=steps, counts=counts, coded=coded,
                        luma_strength=strengths[0], chroma_strength=strengths[1], context=context)


def check_base_hash(coded: CodedAdapter, base_hash: bytes) -> None:
    """Raise :class:`BaseMismatchError` unless the adapter was trained on the base whose hash is ``base_hash``."""
    if coded.base_hash != base_hash:
        raise BaseMismatchError(
            f"the adapter was trained on base model {coded.base_hash.hex()[:16]}..., but the given base is "
            f"{base_hash.hex()[:16]}...; decode with the same SD-Turbo copy the encoder used"
        )


def dequantized(coded: CodedAdapter, group: str, sizes: list[int]) -> list[torch.Tensor]:
    """The float32 values of ``group`` split into flat tensors of ``sizes`` (the
    group's tensors in :meth:`Enhancer.groups` order); raises GFixFormatError
    when the coded count differs, before decoding (:meth:`CodedAdapter.group_values`).
    :func:`apply_adapter` and the lean runtime (which rebuilds no
    :class:`Enhancer`) both read the values through here."""
    values = coded.group_values(group, sum(sizes))
    flat = torch.from_numpy(values).to(torch.float32) * coded.steps[group]
    out, offset = [], 0
    for size in sizes:
        out.append(flat[offset: offset + size])
        offset += size
    return out


def apply_adapter(enhancer: Enhancer, coded: CodedAdapter, base_hash: bytes) -> None:
    """Load decoded values into ``enhancer`` (built with ``coded.config`` on a
    base whose hash is ``base_hash``)."""
    check_base_hash(coded, base_hash)
    with torch.no_grad():
        for group, tensors in enhancer.groups().items():
            parts = dequantized(coded, group, [t.numel() for t in tensors])
            for tensor, part in zip(tensors, parts):
                tensor.copy_(part.reshape(tensor.shape))
        enhancer.t.fill_(coded.t)
        enhancer.strength.copy_(torch.tensor(coded.strengths))
