"""The frozen base model: a local diffusers-format SD-Turbo directory.

GFix adapts a single-step diffusion model per video; the base weights never
travel in the bitstream, so encoder and decoder each load the same local
copy. Nothing is fetched from a model hub: a missing or incomplete directory
is an error that lists what is missing and how to obtain SD-Turbo.

:func:`build_tiny_base` writes a small model with the same classes and wiring
(4-level VAE, cross-attention U-Net, CLIP text encoder, an offline byte-level
tokenizer, SD-Turbo's noise schedule) for tests and the offline demo.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from gfix_sdk.errors import GFixError

BASE_ENV = "GFIX_BASE"
PARTS = {
    "unet": ("config.json",),
    "vae": ("config.json",),
    "text_encoder": ("config.json",),
    "tokenizer": (),
    "scheduler": ("scheduler_config.json",),
}
WEIGHT_SUFFIXES = (".safetensors", ".bin")
#: GFix's own additions to a diffusers directory (optional; absent for SD-Turbo).
GFIX_DIR = "gfix"
SKIPS_FILE = "skips.safetensors"
DEFAULTS_FILE = "defaults.json"
WIRING_FILE = "wiring.json"
#: The text the prompt embedding starts from (the paper's).
DEFAULT_PROMPT = "remove degradations"
HOW_TO_GET = (
    "GFix needs a local copy of SD-Turbo in diffusers format (folders unet/, vae/, "
    "text_encoder/, tokenizer/, scheduler/). On a machine with internet access run\n"
    "    huggingface-cli download stabilityai/sd-turbo --local-dir /path/to/sd-turbo\n"
    "then pass --base /path/to/sd-turbo (or set GFIX_BASE). For tests and the offline demo, "
    "`gfix base --tiny PATH` writes a small model with the same structure."
)


class BaseModelError(GFixError, FileNotFoundError):
    """The base model directory is missing, incomplete or unreadable."""


@dataclass(frozen=True)
class BaseDefaults:
    """Per-video training defaults that suit a base model.

    SD-Turbo gets the paper's (512-pixel patches, learning rate 0.05, 2,000
    steps); a base directory may record its own in ``gfix/defaults.json``
    (the tiny stand-in does: values measured on it). Every field can still be
    overridden per encode."""

    patch: int = 512  #: enhancer patch side in pixels
    overlap: int = 64  #: minimum overlap of neighbouring patches
    lr: float = 0.05  #: adapter learning rate
    steps: int = 2000  #: adapter training steps
    crop: int | None = None  #: side of the training crops (None: the patch)
    #: Weight of the pixel (L2) term in Difix's loss (Difix and the paper: 1).
    l2_weight: float = 1.0
    #: Weight of the VMAF-NEG fidelity term (gfix_sdk.enhance.losses; the paper: none).
    vmaf_weight: float = 0.0
    source: str = "the paper's SD-Turbo settings"  #: where these values come from

    @classmethod
    def from_json(cls, record: dict) -> BaseDefaults:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


@dataclass(frozen=True)
class OutputWiring:
    """How the VAE decoder's output becomes the enhanced frame (``gfix/wiring.json``).

    SD-Turbo and Difix: the decoder's output *is* the frame (the defaults). A
    small base cannot carry a frame through its x8 latent losslessly, so the
    tiny stand-in is ``residual``: the decoder predicts a correction added to
    the input, and training starts from the identity. With
    ``luma_highpass_sigma`` > 0 the correction's luma loses its low
    frequencies (a Gaussian blur of that sigma, in pixels, is subtracted):
    Gaussian splats already get smooth luma right, and on held-out training
    sequences that part of the correction lowered VMAF without helping LPIPS
    or PSNR; chroma and luma detail pass unchanged.
    """

    residual: bool = False
    luma_highpass_sigma: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.residual, bool):
            raise ValueError("wiring: 'residual' must be true or false")
        if not isinstance(self.luma_highpass_sigma, (int, float)) or not 0 <= self.luma_highpass_sigma <= 16:
            raise ValueError("wiring: 'luma_highpass_sigma' must be a number in [0, 16]")
        if self.luma_highpass_sigma and not self.residual:
            raise ValueError("wiring: 'luma_highpass_sigma' needs a residual base")

    @classmethod
    def from_json(cls, record: dict) -> OutputWiring:
        unknown = set(record) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"wiring: unknown keys {sorted(unknown)}")
        return cls(**record)


@dataclass
class BaseModel:
    """The frozen parts GFix builds its enhancer from (all on CPU, eval mode)."""

    path: Path  #: the directory it was loaded from
    unet: torch.nn.Module  #: diffusers UNet2DConditionModel
    vae: torch.nn.Module  #: diffusers AutoencoderKL
    text_encoder: torch.nn.Module  #: transformers CLIPTextModel
    tokenizer: object  #: transformers CLIPTokenizer
    alphas_cumprod: Tensor  #: (T,) float64 noise schedule of the scheduler
    prediction_type: str  #: "epsilon" or "v_prediction"
    #: Pretrained encoder->decoder skip convolutions (``gfix/skips.safetensors``),
    #: one ``(out, in, 1, 1)`` weight per VAE decoder up block; None: the
    #: near-zero initialisation (SD-Turbo itself has none).
    skips: list[Tensor] | None = None
    #: Per-video training defaults (``gfix/defaults.json``, else the paper's).
    defaults: BaseDefaults = field(default_factory=BaseDefaults)
    #: How the decoder's output becomes the frame (``gfix/wiring.json``; SD-Turbo: plain).
    wiring: OutputWiring = field(default_factory=OutputWiring)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])


def resolve_base_path(path: str | os.PathLike[str] | None) -> Path:
    """``path``, else ``$GFIX_BASE``; raises :class:`BaseModelError` if neither is set."""
    chosen = path if path is not None else os.environ.get(BASE_ENV)
    if not chosen:
        raise BaseModelError(f"no base model given (--base PATH or {BASE_ENV}).\n{HOW_TO_GET}")
    return Path(chosen).expanduser()


def check_base_dir(path: Path) -> None:
    """Raise :class:`BaseModelError` listing every missing part of a base directory."""
    if not path.is_dir():
        raise BaseModelError(f"base model directory {path} does not exist.\n{HOW_TO_GET}")
    missing = []
    for part, files in PARTS.items():
        folder = path / part
        if not folder.is_dir():
            missing.append(f"{part}/")
            continue
        missing += [f"{part}/{name}" for name in files if not (folder / name).is_file()]
        if part in ("unet", "vae", "text_encoder") and not any(
            p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir()
        ):
            missing.append(f"{part}/ weights (*.safetensors)")
        if part == "tokenizer" and not (
            (folder / "tokenizer.json").is_file()
            or ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file())
        ):
            missing.append("tokenizer/vocab.json + merges.txt (or tokenizer.json)")
    if missing:
        raise BaseModelError(f"base model {path} is incomplete; missing: {', '.join(missing)}.\n{HOW_TO_GET}")


@contextlib.contextmanager
def _quiet_loading():
    """Silence diffusers/transformers progress bars and info logs while loading
    (our own progress reporting stays in charge), restoring them afterwards."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    levels = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    bars = transformers_logging.is_progress_bar_enabled()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(levels[0])
        transformers_logging.set_verbosity(levels[1])
        if bars:
            transformers_logging.enable_progress_bar()


