"""Enhancer entry points for the encoder and the decoder.

Encoder: :func:`fit_adapter` trains an adapter on (decoded Gaussian frame,
original frame) pairs, codes it, enhances the frames exactly as the decoder
will, and decides whether the adapter is worth its bits (:class:`AdapterDecision`,
the codec's mode decision: keep it only when it lowers the training objective
``rate + lambda * distortion`` on the encoder's own reconstruction).
Decoder: :func:`load_enhancer` rebuilds the enhancer from a local base model
and a coded adapter. Both sides enhance frames with :func:`enhance_frame`, so
the encoder's evaluation and the decoder's output are computed the same way.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from gfix_sdk.enhance.adapter import CodedAdapter, apply_adapter, check_base_hash, decode_adapter, encode_adapter
from gfix_sdk.enhance.base import base_hash, load_base
from gfix_sdk.enhance.losses import DistortionLoss, make_loss
from gfix_sdk.enhance.model import LUMA, AdapterConfig, Enhancer
from gfix_sdk.enhance.tiling import enhance_frame
from gfix_sdk.enhance.train import TrainConfig, TrainResult, train_enhancer
from gfix_sdk.errors import GFixError, GFixFormatError

#: At most this many frames (evenly spaced) are scored for the keep/drop decision.
DECISION_FRAMES = 32
#: Default fidelity bound of the encoder (dB of mean PSNR the enhancer may cost).
DEFAULT_MAX_PSNR_DROP = 0.4
#: Default VMAF bound (points of mean VMAF the enhancer may cost): no real
#: loss, a twelfth of the ~6 points Netflix reports per just-noticeable
#: difference. A bound of 0 is below VMAF's own noise: rounding alone after a
#: chroma-only change moved it by up to 0.07 in our measurements.
DEFAULT_MAX_VMAF_DROP = 0.5
#: Strengths the encoder tries for luma and for chroma, strongest first
#: (multiples of 1/8: exact in the f32 fields; 0 leaves that part unchanged).
STRENGTHS = tuple(k / 8 for k in range(8, -1, -1))
#: Frames (evenly spaced) on which candidate strengths are ranked by the training objective.
RANKING_FRAMES = 8


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class EnhanceSettings:
    """How ``gfix encode --enhance`` builds and trains the enhancer. Unset
    patch, overlap, steps and learning rate take the base model's defaults
    (:class:`~gfix_sdk.enhance.base.BaseDefaults`)."""

    base: str | None = None  #: local SD-Turbo directory (None: $GFIX_BASE)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str | None = None  #: None: CUDA when available, else CPU
    #: Write the adapter even when it does not lower rate + lambda x distortion
    #: (the do-no-harm decision still runs and is reported).
    always_keep: bool = False
    #: Fidelity bound: the enhanced video's mean PSNR may fall at most this many
    #: dB below the Gaussian frames' (the encoder scales the enhancer's change,
    #: see :func:`candidate_strengths`); None: no bound.
    max_psnr_drop: float | None = DEFAULT_MAX_PSNR_DROP
    #: VMAF bound: the enhanced video's mean VMAF may fall at most this many
    #: points below the Gaussian frames' (0: not worse); None: no bound. Needs
    #: an ffmpeg with libvmaf (imageio-ffmpeg's); without one the bound is
    #: skipped and the decision's reason says so.
    max_vmaf_drop: float | None = DEFAULT_MAX_VMAF_DROP

    def __post_init__(self) -> None:
        if self.max_psnr_drop is not None and not self.max_psnr_drop >= 0:
            raise ValueError(f"max_psnr_drop must be >= 0 dB or None, got {self.max_psnr_drop}")
        if self.max_vmaf_drop is not None and not self.max_vmaf_drop >= 0:
            raise ValueError(f"max_vmaf_drop must be >= 0 or None, got {self.max_vmaf_drop}")


@dataclass(frozen=True)
class AdapterDecision:
    """The encoder's keep/drop decision for the adapter, and what it was based on.

    Both objectives are in the training loss's units: ``lambda * distortion``
    plus, for the enhanced frames, the adapter's coded bits per pixel of the video."""

    kept: bool  #: the adapter is written to the file
    reason: str  #: one sentence, shown by the CLI and ``gfix info``
    loss: str  #: the distortion measure (the one training minimised)
    lmbda: float  #: its weight
    adapter_bits_per_pixel: float
    distortion_gaussian: float  #: mean distortion of the Gaussian frames
    distortion_enhanced: float  #: mean distortion of the enhanced frames
    frames_scored: int
    #: Scales of the enhancer's change to the frames' luma and chroma (1: as
    #: trained; below 1 the encoder's fidelity bounds took some back, see
    #: :func:`candidate_strengths`).
    luma_strength: float = 1.0
    chroma_strength: float = 1.0

    @property
    def objective_gaussian(self) -> float:
        return self.lmbda * self.distortion_gaussian

    @property
    def objective_enhanced(self) -> float:
        return self.adapter_bits_per_pixel + self.lmbda * self.distortion_enhanced

    def to_json(self) -> dict:
        return {**asdict(self), "objective_gaussian": self.objective_gaussian,
                "objective_enhanced": self.objective_enhanced}


