"""Per-base caches for the lean runtime: mLoRA factors, base identity, and folding without the base model.

Rebuilding a video's enhancer costs two things besides reading the weights:
importing diffusers and transformers to build the base's modules, and the
float64 SVD of every adapted layer (:func:`~gfix_sdk.enhance.mlora.low_rank_factors`;
minutes on SD-Turbo's U-Net). Neither depends on the video, so both are done
once per base and machine:

* **Factor cache** (:class:`FactorSet`): for one base and adapter configuration
  (mode, ranks, targets, prompt), every adapted layer's ``(A, B)`` exactly as
  :func:`low_rank_factors` returns them (the same function on the same
  weights: the float64 SVD and its sign convention stay the source of truth),
  with the layer list (name, weight key, shape, rank), the prompt embedding
  and its factors, the base's skip weights and noise schedule. Stored as
  ``$GFIX_CACHE/factors/<base hash hex>.<config digest>.safetensors`` with a
  metadata header (format, base hash, configuration, layers, SHA-256 of the
  tensors), written to a temporary file and renamed into place; a file that
  is missing, truncated, of another base or configuration, or whose tensors
  do not match their digest or shapes, is ignored and rebuilt.
* **Base identity** (:func:`known_base_hash`): the base hash
  (:func:`~gfix_sdk.enhance.base.base_hash`, which needs the loaded modules)
  recorded against the directory's file list with sizes, modification times
  and inodes; any change to a file of the base makes the record stale and the
  next open computes the hash again.
* **Folding without the base model** (:func:`fold_weights`): a video's folded
  weights ``W + A M B`` (and skips, prompt, ``t``, ``abar``; the names and
  values of :meth:`FoldedEnhancer.folded_weights`) from the base's safetensors,
  the cached factors and the adapter's values; no diffusers, no transformers,
  no :class:`~gfix_sdk.enhance.model.Enhancer`. The cache records whether the
  base's safetensors hold exactly the modules' weights under the modules'
  names (checked when it is built); when they do not (e.g. a checkpoint with
  legacy names that diffusers converts), the runtime takes the full path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from gfix_sdk._fs import write_atomically
from gfix_sdk.paths import cache_root

FORMAT = "gfix-factors/1"
BASE_RECORD_FORMAT = 1
#: Weight files per diffusers part, as ``from_pretrained`` reads them (no variant).
WEIGHT_STEMS = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model"}
#: Folders of a base directory that its hash depends on (what ``load_base`` reads).
IDENTITY_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler", "gfix")
#: Folds below this many multiply-adds run on one thread (see :func:`fold_weights`).
SMALL_FOLD = 200_000_000

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- configuration
def config_record(config) -> dict:
    """The fields of an :class:`~gfix_sdk.enhance.model.AdapterConfig` that the factors depend on."""
    return {"mode": config.mode, "prompt_rank": config.prompt_rank, "unet_rank": config.unet_rank,
            "vae_rank": config.vae_rank, "unet_targets": list(config.unet_targets),
            "vae_targets": list(config.vae_targets), "prompt": config.prompt}


def config_digest(config) -> str:
    return hashlib.sha256(json.dumps(config_record(config), sort_keys=True).encode()).hexdigest()[:16]


def factor_path(base_hash: bytes, config, cache: Path | None = None) -> Path:
    """Where the factors of ``base_hash`` for ``config`` are cached."""
    return (cache or cache_root()) / "factors" / f"{base_hash.hex()}.{config_digest(config)}.safetensors"


# --------------------------------------------------------------------------- factor set
@dataclass(frozen=True)
class LayerRecord:
    """One adapted layer of the base."""

    group: str  #: "unet" or "vae" (the VAE decoder)
    name: str  #: module path inside the U-Net or the VAE decoder (the Enhancer's layer name)
    key: str  #: the weight's key in the part's safetensors file
    shape: tuple[int, ...]  #: the weight's shape
    rank: int  #: min(configured rank, the layer's rank cap)

    @property
    def folded_name(self) -> str:
        """The weight's name in :meth:`FoldedEnhancer.folded_weights` (and the ONNX initializer's)."""
        return f"unet.{self.name}.weight" if self.group == "unet" else f"vae.decoder.{self.name}.weight"

    @property
    def fan_in(self) -> int:
        return math.prod(self.shape[1:])


@dataclass
class FactorSet:
    """What a base contributes to every video's adapter (see the module docstring)."""

    base_hash: bytes
    config: dict  #: :func:`config_record` of the configuration
    layers: list[LayerRecord]  #: U-Net layers sorted by name, then the VAE decoder's
    factors: dict[tuple[str, str], tuple[Tensor, Tensor]]  #: (group, name) -> (A, B); empty for LoRA
    prompt: Tensor  #: the prompt embedding E (float32)
    prompt_factors: tuple[Tensor, Tensor]  #: its (A, B)
    skips: list[Tensor]  #: the base's skip convolution weights (or their initialisation)
    alphas_cumprod: Tensor  #: float64 noise schedule
    prediction_type: str
    #: The base's safetensors hold exactly the modules' adapted weights under
    #: the records' keys (checked at build): :func:`fold_weights` may use them.
    lean: bool

    @property
    def mode(self) -> str:
        return self.config["mode"]

    def layer_factors(self, group: str) -> dict[str, tuple[Tensor, Tensor]] | None:
        """``name -> (A, B)`` of one group (None for LoRA, which has no fixed factors)."""
        if self.mode != "mlora":
            return None
        return {name: pair for (g, name), pair in self.factors.items() if g == group}

    def check_layers(self, config, unet_names: Sequence[str], decoder_names: Sequence[str]) -> None:
        """Raise ValueError unless these factors were built for ``config`` and these layers."""
        if config_record(config) != self.config:
            raise ValueError("the cached factors were built for another adapter configuration")
        cached = [(r.group, r.name) for r in self.layers]
        wanted = [("unet", n) for n in unet_names] + [("vae", n) for n in decoder_names]
        if cached != wanted:
            raise ValueError("the cached factors list other layers than this base's")

    # ---------------------------------------------------------------- storage
    def tensors(self) -> dict[str, Tensor]:
        out = {"prompt.E": self.prompt, "prompt.A": self.prompt_factors[0], "prompt.B": self.prompt_factors[1],
               "alphas_cumprod": self.alphas_cumprod}
        out.update({f"skip.{i}": w for i, w in enumerate(self.skips)})
        for (group, name), (a, b) in self.factors.items():
            out[f"{group}/{name}/A"], out[f"{group}/{name}/B"] = a, b
        return {k: v.detach().to("cpu").contiguous() for k, v in out.items()}

    def metadata(self) -> dict[str, str]:
        return {
            "format": FORMAT, "base_hash": self.base_hash.hex(), "config": json.dumps(self.config, sort_keys=True),
            "layers": json.dumps([[r.group, r.name, r.key, list(r.shape), r.rank] for r in self.layers]),
            "prediction_type": self.prediction_type, "lean": "1" if self.lean else "0",
        }


