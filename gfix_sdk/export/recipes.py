"""Export recipes: patch, batch profile, precision, opset (JSON files in ``export/``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]
# A source checkout keeps them at the top level; a wheel installs them into the package.
SEARCH_PATH = (_PACKAGE.parent / "export", _PACKAGE / "recipes")


@dataclass(frozen=True)
class Recipe:
    name: str
    patch: int
    batch: tuple[int, int, int]  #: (min, opt, max)
    precision: str  #: "fp16" or "fp32" (TensorRT engines)
    opset: int
    description: str = ""

    def __post_init__(self) -> None:
        if self.patch < 8 or self.patch % 8:
            raise ValueError(f"recipe {self.name}: patch must be a positive multiple of 8")
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise ValueError(f"recipe {self.name}: batch must be [min <= opt <= max], got {list(self.batch)}")
        if self.precision not in ("fp16", "fp32"):
            raise ValueError(f"recipe {self.name}: precision must be fp16 or fp32")


def available_recipes() -> list[str]:
    return sorted({p.stem for d in SEARCH_PATH if d.is_dir() for p in d.glob("*.json")})


def load_recipe(name_or_path: str | os.PathLike[str]) -> Recipe:
    """A recipe by file path or by name (searched in ``export/``)."""
    path = Path(name_or_path)
    if not path.is_file():
        candidates = [d / f"{name_or_path}.json" for d in SEARCH_PATH]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"no export recipe {name_or_path!r}; available: {', '.join(available_recipes())}")
    try:
        data = json.loads(path.read_text())
        return Recipe(name=data["name"], patch=int(data["patch"]), batch=tuple(int(b) for b in data["batch"]),
                      precision=data["precision"], opset=int(data["opset"]), description=data.get("description", ""))
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"invalid export recipe {path}: {exc}") from None