@dataclass
class FittedAdapter:
    payload: bytes  #: the ENHANCER section payload
    enhancer: Enhancer  #: holding exactly the decoded adapter
    result: TrainResult  #: training record
    coded: CodedAdapter  #: the payload, parsed back
    decision: AdapterDecision  #: whether the encoder keeps it
    enhanced: np.ndarray  #: ``(T, H, W, 3)`` uint8 frames as the decoder will output them


def fit_adapter(
    originals: np.ndarray,
    rendered: np.ndarray,
    settings: EnhanceSettings = EnhanceSettings(),
    *,
    progress: bool = True,
) -> FittedAdapter:
    """Train and code an adapter for one video (``(T, H, W, 3)`` uint8 arrays),
    enhance its frames and decide whether to keep it (see :class:`AdapterDecision`)."""
    base = load_base(settings.base)
    digest = base_hash(base)
    device = torch.device(settings.device) if settings.device else default_device()
    enhancer = Enhancer(base, settings.adapter).to(device)
    train = settings.train.resolved(base.defaults)
    loss_fn = make_loss(train.loss, train.lpips_weights, l2_weight=train.l2_weight,
                        vmaf_weight=train.vmaf_weight).to(device)
    result = train_enhancer(enhancer, rendered, originals, train, loss_fn=loss_fn, progress=progress)
    enhancer.eval()
    config = enhancer.config

    def code_and_enhance() -> tuple[bytes, CodedAdapter, np.ndarray]:
        payload = encode_adapter(enhancer, result.steps, digest, result.mixture_hints)
        coded = decode_adapter(payload)
        apply_adapter(enhancer, coded, digest)  # evaluate exactly what the decoder will rebuild
        run = enhancer_runner(enhancer)
        enhanced = np.stack([enhance_frame(run, torch.from_numpy(f), config.patch, config.overlap).cpu().numpy()
                             for f in rendered])
        return payload, coded, enhanced

    payload, coded, enhanced = code_and_enhance()
    strengths, note = (1.0, 1.0), ""
    with FidelityBounds.measure(originals, rendered, settings.max_psnr_drop, settings.max_vmaf_drop) as bounds:
        if bounds.active:
            candidates = rank_strengths(candidate_strengths(rendered, enhanced, bounds), rendered, enhanced,
                                        originals, loss_fn)
            for strengths in candidates:  # the best first; the exact re-enhanced frames must keep the bounds too
                if strengths != (1.0, 1.0):
                    with torch.no_grad():
                        enhancer.strength.copy_(torch.tensor(strengths))
                    payload, coded, enhanced = code_and_enhance()
                if bounds.kept_by(enhanced):
                    break
            else:
                strengths = (0.0, 0.0)
            note = bounds.describe()
    decision = decide(originals, rendered, enhanced, loss_fn, lmbda=train.lmbda,
                      adapter_bits=8 * len(payload), always_keep=settings.always_keep)
    if strengths == (0.0, 0.0):
        reason = f"dropped: at every luma and chroma strength the enhanced frames break {note}"
        if settings.always_keep:
            reason = "kept on request (--keep-adapter), although " + reason.removeprefix("dropped: ")
            with torch.no_grad():  # an adapter that changes nothing is not a valid payload: keep it as trained
                enhancer.strength.fill_(1.0)
            payload, coded, enhanced = code_and_enhance()
        decision = replace(decision, kept=settings.always_keep, reason=reason)
    elif strengths != (1.0, 1.0):
        decision = replace(decision, reason=f"{decision.reason}; at luma strength {strengths[0]:g}, chroma "
                                            f"strength {strengths[1]:g} ({note})")
    elif note:
        decision = replace(decision, reason=f"{decision.reason}; full strength keeps {note}")
    luma, chroma = (float(v) for v in enhancer.strength) if decision.kept else (0.0, 0.0)
    decision = replace(decision, luma_strength=luma, chroma_strength=chroma)
    return FittedAdapter(payload=payload, enhancer=enhancer, result=result, coded=coded, decision=decision,
                         enhanced=enhanced)


