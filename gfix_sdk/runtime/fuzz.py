"""Fuzzing the decoder: :class:`~gfix_sdk.bitstream.fuzz.Mutator` cases through
:class:`~gfix_sdk.runtime.decoder.Decoder` and the ENHANCER parser.

Each case ends in an outcome class: ``"decoded"``, the name of the
:class:`~gfix_sdk.errors.GFixError` subclass raised, or ``"escaped: <type>"``
for any other exception -- a bug, since every byte sequence must decode or
raise a GFixError. Used by ``tests/test_fuzz.py``; run by hand as::

    python -m gfix_sdk.runtime.fuzz --cases 100000 --workdir /tmp
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gfix_sdk.bitstream import GFixWriter, SectionType, StreamHeader
from gfix_sdk.bitstream.fuzz import ByteMutator, Mutator
from gfix_sdk.errors import GFixError
from gfix_sdk.gaussians.code import encode_intra, encode_predicted, encode_stream_info
from gfix_sdk.gaussians.quantize import QuantizedFrame, QuantSpec
from gfix_sdk.runtime.decoder import Decoder

#: Outcome classes that are bugs start with this (see :func:`classify`).
ESCAPED = "escaped"


def classify(run: Callable[[], object]) -> str:
    """``"decoded"`` when ``run()`` returns, the class name of a
    :class:`GFixError` it raises, ``"escaped: <type>: <message>"`` for any
    other exception (a bug: KeyboardInterrupt and SystemExit pass through)."""
    try:
        run()
    except GFixError as exc:
        return type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - escaping exceptions are what we look for
        return f"{ESCAPED}: {type(exc).__name__}: {str(exc)[:200]}"
    return "decoded"


def decode_outcome(path: str | Path, *, max_pixels: int = 1 << 20) -> str:
    """Open ``path`` with enhancement off and decode every frame; see :func:`classify`.

    ``max_pixels`` keeps mutated headers (a 16384-pixel width) from turning
    a fuzz run into a rendering benchmark; the limit itself is tested apart.
    """
    def run() -> None:
        with Decoder.open(path, enhance=False, max_pixels=max_pixels) as dec:
            for _ in dec.frames():
                pass

    return classify(run)


def adapter_outcome(payload: bytes, counts: Mapping[str, int]) -> str:
    """Parse an ENHANCER payload with :func:`~gfix_sdk.enhance.adapter.decode_adapter`
    and decode each group's values as a decoder whose base's layers need
    ``counts`` values per group would; see :func:`classify`."""
    from gfix_sdk.enhance.adapter import decode_adapter

    def run() -> None:
        coded = decode_adapter(payload)
        for group, count in counts.items():
            coded.group_values(group, count)

    return classify(run)


@dataclass
class FuzzReport:
    """Tallies of a fuzz run."""

    cases: int = 0
    seconds: float = 0.0
    outcomes: Counter = field(default_factory=Counter)
    #: ``(description, outcome)`` of the first 20 escaped cases.
    failures: list[tuple[str, str]] = field(default_factory=list)

    def add(self, what: str, outcome: str) -> None:
        self.cases += 1
        # Escapes are tallied by exception type, their messages kept apart.
        self.outcomes[":".join(outcome.split(":")[:2]) if outcome.startswith(ESCAPED) else outcome] += 1
        if outcome.startswith(ESCAPED) and len(self.failures) < 20:
            self.failures.append((what, outcome))

    @property
    def escaped(self) -> int:
        """How many cases ended in an exception other than a GFixError (bugs)."""
        return sum(n for name, n in self.outcomes.items() if name.startswith(ESCAPED))


def fuzz_files(seeds: Sequence[bytes], cases: int, workdir: Path, *, seed: int = 0,
               max_pixels: int = 1 << 20) -> FuzzReport:
    """Decode ``cases`` mutated files (written one at a time under ``workdir``)."""
    mutator, report = Mutator(seeds, seed=seed), FuzzReport()
    path = Path(workdir) / "case.gfix"
    start = time.perf_counter()
    for _ in range(cases):
        data, what = mutator()
        path.write_bytes(data)
        report.add(what, decode_outcome(path, max_pixels=max_pixels))
    report.seconds = time.perf_counter() - start
    return report


def fuzz_adapter(payload: bytes, cases: int, *, seed: int = 0) -> FuzzReport:
    """Parse ``cases`` mutated copies of an ENHANCER payload, decoding the values
    at the counts of the intact ``payload`` (what the base's layers would need)."""
    from gfix_sdk.enhance.adapter import decode_adapter

    counts = decode_adapter(payload).counts
    mutator, report = ByteMutator(seed), FuzzReport()
    start = time.perf_counter()
    for _ in range(cases):
        data, what = mutator.mutate(payload)
        report.add(what, adapter_outcome(data, counts))
    report.seconds = time.perf_counter() - start
    return report


def _random_frame(rng: np.random.Generator, count: int, width: int, height: int,
                  spec: QuantSpec) -> QuantizedFrame:
    """``count`` plausible Gaussians: inside the frame, 1-4 pixels wide, any colour."""
    means = rng.uniform([0, 0], [width, height], size=(count, 2)) / spec.pos_step
    chol = rng.uniform([1, -1, 1], [4, 1, 4], size=(count, 3)) / spec.chol_step
    colors = rng.uniform([0, -0.5, -0.5], [1, 0.5, 0.5], size=(count, 3))
    colors /= [spec.luma_step, spec.chroma_step, spec.chroma_step]
    as_int = lambda a: torch.from_numpy(np.round(a).astype(np.int64))  # noqa: E731
    return QuantizedFrame(as_int(means), as_int(chol), as_int(colors))


def write_seed_clip(path: str | Path, *, frames: int = 5, width: int = 48, height: int = 32,
                    gaussians: int = 24, gop: int = 3, seed: int = 0) -> Path:
    """Write a small valid ``.gfix`` file (no fitting: random Gaussians) with
    key frames every ``gop`` frames and predicted frames that keep, change and
    add Gaussians, so that every branch of the frame coder is exercised."""
    rng = np.random.default_rng(seed)
    spec = QuantSpec()
    header = StreamHeader(width=width, height=height, fps_num=25, fps_den=1, frame_count=frames)
    with GFixWriter(path, header) as writer:
        writer.write_section(SectionType.STREAM_INFO, encode_stream_info(
            spec, gaussians=gaussians, gop=gop, encoder="gfix_sdk fuzz seed"))
        ref = None
        for index in range(frames):
            if index % gop == 0:
                payload, ref = encode_intra(_random_frame(rng, gaussians, width, height, spec))
                writer.write_frame(payload, key=True)
                continue
            keep = torch.from_numpy(rng.random(ref.num_gaussians) < 0.8)
            kept = ref.select(keep)
            # Small moves for the residual path; colours replaced for the absolute path.
            kept.means = kept.means + torch.from_numpy(rng.integers(-2, 3, size=tuple(kept.means.shape)))
            kept.colors = _random_frame(rng, kept.num_gaussians, width, height, spec).colors
            new = _random_frame(rng, int(rng.integers(1, 6)), width, height, spec)
            payload, ref = encode_predicted(ref, keep, kept, new)
            writer.write_frame(payload, key=False)
    return Path(path)


def seed_adapter_payload(seed: int = 0) -> bytes:
    """A valid ENHANCER payload (the current version, random values per group)
    written by the encoder's own writer (:func:`~gfix_sdk.enhance.adapter.write_adapter`,
    what :func:`~gfix_sdk.enhance.adapter.encode_adapter` calls) without a base
    model, for fuzzing :func:`~gfix_sdk.enhance.adapter.decode_adapter`."""
    from gfix_sdk.enhance.adapter import write_adapter
    from gfix_sdk.enhance.model import GROUPS, AdapterConfig

    rng = np.random.default_rng(seed)
    base_hash = bytes(rng.integers(0, 256, size=32, dtype=np.uint8))
    # Small ranks and a custom U-Net target list (so a text field is written).
    config = AdapterConfig(prompt_rank=8, unet_rank=4, vae_rank=4, unet_targets=("conv_in", "conv_out"),
                           patch=64, overlap=16)
    values = {group: np.round(rng.laplace(0, 3, size=count)).astype(np.int64)
              for group, count in zip(GROUPS, (16, 300, 120, 0))}
    return write_adapter(config, values, dict.fromkeys(GROUPS, 1.0 / 256), base_hash, t=199.0,
                         strengths=(0.75, 0.5))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gfix_sdk.runtime.fuzz",
                                     description="Fuzz the decoder with structure-aware mutations.")
    parser.add_argument("seeds", nargs="*", type=Path,
                        help="valid .gfix files to mutate (default: three small synthetic clips)")
    parser.add_argument("--cases", type=int, default=1000, help="files to decode (default 1000)")
    parser.add_argument("--adapter-cases", type=int, default=None,
                        help="ENHANCER payloads to parse (default: as many as --cases)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--workdir", type=Path, default=None, help="where case files go (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        seeds = [p.read_bytes() for p in args.seeds] or default_seeds(Path(tmp))
        files = fuzz_files(seeds, args.cases, Path(tmp), seed=args.seed)
    adapter_cases = args.cases if args.adapter_cases is None else args.adapter_cases
    adapter = fuzz_adapter(seed_adapter_payload(args.seed), adapter_cases, seed=args.seed)
    for name, report in (("files", files), ("ENHANCER payloads", adapter)):
        print(f"{name}: {report.cases} cases in {report.seconds:.1f} s")
        for outcome, count in report.outcomes.most_common():
            print(f"  {count:8d}  {outcome}")
        for what, outcome in report.failures:
            print(f"  ESCAPED  {what}: {outcome}")
    return 1 if files.escaped or adapter.escaped else 0


def default_seeds(workdir: Path) -> list[bytes]:
    """Three synthetic clips: a GOP of 3, all-intra, and one long GOP with
    more Gaussians."""
    shapes = ({}, {"gop": 1, "frames": 3}, {"gop": 8, "frames": 6, "gaussians": 60, "width": 40})
    return [write_seed_clip(workdir / f"seed{i}.gfix", seed=i, **kw).read_bytes()
            for i, kw in enumerate(shapes)]


if __name__ == "__main__":
    sys.exit(main())
