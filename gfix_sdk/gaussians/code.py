"""Bitstream coding of one frame's quantised Gaussians (intra or predicted).

**Intra** frames carry N Gaussians sorted by (y, x) grid position; the sorted
y indices are sent as differences (small, non-negative), x, the three
Cholesky channels and the three colour channels as they are. Sorting is free
for a summation renderer (order does not change the image beyond float
rounding, and encoder and decoder use the same order), and it turns ~log2(H/step)
bits of y into about one.

**Predicted** frames refer to the previous *decoded* frame (M Gaussians,
identified by their index there). They carry which reference Gaussians are
kept (a 0/1 channel), then for the K kept ones each attribute group (means,
Cholesky, colours) either as the exact integer residual against the reference
or as absolute values - whichever codes smaller, flagged per group - and
finally the A new Gaussians as an intra block. The decoded order is: kept
Gaussians in reference order, then the new ones in their sorted order. Because
residuals are integer differences on absolute grids, the decoder reproduces
the encoder's frame exactly (closed loop).

Every channel goes through :func:`gfix_sdk.coding.encode_symbols`.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import torch
from torch import Tensor

from gfix_sdk.coding import ByteReader, ByteWriter, decode_symbols, encode_symbols
from gfix_sdk.gaussians.quantize import QuantizedFrame, QuantSpec

MAX_GAUSSIANS = 1 << 22  # per frame; a guard against absurd counts in a bad file
_GROUPS = ("means", "chol", "colors")
_GROUP_COLS = {"means": 2, "chol": 3, "colors": 3}


class FrameType(IntEnum):
    INTRA = 0
    PREDICTED = 1


def sort_order(q: QuantizedFrame) -> Tensor:
    """Stable permutation that sorts Gaussians by (y, x) grid position."""
    by_x = torch.argsort(q.means[:, 0], stable=True)
    return by_x[torch.argsort(q.means[by_x, 1], stable=True)]


def _write_channels(w: ByteWriter, values: Tensor) -> None:
    for column in values.T:
        w.raw(encode_symbols(column.cpu().numpy()))


def _read_channels(r: ByteReader, count: int, cols: int, field: str) -> Tensor:
    columns = [decode_symbols(r, count, f"{field}[{k}]") for k in range(cols)]
    data = np.stack(columns, axis=1) if count else np.zeros((0, cols), dtype=np.int64)
    return torch.from_numpy(data)


def _write_intra_block(w: ByteWriter, q: QuantizedFrame) -> None:
    """``q`` must already be in sorted order."""
    w.varint(q.num_gaussians)
    y = q.means[:, 1]
    y_steps = torch.cat([y[:1], torch.diff(y)]) if len(y) else y
    w.raw(encode_symbols(y_steps.cpu().numpy()))
    w.raw(encode_symbols(q.means[:, 0].cpu().numpy()))
    _write_channels(w, q.chol)
    _write_channels(w, q.colors)


def _read_intra_block(r: ByteReader, limit: int) -> QuantizedFrame:
    count = r.varint("Gaussian count", maximum=limit)
    y = torch.from_numpy(np.cumsum(decode_symbols(r, count, "y steps")))
    if count > 1 and bool((y[1:] < y[:-1]).any()):
        raise r.error("intra positions are not sorted (corrupted)")
    x = torch.from_numpy(decode_symbols(r, count, "x"))
    return QuantizedFrame(
        means=torch.stack([x, y], dim=1) if count else torch.zeros((0, 2), dtype=torch.int64),
        chol=_read_channels(r, count, 3, "chol"),
        colors=_read_channels(r, count, 3, "colors"),
    )


def encode_intra(q: QuantizedFrame) -> tuple[bytes, QuantizedFrame]:
    """Code an intra frame. Returns the payload and the frame in decoded order."""
    if q.num_gaussians > MAX_GAUSSIANS:
        raise ValueError(f"at most {MAX_GAUSSIANS} Gaussians per frame, got {q.num_gaussians}")
    ordered = q.select(sort_order(q))
    w = ByteWriter()
    w.u8(int(FrameType.INTRA))
    _write_intra_block(w, ordered)
    return w.getvalue(), ordered


def encode_predicted(
    ref: QuantizedFrame, keep: Tensor, kept: QuantizedFrame, new: QuantizedFrame
) -> tuple[bytes, QuantizedFrame]:
    """Code a predicted frame.

    Args:
        ref: the previous decoded frame (M Gaussians).
        keep: (M,) bool, which reference Gaussians survive.
        kept: the K = keep.sum() surviving Gaussians' new values, in reference order.
        new: the A added Gaussians (any order).

    Returns the payload and the frame in decoded order (kept, then new sorted).
    """
    if keep.shape != (ref.num_gaussians,) or keep.dtype != torch.bool:
        raise ValueError("keep must be a bool tensor with one entry per reference Gaussian")
    if kept.num_gaussians != int(keep.sum()):
        raise ValueError("kept must hold one row per kept reference Gaussian")
    if kept.num_gaussians + new.num_gaussians > MAX_GAUSSIANS:
        raise ValueError(f"at most {MAX_GAUSSIANS} Gaussians per frame")
    new_sorted = new.select(sort_order(new))
    w = ByteWriter()
    w.u8(int(FrameType.PREDICTED))
    w.varint(ref.num_gaussians)
    w.raw(encode_symbols(keep.to(torch.int64).cpu().numpy()))
    ref_kept = ref.select(keep)
    modes = 0
    group_bytes = []
    for bit, group in enumerate(_GROUPS):
        current = getattr(kept, group)
        residual, absolute = ByteWriter(), ByteWriter()
        _write_channels(residual, current - getattr(ref_kept, group))
        _write_channels(absolute, current)
        if len(residual) <= len(absolute):
            modes |= 1 << bit
            group_bytes.append(residual.getvalue())
        else:
            group_bytes.append(absolute.getvalue())
    w.u8(modes)
    for data in group_bytes:
        w.raw(data)
    _write_intra_block(w, new_sorted)
    return w.getvalue(), kept.concat(new_sorted)


def decode_frame(payload: bytes, ref: QuantizedFrame | None, *, context: str = "frame") -> QuantizedFrame:
    """Decode a frame payload. ``ref`` is the previous decoded frame (needed for
    predicted frames). Raises GFixFormatError on any inconsistency."""
    r = ByteReader(payload, context=context)
    kind = r.u8("frame type")
    if kind == FrameType.INTRA:
        q = _read_intra_block(r, MAX_GAUSSIANS)
    elif kind == FrameType.PREDICTED:
        if ref is None:
            raise r.error("predicted frame without a reference frame")
        count = r.varint("reference Gaussian count", maximum=MAX_GAUSSIANS)
        if count != ref.num_gaussians:
            raise r.error(f"frame refers to {count} Gaussians but the reference has {ref.num_gaussians}")
        keep_values = decode_symbols(r, count, "keep flags")
        if count and (keep_values.min() < 0 or keep_values.max() > 1):
            raise r.error("keep flags must be 0 or 1")
        keep = torch.from_numpy(keep_values.astype(bool))
        ref_kept = ref.select(keep)
        kept_count = ref_kept.num_gaussians
        modes = r.u8("prediction modes")
        if modes >> len(_GROUPS):
            raise r.error(f"unknown prediction mode bits {modes:#x}")
        groups = {}
        for bit, group in enumerate(_GROUPS):
            values = _read_channels(r, kept_count, _GROUP_COLS[group], group)
            groups[group] = values + getattr(ref_kept, group) if modes >> bit & 1 else values
        new = _read_intra_block(r, MAX_GAUSSIANS - kept_count)
        q = QuantizedFrame(**groups).concat(new)
    else:
        raise r.error(f"unknown frame type {kind}")
    r.expect_end()
    return q


STREAM_INFO_VERSION = 1


def encode_stream_info(spec: QuantSpec, *, gaussians: int, gop: int, encoder: str) -> bytes:
    """The STREAM_INFO payload: what a decoder needs to rebuild Gaussians
    (the quantisation grids) plus informational encoder settings."""
    w = ByteWriter()
    w.u8(STREAM_INFO_VERSION)
    for value in (spec.pos_step, spec.chol_step, spec.luma_step, spec.chroma_step):
        w.f64(value)
    w.varint(gaussians)
    w.varint(gop)
    w.blob(encoder.encode("utf-8")[:255])
    return w.getvalue()


def decode_stream_info(data: bytes, *, context: str = "STREAM_INFO") -> tuple[QuantSpec, dict[str, object]]:
    """Inverse of :func:`encode_stream_info`: ``(spec, {"gaussians", "gop", "encoder"})``.
    Raises GFixFormatError (prefixed with ``context``) on any inconsistency."""
    r = ByteReader(data, context=context)
    version = r.u8("stream info version")
    if version != STREAM_INFO_VERSION:
        raise r.error(f"unsupported stream info version {version}")
    steps = [r.f64(name) for name in ("pos_step", "chol_step", "luma_step", "chroma_step")]
    try:
        spec = QuantSpec(*steps)
    except ValueError as exc:
        raise r.error(f"invalid quantisation steps: {exc}") from None
    gaussians = r.varint("gaussians", maximum=MAX_GAUSSIANS)
    gop = r.varint("gop", maximum=1 << 20)
    encoder = r.blob("encoder").decode("utf-8", errors="replace")
    r.expect_end()
    return spec, {"gaussians": gaussians, "gop": gop, "encoder": encoder}