def mean_psnr(frames: np.ndarray, originals: np.ndarray) -> float:
    """Mean over frames of each ``uint8`` frame's PSNR in dB (the metrics' own :func:`~gfix_sdk.metrics.pixel.psnr`)."""
    from gfix_sdk.metrics.pixel import psnr

    return float(np.mean([psnr(f, o) for f, o in zip(frames, originals, strict=True)]))


@dataclass
class FidelityBounds:
    """The encoder's fidelity bounds on one video: floors for mean PSNR and
    mean VMAF, measured on the Gaussian frames (the encoder's own reconstruction).

    A context manager: the originals are converted for libvmaf once, into a
    temporary file that :meth:`close` deletes."""

    originals: np.ndarray
    psnr_floor: float | None  #: dB; None: no PSNR bound
    vmaf_floor: float | None  #: None: no VMAF bound (not asked for, or no libvmaf)
    max_psnr_drop: float | None
    max_vmaf_drop: float | None
    vmaf_missing: str = ""  #: why the asked-for VMAF bound is not applied
    _vmaf: Callable[[np.ndarray], float] | None = None
    _close: Callable[[], None] | None = None

    @classmethod
    def measure(cls, originals: np.ndarray, rendered: np.ndarray, max_psnr_drop: float | None,
                max_vmaf_drop: float | None) -> FidelityBounds:
        psnr_floor = None if max_psnr_drop is None else mean_psnr(rendered, originals) - max_psnr_drop
        vmaf, missing, vmaf_floor = None, "", None
        if max_vmaf_drop is not None:
            from gfix_sdk.metrics.result import MetricUnavailable
            from gfix_sdk.metrics.vmaf import SequenceVMAF

            try:
                scorer = SequenceVMAF.load()
            except MetricUnavailable as exc:
                missing = str(exc)
            else:
                reference = scorer.reference(originals)

                def vmaf(frames: np.ndarray) -> float:
                    return float(scorer(reference, frames).value)

                try:
                    vmaf_floor = vmaf(rendered) - max_vmaf_drop
                except BaseException:
                    reference.close()
                    raise
                return cls(originals, psnr_floor, vmaf_floor, max_psnr_drop, max_vmaf_drop, missing, vmaf,
                           reference.close)
        return cls(originals, psnr_floor, vmaf_floor, max_psnr_drop, max_vmaf_drop, missing)

    def close(self) -> None:
        """Delete the converted originals (idempotent)."""
        if self._close is not None:
            self._close()

    def __enter__(self) -> FidelityBounds:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def active(self) -> bool:
        return self.psnr_floor is not None or self.vmaf_floor is not None

    def keeps_psnr(self, frames: np.ndarray) -> bool:
        return self.psnr_floor is None or mean_psnr(frames, self.originals) >= self.psnr_floor

    def keeps_vmaf(self, frames: np.ndarray) -> bool:
        return self.vmaf_floor is None or self._vmaf(frames) >= self.vmaf_floor

    def kept_by(self, frames: np.ndarray) -> bool:
        return self.keeps_psnr(frames) and self.keeps_vmaf(frames)

    def describe(self) -> str:
        """E.g. "the fidelity bounds: mean PSNR at most 0.4 dB and mean VMAF at most 0 below the Gaussian frames'"."""
        parts = []
        if self.psnr_floor is not None:
            parts.append(f"mean PSNR at most {self.max_psnr_drop:g} dB")
        if self.vmaf_floor is not None:
            parts.append(f"mean VMAF at most {self.max_vmaf_drop:g}")
        text = f"the fidelity bounds: {' and '.join(parts)} below the Gaussian frames'" if parts else ""
        if self.vmaf_missing:
            text += f"{'; ' if text else ''}VMAF bound not applied ({self.vmaf_missing})"
        return text