def load_base(path: str | os.PathLike[str] | None = None) -> BaseModel:
    """Load a base model from a local diffusers directory (never from a hub)."""
    base = resolve_base_path(path)
    check_base_dir(base)
    # Belt and braces: even a mistyped path must not turn into a download.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    try:
        with _quiet_loading():
            unet = UNet2DConditionModel.from_pretrained(base / "unet", local_files_only=True,
                                                        torch_dtype=torch.float32)
            vae = AutoencoderKL.from_pretrained(base / "vae", local_files_only=True, torch_dtype=torch.float32)
            text_encoder = CLIPTextModel.from_pretrained(base / "text_encoder", local_files_only=True,
                                                         torch_dtype=torch.float32)
            tokenizer = CLIPTokenizer.from_pretrained(base / "tokenizer", local_files_only=True)
        config = json.loads((base / "scheduler" / "scheduler_config.json").read_text())
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise BaseModelError(f"cannot load the base model from {base}: {exc}") from exc
    # Only the noise schedule is used (no sampling loop), so any scheduler
    # config with the standard beta parameters will do.
    schedule = DDPMScheduler(
        num_train_timesteps=config.get("num_train_timesteps", 1000),
        beta_start=config.get("beta_start", 0.00085),
        beta_end=config.get("beta_end", 0.012),
        beta_schedule=config.get("beta_schedule", "scaled_linear"),
    )
    for module in (unet, vae, text_encoder):
        module.eval().requires_grad_(False)
    skips, defaults, wiring = _load_gfix_extras(base)
    return BaseModel(
        path=base, unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        alphas_cumprod=schedule.alphas_cumprod.to(torch.float64),
        prediction_type=config.get("prediction_type", "epsilon"), skips=skips, defaults=defaults,
        wiring=wiring,
    )


