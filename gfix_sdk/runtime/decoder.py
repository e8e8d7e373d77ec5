"""``Decoder``: streaming and random-access decoding of ``.gfix`` files."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gfix_sdk.bitstream.reader import GFixReader
from gfix_sdk.errors import GFixFormatError, ResourceLimitError
from gfix_sdk.gaussians.code import decode_frame, decode_stream_info
from gfix_sdk.gaussians.quantize import QuantizedFrame, QuantSpec
from gfix_sdk.gaussians.quantize import dequantize
from gfix_sdk.gaussians.reconstruct import render_frame
from gfix_sdk.raster import tile_intersections_bound


@dataclass(frozen=True)
class StreamInfo:
    """Facts about an opened ``.gfix`` stream."""

    width: int  #: frame width in pixels
    height: int  #: frame height in pixels
    fps: float  #: frames per second
    num_frames: int  #: number of frames
    num_bytes: int  #: size of the file in bytes
    key_frames: tuple[int, ...]  #: indices of the key (random-access) frames
    gaussians: int  #: target Gaussians per frame the encoder used
    encoder: str  #: name and version of the encoder
    has_enhancer: bool = False  #: the file carries a GFix enhancer adapter
    enhancer_bytes: int = 0  #: size of that adapter's payload
    enhanced: bool = False  #: frames from this decoder are enhanced
    backend: str | None = None  #: enhancer backend in use ("torch", "onnxruntime", "tensorrt")
    #: The encoder's word on the enhancer (why it kept or dropped the adapter); "" when none was trained.
    enhancer_note: str = ""

    @property
    def duration_seconds(self) -> float:
        return self.num_frames / self.fps

    @property
    def bits_per_pixel(self) -> float:
        """Whole-file bits per decoded pixel."""
        return 8 * self.num_bytes / max(1, self.num_frames * self.width * self.height)

    @property
    def bitrate_kbps(self) -> float:
        """Whole-file bitrate in kbit/s."""
        return 8 * self.num_bytes / max(self.duration_seconds, 1e-9) / 1000


def _prefetched(produce, indices, depth: int) -> Iterator[Tensor]:
    """``produce(i)`` for each index, computed by a worker thread up to ``depth``
    items ahead; errors are re-raised in the consumer, and closing the
    generator early stops the worker."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def worker() -> None:
        try:
            for i in indices:
                if stop.is_set():
                    return
                items.put(produce(i))
            items.put(done)
        except BaseException as exc:  # hand the failure to the consumer
            items.put(exc)

    thread = threading.Thread(target=worker, name="gfix-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a worker waiting on a full queue
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


#: Default ``max_pixels``: 8K UHD (8192 x 4320, 35.4 Mpixel). Every broadcast and
#: cinema size up to 8K decodes; a header at the format's limit (16384 x 16384,
#: 268 Mpixel, 3.2 GB for one float32 frame) is refused. Peak memory at this
#: limit is about 0.5 GB plus the Gaussian terms (see :class:`Decoder`).
DEFAULT_MAX_PIXELS = 8192 * 4320

#: (Gaussian, 16x16 tile) pairs a frame may ask the rasterizer to bin: 512 MiB
#: of tile lists. A natural frame needs a few per Gaussian (~10**6 at 4K); a
#: crafted one (4M Gaussians each covering every tile) would ask for terabytes
#: and hours, so it is refused before rendering.
MAX_TILE_INTERSECTIONS = 1 << 27


class Decoder:
    """Decodes a ``.gfix`` file frame by frame.

    Use :meth:`open` (or the constructor) as a context manager::

        with Decoder.open("clip.gfix") as dec:
            for frame in dec.frames():   # (H, W, 3) uint8 numpy arrays
                ...

    Only the current reference frame's Gaussians are held between frames, so
    memory does not grow with the length of the video. Random access
    (:meth:`frame`, ``dec[i]``) decodes forward from the nearest key frame at
    or before ``i``.

    Files with a GFix enhancer are enhanced by default, which needs the local
    base model the encoder used (``base=`` or ``$GFIX_BASE``); pass
    ``enhance=False`` for the Gaussian-only frames. ``backend`` chooses how
    the enhancer runs (see :mod:`gfix_sdk.runtime.backends`; ``auto`` picks
    the fastest present and ``info.backend`` says which); ``precision``
    ("fp32", "fp16" on CUDA, "bf16"; None: the backend's default) sets the
    enhancer's arithmetic (see :data:`gfix_sdk.runtime.backends.PRECISIONS`
    and the README for the measured error). With ``onnxruntime``
    or ``tensorrt``, a video on a base this machine has decoded before opens
    without loading the base's modules (no diffusers or transformers import,
    no SVD): its folded weights are written into the cached graph. While one frame is
    enhanced, :meth:`frames` decodes and rasterizes the next ones in a
    background thread (at most ``prefetch`` frames ahead).

    **Resource bounds.** Peak memory of decoding one frame on the CPU without
    the enhancer is about ::

        40 B x width x height  +  240 B x Gaussians  +  4 B x tile pairs

    (the float32 render and its uint8 conversion; the decoded and reference
    Gaussians with the rasterizer's per-Gaussian setup; one int32 per
    (Gaussian, 16x16 tile) pair the rasterizer bins). Measured over an idle
    decoder: 101 MiB at 1920x1080 and 309 MiB at 3840x2160 with 1,000
    Gaussians, +90 MiB with 400,000 Gaussians; 1.2 GiB at 7680x4320. Every
    term is bounded before it is allocated: frames above ``max_pixels``
    (default :data:`DEFAULT_MAX_PIXELS`, 8192x4320) are refused when the file
    is opened, a frame holds at most 2**22 Gaussians, and a frame whose
    Gaussians would cover more than :data:`MAX_TILE_INTERSECTIONS` pairs is
    refused before rendering, so a crafted file costs at most about 3 GB.
    Lower ``max_pixels`` for untrusted input; ``None`` lifts the limit (up to
    the format's 16384x16384). The enhancer adds its model and patch batches.

    Raises (from the constructor):
        FileNotFoundError: no such file.
        GFixFormatError: the file or one of its sections is malformed.
        ResourceLimitError: its frames are larger than ``max_pixels``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device = "cpu",
        base: str | os.PathLike[str] | None = None,
        enhance: bool = True,
        backend: str = "auto",
        prefetch: int = 2,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        precision: str | None = None,
    ) -> None:
        if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int)
                                       or max_pixels < 1):
            raise ValueError(f"max_pixels must be a positive int or None, got {max_pixels!r}")
        self._device = torch.device(device)
        if self._device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' requested but PyTorch sees no CUDA device")
        self._reader = GFixReader(path)
        try:
            header = self._reader.header
            # Judged on the header alone, before anything frame-sized exists.
            if max_pixels is not None and header.width * header.height > max_pixels:
                raise ResourceLimitError(
                    f"{self._reader.path}: frames of {header.width}x{header.height} = "
                    f"{header.width * header.height} pixels exceed max_pixels={max_pixels}; "
                    "pass a larger max_pixels (or None) to Decoder.open to decode it"
                )
            self._spec, params = decode_stream_info(self._reader.stream_info(),
                                                    context=f"{self._reader.path}: STREAM_INFO")
            keys = tuple(i for i in range(header.frame_count) if self._reader.frame_is_key(i))
            if header.frame_count and (not keys or keys[0] != 0):
                raise self._reader_error("the first frame is not a key frame")
            adapter = self._reader.enhancer()
            metadata = self._reader.metadata()
            self._backend = None
            self._tiles = (0, 0)  # the enhancer's patch and overlap
            if adapter is not None and enhance:
                from gfix_sdk.runtime.backends import open_backend

                # Lean for onnxruntime/tensorrt once the base has been seen (no diffusers,
                # no Enhancer; see gfix_sdk.runtime.backends), else the full rebuild.
                self._backend, coded = open_backend(backend, adapter, base, self._device,
                                                    context=f"{self._reader.path}: ENHANCER", precision=precision)
                self._tiles = (coded.config.patch, coded.config.overlap)
        except BaseException:
            self._reader.close()
            raise
        self.info = StreamInfo(
            width=header.width, height=header.height, fps=header.fps,
            num_frames=header.frame_count, num_bytes=self._reader.num_bytes, key_frames=keys,
            gaussians=int(params["gaussians"]), encoder=str(params["encoder"]),
            has_enhancer=adapter is not None, enhancer_bytes=len(adapter) if adapter else 0,
            enhanced=self._backend is not None,
            backend=self._backend.name if self._backend is not None else None,
            enhancer_note=str(metadata.get("enhancer", {}).get("reason", "")) if isinstance(
                metadata.get("enhancer"), dict) else "",
        )
        self._prefetch = max(1, prefetch)
        # The last decoded frame, so that sequential access never re-decodes.
        self._cursor: tuple[int, QuantizedFrame] | None = None

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device = "cpu",
        base: str | os.PathLike[str] | None = None,
        enhance: bool = True,
        backend: str = "auto",
        prefetch: int = 2,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        precision: str | None = None,
    ) -> Decoder:
        """Open ``path`` for decoding on ``device`` ("cpu" or "cuda"); see the class docstring."""
        return cls(path, device=device, base=base, enhance=enhance, backend=backend, prefetch=prefetch,
                   max_pixels=max_pixels, precision=precision)

    @property
    def path(self) -> Path:
        return self._reader.path

    @property
    def quant_spec(self) -> QuantSpec:
        return self._spec

    def __len__(self) -> int:
        return self.info.num_frames

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release the file and the enhancer backend. Safe to call twice."""
        self._reader.close()
        self._cursor = None
        if getattr(self, "_backend", None) is not None:
            self._backend.close()
            self._backend = None

    def __repr__(self) -> str:
        i = self.info
        return f"Decoder({str(self.path)!r}, {i.width}x{i.height}, {i.num_frames} frames @ {i.fps:g} fps)"

    # ------------------------------------------------------------------ decoding
    def gaussians(self, index: int) -> QuantizedFrame:
        """Decoded (quantised) Gaussians of frame ``index``."""
        index = self._check_index(index)
        if self._cursor is not None and self._cursor[0] <= index and self._cursor[0] >= self._last_key(index):
            position, q = self._cursor
        else:
            position, q = self._last_key(index) - 1, None
        while position < index:
            position += 1
            q = decode_frame(self._reader.frame_payload(position), q, context=f"{self.path}: frame {position}")
            self._cursor = (position, q)
        assert q is not None  # loop ran at least once or the cursor held frame `index`
        return q

    def render(self, index: int) -> Tensor:
        """Frame ``index`` as an ``(H, W, 3)`` float32 tensor on the decoder's device.

        Raises:
            GFixFormatError: the frame's data is malformed.
            ResourceLimitError: the frame would make the rasterizer bin more
                than :data:`MAX_TILE_INTERSECTIONS` (Gaussian, tile) pairs.
        """
        return self._render(index, uint8=False)

    def _render(self, index: int, *, uint8: bool) -> Tensor:
        """:meth:`render`, or the uint8 frame the decoder shows (rendered straight to uint8)."""
        q = self.gaussians(index)
        height, width = self.info.height, self.info.width
        g = dequantize(q, self._spec, height, width)  # what the rasterizer will see
        pairs = tile_intersections_bound(g.means, g.chol, height, width)
        if pairs > MAX_TILE_INTERSECTIONS:
            raise ResourceLimitError(
                f"{self.path}: frame {index}: {q.num_gaussians} Gaussians would cover up to "
                f"{pairs} (Gaussian, tile) pairs, above the limit {MAX_TILE_INTERSECTIONS} "
                f"({4 * MAX_TILE_INTERSECTIONS >> 20} MiB of tile lists); refused before rendering"
            )
        return render_frame(g.to(self._device), uint8=uint8)

    def frame(self, index: int, *, as_tensor: bool = False) -> np.ndarray | Tensor:
        """Frame ``index`` as ``(H, W, 3)`` uint8 (numpy, or a tensor on the device),
        enhanced when the decoder has an enhancer."""
        image = self._enhance(self._render(index, uint8=True))
        return image if as_tensor else image.cpu().numpy()

    def _enhance(self, image: Tensor) -> Tensor:
        if self._backend is None:
            return image
        from gfix_sdk.enhance.tiling import enhance_frame

        return enhance_frame(self._backend, image, *self._tiles).to(image.device)

    def __getitem__(self, index: int) -> np.ndarray:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"frame indices must be integers, not {type(index).__name__}")
        return self.frame(int(index))

    def frames(self, *, as_tensor: bool = False, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray | Tensor]:
        """Yield frames ``start`` .. ``stop - 1`` in order (all by default).

        With an enhancer on a GPU or through ONNX Runtime/TensorRT, a background
        thread decodes and rasterizes up to ``prefetch`` frames ahead while the
        current one is enhanced; memory stays bounded by those few frames."""
        stop = self.info.num_frames if stop is None else min(stop, self.info.num_frames)
        # PyTorch on the CPU shares the cores with the rasterizer's OpenMP team:
        # overlapping them was measured 2x slower on 2 cores, so that case runs
        # in order (GPU enhancement and ONNX Runtime do overlap profitably).
        sequential = self._backend is None or (self._backend.name == "torch" and self._device.type == "cpu")
        if sequential:
            for index in range(start, stop):
                yield self.frame(index, as_tensor=as_tensor)
            return
        for image in _prefetched(lambda i: self._render(i, uint8=True), range(start, stop), self._prefetch):
            out = self._enhance(image)
            yield out if as_tensor else out.cpu().numpy()

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    # ------------------------------------------------------------------ helpers
    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"frame indices must be integers, not {type(index).__name__}")
        n = self.info.num_frames
        if not -n <= index < n:
            raise IndexError(f"frame index {index} out of range for {n} frames")
        return int(index) % n

    def _last_key(self, index: int) -> int:
        keys = self.info.key_frames
        return keys[int(np.searchsorted(keys, index, side="right")) - 1]

    def _reader_error(self, what: str) -> GFixFormatError:
        return GFixFormatError(f"{self._reader.path}: {what}")