class ScaledChange:
    """The enhancer's change to ``rendered`` (``enhanced - rendered``) and its
    luma, split once per video; :meth:`frames` gives ``rendered`` plus the
    change with its luma scaled by ``luma`` and its chroma by ``chroma`` (as
    :func:`~gfix_sdk.enhance.model.scale_change`), rounded to ``uint8``. An
    estimate: the decoder scales before rounding."""

    def __init__(self, rendered: np.ndarray, enhanced: np.ndarray) -> None:
        self.rendered = rendered
        self.change = enhanced.astype(np.float32) - rendered.astype(np.float32)
        self.change_luma = (self.change @ np.asarray(LUMA, np.float32))[..., None]

    def frames(self, luma: float, chroma: float, picks: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The scaled frames (only those at ``picks``)."""
        scaled = chroma * self.change[picks] + (luma - chroma) * self.change_luma[picks]
        return np.clip(np.round(self.rendered[picks] + scaled), 0, 255).astype(np.uint8)


def candidate_strengths(rendered: np.ndarray, enhanced: np.ndarray, bounds: FidelityBounds) -> list[tuple[float, float]]:
    """For each luma strength in :data:`STRENGTHS`, the largest chroma strength
    whose frames keep ``bounds`` (estimated by :class:`ScaledChange`); pairs
    that change nothing are left out. VMAF reads luma only, so the (costly)
    VMAF check runs once per luma strength, on the pair's frames."""
    change = ScaledChange(rendered, enhanced)
    candidates = []
    for luma in STRENGTHS:
        chroma = next((c for c in STRENGTHS if bounds.keeps_psnr(change.frames(luma, c))), None)
        if chroma is None or (luma, chroma) == (0.0, 0.0):
            continue
        if bounds.keeps_vmaf(change.frames(luma, chroma)):
            candidates.append((luma, chroma))
    return candidates


def rank_strengths(candidates: list[tuple[float, float]], rendered: np.ndarray, enhanced: np.ndarray,
                   originals: np.ndarray, loss_fn: DistortionLoss) -> list[tuple[float, float]]:
    """``candidates`` best first: by the training objective (``loss_fn``) of
    their frames on up to :data:`RANKING_FRAMES` frames. The trained strengths
    (1, 1), when among them, come first without scoring."""
    if (1.0, 1.0) in candidates or len(candidates) < 2:
        return sorted(candidates, reverse=True)
    picks = np.unique(np.linspace(0, len(originals) - 1, min(len(originals), RANKING_FRAMES)).round().astype(int))
    change = ScaledChange(rendered[picks], enhanced[picks])
    score = {pair: _mean_loss(loss_fn, change.frames(*pair), originals[picks]) for pair in candidates}
    return sorted(candidates, key=lambda pair: (score[pair], tuple(-v for v in pair)))


def decide(originals: np.ndarray, rendered: np.ndarray, enhanced: np.ndarray, loss_fn: DistortionLoss, *,
           lmbda: float, adapter_bits: int, always_keep: bool = False) -> AdapterDecision:
    """Compare ``lambda * D(rendered)`` with ``R / pixels + lambda * D(enhanced)``
    on up to :data:`DECISION_FRAMES` frames (whole frames, the loss the adapter trained on)."""
    count = len(originals)
    picks = np.unique(np.linspace(0, count - 1, min(count, DECISION_FRAMES)).round().astype(int))

    def distortion(frames: np.ndarray) -> float:
        return _mean_loss(loss_fn, frames[picks], originals[picks])

    pixels = float(np.prod(originals.shape[:3]))
    d_gauss, d_enh = distortion(rendered), distortion(enhanced)
    bpp = adapter_bits / pixels
    helps = bpp + lmbda * d_enh < lmbda * d_gauss
    if helps:
        reason = (f"kept: enhancement lowers {loss_fn.description} from {d_gauss:.4f} to {d_enh:.4f} "
                  f"for {bpp:.5f} bits per pixel")
    else:
        reason = (f"dropped: enhancement gives {loss_fn.description} {d_enh:.4f} vs {d_gauss:.4f} without it; "
                  f"with its {bpp:.5f} bits per pixel it does not lower rate + {lmbda:g} x distortion")
        if always_keep:
            reason = "kept on request (--keep-adapter), although " + reason.removeprefix("dropped: ")
    return AdapterDecision(kept=helps or always_keep, reason=reason, loss=loss_fn.description, lmbda=lmbda,
                           adapter_bits_per_pixel=bpp, distortion_gaussian=d_gauss, distortion_enhanced=d_enh,
                           frames_scored=len(picks))


def _mean_loss(loss_fn: DistortionLoss, frames: np.ndarray, originals: np.ndarray) -> float:
    """Mean of ``loss_fn`` over ``uint8`` frames, one whole frame at a time."""
    weight = next(itertools.chain(loss_fn.parameters(), loss_fn.buffers()), None)
    device = weight.device if weight is not None else torch.device("cpu")
    total = 0.0
    with torch.no_grad():
        for frame, original in zip(frames, originals, strict=True):
            to = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float().div(255).to(device)  # noqa: E731
            total += float(loss_fn(to(frame), to(original)))
    return total / len(frames)


def load_enhancer(payload: bytes, base: str | os.PathLike[str] | None = None,
                  device: str | torch.device | None = None, *,
                  context: str = "ENHANCER") -> tuple[Enhancer, CodedAdapter]:
    """Rebuild the enhancer of a coded adapter on a local base model.

    The base's hash and mLoRA factors come from the per-base caches of
    :mod:`gfix_sdk.runtime.factors` (computed and cached on the first call for
    a base: the hash over the weights, the float64 SVDs), which also lets the
    ONNX Runtime and TensorRT decoders skip this function for later videos.

    Raises:
        GFixFormatError: the payload is malformed, or its configuration (target
            layers, ranks) does not fit the base model; ``context`` names it.
    """
    from gfix_sdk.runtime.factors import factor_set_for, known_base_hash, remember_base_hash

    coded = decode_adapter(payload, context=context)
    model = load_base(base)
    digest = known_base_hash(model.path)
    if digest is None:
        digest = base_hash(model)  # before Enhancer injects adapters into the base's modules
        remember_base_hash(model.path, digest)
    check_base_hash(coded, digest)  # a wrong base fails before any SVD
    try:
        enhancer = Enhancer(model, coded.config, factors=factor_set_for(model, digest, coded.config))
    except GFixError:
        raise
    except (ValueError, KeyError) as exc:
        # The configuration came from the file: a layer list or rank the base
        # cannot take is a property of the file, not a bug here.
        raise GFixFormatError(f"{context}: the adapter's configuration does not fit the base "
                              f"model ({type(exc).__name__}: {exc})") from exc
    apply_adapter(enhancer, coded, digest)
    return enhancer.to(torch.device(device) if device else default_device()).eval(), coded


@torch.no_grad()
def enhancer_runner(enhancer: Enhancer) -> Callable[[Tensor], Tensor]:
    """The batch function of a PyTorch enhancer (inputs moved to its device)."""
    device = enhancer.t.device

    def run(patches: Tensor) -> Tensor:
        with torch.no_grad():
            return enhancer(patches.to(device))

    return run
