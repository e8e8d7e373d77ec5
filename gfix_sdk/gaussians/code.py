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

Every channel goes through :func:`gfix_sdk.coding.encode_symbols` with the
native rANS coder (:attr:`gfix_sdk.coding.Coder.RANS`, stream version 2);
version 1 streams, coded with constriction's ANS, still decode.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import torch
from torch import Tensor

from gfix_sdk.coding import ByteReader, ByteWriter, Coder, decode_channels, encode_symbols
from gfix_sdk.gaussians.quantize import QuantizedFrame, QuantSpec

MAX_GAUSSIANS = 1 << 22  # per frame; a guard against absurd counts in a bad file
_GROUPS = ("means", "chol", "colors")
_GROUP_COLS = {"means": 2, "chol": 3, "colors": 3}
# Frames are decoded on every playback: the coder with the fast decoder.
_CODER = Coder.RANS


def _encode(values: Tensor) -> bytes:
    return encode_symbols(values.cpu().numpy(), coder=_CODER)


class FrameType(IntEnum):
    INTRA = 0
    PREDICTED = 1


def sort_order(q: QuantizedFrame) -> Tensor:
    """Stable permutation that sorts Gaussians by (y, x) grid position."""
    by_x = torch.argsort(q.means[:, 0], stable=True)
    return by_x[torch.argsort(q.means[by_x, 1], stable=True)]


def _write_channels(w: ByteWriter, values: Tensor) -> None:
    for column in values.T:
        w.raw(_encode(column))


def _write_intra_block(w: ByteWriter, q: QuantizedFrame) -> None:
    """``q`` must already be in sorted order."""
    w.varint(q.num_gaussians)
    y = q.means[:, 1]
    y_steps = torch.cat([y[:1], torch.diff(y)]) if len(y) else y
    w.raw(_encode(y_steps))
    w.raw(_encode(q.means[:, 0]))
    _write_channels(w, q.chol)
    _write_channels(w, q.colors)


# An intra block's channels in stream order, and the row of the frame's
# channel-major (8, N) array (x, y, chol[0..2], colors[0..2]) each decodes into.
_INTRA_FIELDS = ("y steps", "x", "chol[0]", "chol[1]", "chol[2]", "colors[0]", "colors[1]", "colors[2]")
_INTRA_ROWS = (1, 0, 2, 3, 4, 5, 6, 7)


def _read_intra_rows(r: ByteReader, limit: int) -> np.ndarray:
    """An intra block as the channel-major (8, N) array."""
    count = r.varint("Gaussian count", maximum=limit)
    data = np.empty((8, count), dtype=np.int64)
    decode_channels(r, count, _INTRA_FIELDS, [data[row] for row in _INTRA_ROWS])
    y = data[1]  # decoded as steps
    if count > 1 and y[1:].min() < 0:
        raise r.error("intra positions are not sorted (corrupted)")
    np.cumsum(y, out=y)
    return data


def _frame_view(data: np.ndarray) -> QuantizedFrame:
    """The frame held by the channel-major rows of ``data`` (transposed views, no copy)."""
    frame = torch.from_numpy(data)
    return QuantizedFrame(means=frame[:2].T, chol=frame[2:5].T, colors=frame[5:].T)


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
    w.raw(_encode(keep.to(torch.int64)))
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
        q = _frame_view(_read_intra_rows(r, MAX_GAUSSIANS))
    elif kind == FrameType.PREDICTED:
        if ref is None:
            raise r.error("predicted frame without a reference frame")
        count = r.varint("reference Gaussian count", maximum=MAX_GAUSSIANS)
        if count != ref.num_gaussians:
            raise r.error(f"frame refers to {count} Gaussians but the reference has {ref.num_gaussians}")
        keep_values = np.empty(count, dtype=np.int64)
        decode_channels(r, count, ["keep flags"], [keep_values])
        if count and (keep_values.min() < 0 or keep_values.max() > 1):
            raise r.error("keep flags must be 0 or 1")
        kept_index = np.flatnonzero(keep_values)
        modes = r.u8("prediction modes")
        if modes >> len(_GROUPS):
            raise r.error(f"unknown prediction mode bits {modes:#x}")
        # The kept Gaussians' channels (means, chol, colors) into the rows of one array.
        kept = np.empty((8, len(kept_index)), dtype=np.int64)
        decode_channels(r, len(kept_index), [f"{group}[{k}]" for group in _GROUPS for k in range(_GROUP_COLS[group])],
                        list(kept))
        row = 0
        for bit, group in enumerate(_GROUPS):
            cols = _GROUP_COLS[group]
            if modes >> bit & 1:  # residuals on the kept reference Gaussians
                reference = getattr(ref, group).cpu().numpy().T  # (cols, N)
                kept[row:row + cols] += np.take(reference, kept_index, axis=1)
            row += cols
        new = _read_intra_rows(r, MAX_GAUSSIANS - len(kept_index))
        q = _frame_view(np.concatenate([kept, new], axis=1))
    else:
        raise r.error(f"unknown frame type {kind}")
    r.expect_end()
    return q


# 1: frames coded with constriction's ANS; 2: with the native rANS (any
# version-2 decoder reads both: the coder is flagged per channel).
STREAM_INFO_VERSION = 2
_READABLE_STREAM_INFO_VERSIONS = (1, 2)


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
    if version not in _READABLE_STREAM_INFO_VERSIONS:
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