def _tensors_digest(tensors: Mapping[str, Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.view(torch.uint8).numpy() if value.numel() else b"")
    return digest.hexdigest()


def build_factor_set(base, base_hash: bytes, config) -> FactorSet:
    """Compute the factor set of a loaded base (:class:`~gfix_sdk.enhance.base.BaseModel`,
    before any adapter is injected) for ``config``: exactly what :class:`Enhancer`
    computes when it is given no factors."""
    from gfix_sdk.enhance.base import prompt_embedding
    from gfix_sdk.enhance.mlora import find_targets, layer_rank_cap, low_rank_factors
    from gfix_sdk.enhance.model import skip_weights

    layers, factors = [], {}
    parts = (("unet", base.unet, config.unet_targets, config.unet_rank, ""),
             ("vae", base.vae.decoder, config.vae_targets, config.vae_rank, "decoder."))
    for group, module, targets, rank, prefix in parts:
        for name in find_targets(module, targets):
            weight = module.get_submodule(name).weight
            layers.append(LayerRecord(group, name, f"{prefix}{name}.weight", tuple(weight.shape),
                                      min(rank, layer_rank_cap(weight))))
            if config.mode == "mlora":
                factors[(group, name)] = low_rank_factors(weight, rank)
    # As ModulatedMatrix and SkipConv store them.
    prompt = prompt_embedding(base, config.prompt).detach().to(torch.float32).clone()
    result = FactorSet(
        base_hash=base_hash, config=config_record(config), layers=layers, factors=factors, prompt=prompt,
        prompt_factors=low_rank_factors(prompt, config.prompt_rank),
        skips=[w.detach().to("cpu", torch.float32).clone() for w in skip_weights(base)],
        alphas_cumprod=base.alphas_cumprod.detach().to("cpu", torch.float64).clone(),
        prediction_type=base.prediction_type, lean=False,
    )
    result.lean = _safetensors_match(base, layers)
    return result


def _safetensors_match(base, layers: Sequence[LayerRecord]) -> bool:
    """Whether the base directory's safetensors give exactly the modules' adapted weights."""
    modules = {"unet": base.unet, "vae": base.vae.decoder}
    try:
        for group, records in _by_group(layers).items():
            with BaseWeights(base.path, group) as loaded:
                for r in records:
                    expected = modules[group].get_submodule(r.name).weight.detach().to("cpu", torch.float32)
                    if not torch.equal(loaded[r.key], expected):
                        log.info("lean runtime off for %s: %s differs from the module's weight", base.path, r.key)
                        return False
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        log.info("lean runtime off for %s: %s", base.path, exc)
        return False
    return True


def _by_group(layers: Iterable[LayerRecord]) -> dict[str, list[LayerRecord]]:
    out: dict[str, list[LayerRecord]] = {}
    for r in layers:
        out.setdefault(r.group, []).append(r)
    return out


def save_factor_set(factors: FactorSet, path: Path) -> Path:
    """Write ``factors`` to ``path`` atomically (a uniquely named temporary file
    renamed into place: processes filling one cache at once each write their
    own, and the entry left is one whole file)."""
    from safetensors.torch import save_file

    tensors = factors.tensors()
    metadata = {**factors.metadata(), "digest": _tensors_digest(tensors)}
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_factor_set(base_hash: bytes, config, cache: Path | None = None) -> FactorSet | None:
    """The cached factors of ``base_hash`` for ``config``, or None when there are
    none or the file fails any check (then it is not trusted and gets rebuilt)."""
    path = factor_path(base_hash, config, cache)
    if not path.is_file():
        return None
    try:
        return _read_factor_set(path, base_hash, config)
    except Exception as exc:  # noqa: BLE001 - a damaged cache of any kind is only a cache miss
        log.warning("ignoring the factor cache %s (%s); it will be rebuilt", path, exc)
        return None


def _read_factor_set(path: Path, base_hash: bytes, config) -> FactorSet:
    from safetensors import safe_open

    from gfix_sdk.enhance.mlora import check_factors

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        if meta.get("base_hash") != base_hash.hex():
            raise ValueError("made for another base")
        record = json.loads(meta["config"])
        if record != config_record(config):
            raise ValueError("made for another adapter configuration")
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    if _tensors_digest(tensors) != meta.get("digest"):
        raise ValueError("tensors do not match their digest")
    layers = [LayerRecord(g, n, k, tuple(s), int(r)) for g, n, k, s, r in json.loads(meta["layers"])]
    factors = {}
    if record["mode"] == "mlora":
        for r in layers:
            pair = (tensors[f"{r.group}/{r.name}/A"], tensors[f"{r.group}/{r.name}/B"])
            check_factors(pair, r.shape, r.rank, r.key)
            factors[(r.group, r.name)] = pair
    prompt = tensors["prompt.E"]
    prompt_factors = (tensors["prompt.A"], tensors["prompt.B"])
    check_factors(prompt_factors, tuple(prompt.shape), record["prompt_rank"], "prompt embedding")
    count = sum(1 for name in tensors if name.startswith("skip."))
    return FactorSet(
        base_hash=base_hash, config=record, layers=layers, factors=factors, prompt=prompt,
        prompt_factors=prompt_factors, skips=[tensors[f"skip.{i}"] for i in range(count)],
        alphas_cumprod=tensors["alphas_cumprod"], prediction_type=meta["prediction_type"],
        lean=meta.get("lean") == "1",
    )


def factor_set_for(base, base_hash: bytes, config, cache: Path | None = None) -> FactorSet:
    """The cached factors of a loaded base for ``config``, computed and cached
    first when there are none (or the cache fails its checks)."""
    cached = load_factor_set(base_hash, config, cache)
    if cached is not None:
        return cached
    factors = build_factor_set(base, base_hash, config)
    try:
        save_factor_set(factors, factor_path(base_hash, config, cache))
    except OSError as exc:  # a read-only cache only costs the next open the SVDs again
        log.warning("cannot write the factor cache: %s", exc)
    return factors


# --------------------------------------------------------------------------- base weights, lean
def _weight_files(folder: Path, stem: str) -> tuple[Path | None, dict[str, str]]:
    """``(single file, {})`` or ``(None, key -> shard file name)`` of a diffusers part."""
    single = folder / f"{stem}.safetensors"
    if single.is_file():
        return single, {}
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        return None, dict(json.loads(index.read_text())["weight_map"])
    raise FileNotFoundError(f"no {stem}.safetensors (or its sharded index) in {folder}")


class BaseWeights:
    """Reads tensors of a base directory's U-Net (``group="unet"``) or VAE
    (``"vae"``) safetensors one at a time, as float32 (what ``load_base`` gives
    the modules). Use as a context manager."""

    def __init__(self, base_dir: str | os.PathLike[str], group: str) -> None:
        self.folder = Path(base_dir) / group
        self.single, self.shards = _weight_files(self.folder, WEIGHT_STEMS[group])
        self._open: dict[Path, object] = {}

    def __getitem__(self, key: str) -> Tensor:
        from safetensors import safe_open

        if self.single is None and key not in self.shards:
            raise KeyError(f"{key} is not in {self.folder}'s weights")
        file = self.single if self.single is not None else self.folder / self.shards[key]
        if file not in self._open:
            handle = safe_open(str(file), framework="pt")
            self._open[file] = (handle, set(handle.keys()))
        handle, present = self._open[file]
        if key not in present:
            raise KeyError(f"{key} is not in {file}")
        return handle.get_tensor(key).to(torch.float32)

    def close(self) -> None:
        self._open.clear()

    def __enter__(self) -> BaseWeights:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_base_weights(base_dir: str | os.PathLike[str], group: str, keys: Sequence[str]) -> dict[str, Tensor]:
    """Tensors ``keys`` of a base's U-Net or VAE safetensors as float32 (see :class:`BaseWeights`)."""
    with BaseWeights(base_dir, group) as weights:
        return {key: weights[key] for key in keys}


def fold_weights(coded, factors: FactorSet, base_dir: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A video's folded weights (:meth:`FoldedEnhancer.folded_weights`: names and
    values) from the base's safetensors, ``factors`` and the coded adapter,
    computed with the same operations as :class:`Enhancer` then
    :class:`FoldedEnhancer` (so the values are the same)."""
    from gfix_sdk.enhance.adapter import check_base_hash, dequantized
    from gfix_sdk.enhance.model import interpolate_alpha_bar

    check_base_hash(coded, factors.base_hash)
    if config_record(coded.config) != factors.config:
        raise ValueError("the factors were built for another adapter configuration")
    mlora = factors.mode == "mlora"
    groups = _by_group(factors.layers)
    sizes = {"prompt": [factors.prompt_factors[0].shape[1] ** 2], "skip": [w.numel() for w in factors.skips]}
    for group in ("unet", "vae"):
        sizes[group] = [n for r in groups.get(group, []) for n in
                        ([r.rank * r.rank] if mlora else [r.rank * r.fan_in, r.shape[0] * r.rank])]
    values = {group: dequantized(coded, group, sizes[group]) for group in ("prompt", "unet", "vae", "skip")}
    weights: dict[str, Tensor] = {}
    # A small fold (the stand-in: ~10^7 multiply-adds) is hundreds of tiny ops, each
    # a parallel region that costs more than its work when the cores are busy
    # (measured 3.6 s on two threads vs 0.01 s on one, next to a training job).
    work = sum(r.shape[0] * r.rank * r.fan_in for r in factors.layers)
    threads = torch.get_num_threads()
    if work < SMALL_FOLD:
        torch.set_num_threads(1)
    try:
        with torch.no_grad():
            a, b = factors.prompt_factors  # ModulatedMatrix: E + A M B
            weights["prompt"] = factors.prompt + a @ values["prompt"][0].reshape(a.shape[1], a.shape[1]) @ b
            for group, records in groups.items():
                parts = iter(values[group])
                with BaseWeights(base_dir, group) as base:  # one weight at a time: SD-Turbo's U-Net is 3.4 GB
                    for r in records:
                        weight = base[r.key]
                        if tuple(weight.shape) != r.shape:
                            raise ValueError(f"{r.key} has shape {tuple(weight.shape)} in {base_dir}, "
                                             f"the factor cache says {r.shape}")
                        if mlora:  # _AdaptedLayer.delta_weight: A @ (M @ B)
                            a, b = factors.factors[(group, r.name)]
                            delta = a @ (next(parts).reshape(r.rank, r.rank) @ b)
                        else:  # LoRA: up @ down (trainable order: down, up)
                            down = next(parts).reshape(r.rank, r.fan_in)
                            delta = next(parts).reshape(r.shape[0], r.rank) @ down
                        weights[r.folded_name] = weight + delta.reshape(weight.shape)  # as _AdaptedLayer.fold
            for i, (init, delta) in enumerate(zip(factors.skips, values["skip"], strict=True)):
                weights[f"skips.{i}.weight"] = init + delta.reshape(init.shape)  # SkipConv.weight()
            t = torch.tensor(float(coded.t), dtype=torch.float32)  # Enhancer.t after apply_adapter
            weights["t"] = t
            weights["abar"] = interpolate_alpha_bar(factors.alphas_cumprod, t).to(torch.float32)
            weights["strength"] = torch.tensor(coded.strengths, dtype=torch.float32)
    finally:
        torch.set_num_threads(threads)
    return weights


# --------------------------------------------------------------------------- base identity
def base_fingerprint(base_dir: str | os.PathLike[str]) -> str:
    """Digest of the base directory's files that ``load_base`` reads (relative
    path, size, modification time, inode): cheap (``stat`` only)."""
    root = Path(base_dir).resolve()
    entries = []
    for part in IDENTITY_PARTS:
        for folder, dirs, files in os.walk(root / part):
            dirs.sort()
            for name in sorted(files):
                st = os.stat(os.path.join(folder, name))
                rel = os.path.relpath(os.path.join(folder, name), root)
                entries.append((rel, st.st_size, st.st_mtime_ns, st.st_ino))
    return hashlib.sha256(json.dumps([str(root), entries]).encode()).hexdigest()


def _record_path(base_dir: Path, cache: Path | None) -> Path:
    key = hashlib.sha256(str(Path(base_dir).resolve()).encode()).hexdigest()[:24]
    return (cache or cache_root()) / "bases" / f"{key}.json"


def known_base_hash(base_dir: str | os.PathLike[str], cache: Path | None = None) -> bytes | None:
    """The recorded base hash of ``base_dir``, or None when there is no record
    or any of its files changed since (size, modification time or inode)."""
    path = _record_path(Path(base_dir), cache)
    try:
        record = json.loads(path.read_text())
        if record.get("format") != BASE_RECORD_FORMAT or record.get("fingerprint") != base_fingerprint(base_dir):
            return None
        digest = bytes.fromhex(record["hash"])
        return digest if len(digest) == 32 else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def remember_base_hash(base_dir: str | os.PathLike[str], digest: bytes, cache: Path | None = None) -> None:
    """Record ``digest`` as the hash of ``base_dir`` as it is now (atomically; best effort)."""
    path = _record_path(Path(base_dir), cache)
    record = {"format": BASE_RECORD_FORMAT, "path": str(Path(base_dir).resolve()),
              "fingerprint": base_fingerprint(base_dir), "hash": digest.hex()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
    except OSError as exc:
        log.warning("cannot record the base hash: %s", exc)


__all__ = ["BaseWeights", "FactorSet", "LayerRecord", "base_fingerprint", "build_factor_set", "config_digest",
           "factor_path", "factor_set_for", "fold_weights", "known_base_hash", "load_factor_set", "read_base_weights",
           "remember_base_hash", "save_factor_set"]