def _load_gfix_extras(base: Path) -> tuple[list[Tensor] | None, BaseDefaults, OutputWiring]:
    """The optional ``gfix/`` folder: pretrained skip convolutions, training
    defaults and the output wiring."""
    folder = base / GFIX_DIR
    skips, defaults, wiring = None, BaseDefaults(), OutputWiring()
    try:
        if (folder / SKIPS_FILE).is_file():
            from safetensors.torch import load_file

            tensors = load_file(str(folder / SKIPS_FILE))
            skips = [tensors[f"skip.{i}"].to(torch.float32) for i in range(len(tensors))]
        if (folder / DEFAULTS_FILE).is_file():
            defaults = BaseDefaults.from_json(json.loads((folder / DEFAULTS_FILE).read_text()))
        if (folder / WIRING_FILE).is_file():
            wiring = OutputWiring.from_json(json.loads((folder / WIRING_FILE).read_text()))
    except (OSError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BaseModelError(f"cannot read {folder}: {exc}") from exc
    return skips, defaults, wiring


def save_gfix_extras(base_dir: str | os.PathLike[str], skips: list[Tensor] | None, defaults: BaseDefaults,
                     wiring: OutputWiring = OutputWiring()) -> None:
    """Write the ``gfix/`` folder of a base directory (see :func:`load_base`)."""
    from safetensors.torch import save_file

    folder = Path(base_dir) / GFIX_DIR
    folder.mkdir(parents=True, exist_ok=True)
    if skips is not None:
        save_file({f"skip.{i}": w.detach().to("cpu").contiguous() for i, w in enumerate(skips)},
                  str(folder / SKIPS_FILE))
    (folder / DEFAULTS_FILE).write_text(json.dumps(dataclasses.asdict(defaults), indent=2, sort_keys=True) + "\n")
    (folder / WIRING_FILE).write_text(json.dumps(dataclasses.asdict(wiring)) + "\n")


def prompt_embedding(base: BaseModel, text: str = DEFAULT_PROMPT) -> Tensor:
    """The text encoder's ``(tokens, width)`` embedding of ``text`` (padded to the tokenizer's length)."""
    with torch.no_grad():
        ids = base.tokenizer(text, padding="max_length", truncation=True,
                             max_length=base.tokenizer.model_max_length, return_tensors="pt").input_ids
        return base.text_encoder(ids)[0][0]


def base_hash(base: BaseModel) -> bytes:
    """SHA-256 over the base's weights (as float32, in name order), its noise
    schedule and its tokenizer vocabulary: a decoder with another base would
    rebuild different adapters, so the bitstream carries this and checks it."""
    digest = hashlib.sha256()
    for prefix, module in (("unet", base.unet), ("vae", base.vae), ("text", base.text_encoder)):
        for name, tensor in sorted(module.state_dict().items()):
            data = tensor.detach().to("cpu", torch.float32).contiguous()
            digest.update(f"{prefix}.{name}:{tuple(data.shape)}".encode())
            digest.update(data.numpy().tobytes())
    for i, weight in enumerate(base.skips or []):
        digest.update(f"skip.{i}:{tuple(weight.shape)}".encode())
        digest.update(weight.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    digest.update(base.alphas_cumprod.numpy().tobytes())
    digest.update(base.prediction_type.encode())
    if base.wiring != OutputWiring():  # absent for the default wiring, so existing bases keep their hash
        digest.update(json.dumps(dataclasses.asdict(base.wiring), sort_keys=True).encode())
    digest.update(json.dumps(base.tokenizer.get_vocab(), sort_keys=True).encode())
    return digest.digest()


def _byte_alphabet() -> list[str]:
    """The 256 printable characters byte-level BPE uses for the bytes 0..255."""
    visible = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    chars, extra = {}, 0
    for b in range(256):
        if b in visible:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def build_tiny_base(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a small random-weight model with SD-Turbo's classes and wiring.

    4-level VAE (AutoencoderKL, 4 latent channels, x8 downsampling), a
    cross-attention UNet2DConditionModel, a 2-layer CLIPTextModel, a CLIP
    byte-level BPE tokenizer with no merges (works offline), and SD-Turbo's
    scheduler config (scaled-linear betas 0.00085..0.012, 1000 steps, epsilon).
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    specials = ["<|startoftext|>", "<|endoftext|>"]
    alphabet = _byte_alphabet()
    vocab = {token: i for i, token in enumerate(specials + alphabet + [c + "</w>" for c in alphabet])}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    tokenizer.save_pretrained(out / "tokenizer")
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    ))
    text_encoder.save_pretrained(out / "text_encoder")
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, norm_num_groups=8, use_linear_projection=True,
    )
    unet.save_pretrained(out / "unet")
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
        block_out_channels=(16, 32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=64, scaling_factor=0.18215,
    )
    vae.save_pretrained(out / "vae")
    (out / "scheduler").mkdir(exist_ok=True)
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
        "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "epsilon",
        "timestep_spacing": "trailing",
    }, indent=2))
    (out / "README.md").write_text(
        "Tiny random-weight stand-in for SD-Turbo written by gfix_sdk.enhance.base.build_tiny_base.\n"
        "Same diffusers/transformers classes and wiring; for tests and the offline demo only.\n")
    return out
