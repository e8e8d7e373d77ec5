"""Scale-out on Ray: GOP-parallel encoding of one video, and whole libraries.

* :func:`~gfix_sdk.scale.parallel.ray_gop_stream` codes the GOPs of one frame
  stream as Ray tasks and returns the coded frames in order; it is what
  ``encode_video(..., workers=N)`` uses, so the file is byte-identical to a
  sequential encode (every GOP is fitted under :func:`~gfix_sdk.scale.gop.gop_threads`).
* :func:`~gfix_sdk.scale.library.encode_many` encodes many videos, one task
  group per video, with one progress bar and a summary table.

``ray`` is needed only here (``pip install "gfix-sdk[cluster]"``) and is
imported only when a runtime is asked for.
"""

from __future__ import annotations

from gfix_sdk.scale.gop import THREADS_PER_GOP, encode_gop, gop_chunks, gop_threads
from gfix_sdk.scale.runtime import INSTALL_HINT, import_ray, ray_runtime

__all__ = ["INSTALL_HINT", "THREADS_PER_GOP", "encode_gop", "gop_chunks", "gop_threads", "import_ray", "ray_runtime"]
