"""Entropy coding of integer arrays: constriction's ANS coder, or our native rANS.

Each array (a "channel", e.g. the quantised x positions of a frame) is coded
with whichever of these models gives the fewest bytes, the model's parameters
travelling in front of the data:

* ``CONSTANT``    - every value equal: just the value.
* ``EMPIRICAL``   - the channel's own histogram (non-parametric), sent as counts.
* ``LAPLACE``     - a discrete Laplace (two-sided geometric) centred on an
  integer, sent as its centre and its decay ratio in 16-bit fixed point.
* ``LAPLACE_MIX`` - a mixture of a narrow and a wide discrete Laplace with a
  common centre (sparse data: a spike plus tails), sent as two ratios and a
  16-bit mixing weight.
* ``RAW``         - fixed-width bit packing (for near-uniform channels).
* ``LOG_HISTOGRAM`` - the histogram with counts rounded to quarter octaves
  (``round(4 log2(1 + count))``), sent as differences coded by this module
  (without histogram models). Costs a few bits per alphabet entry instead of
  EMPIRICAL's bytes; the approximation costs well under 1 % in rate.

Probability tables are built from integers only (counts, or the Laplace table
by fixed-point recursion), so the decoder rebuilds the very same table on any
machine: no ``exp``/``log`` whose last bit could differ between platforms
decides a symbol's probability.

The table models are coded by one of two coders (:class:`Coder`), flagged in
the model byte's top bit:

* ``ANS`` - constriction's ``AnsCoder``, which turns the integer weights into
  its fixed-point model deterministically (``Categorical(..., perfect=False)``).
  Used for the enhancer's adapter and by format 1 Gaussian streams.
* ``RANS`` - the native rANS coder of ``csrc/rans.h`` (24-bit probabilities
  from the weights by integer-only rounding, 64-bit states, 32-bit words, up
  to 4 interleaved states for long channels): the same rate, decoded with a
  table lookup at a few ns per symbol instead of constriction's CDF search
  (10-70 ns). Used for Gaussian frames, whose decoding is on every frame's path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from enum import IntEnum

import constriction
import numpy as np

from gfix_sdk.coding.bytestream import ByteReader, ByteWriter

MAX_ALPHABET = 1 << 16  # table-based models; wider channels use RAW
MAX_ABS_SYMBOL = (1 << 31) - 1
_LAPLACE_PEAK = 1 << 30
_RATIO_ONE = 1 << 16


class Coder(IntEnum):
    """The entropy coder of a table model (bit 7 of the model byte)."""

    ANS = 0   #: constriction's AnsCoder
    RANS = 1  #: gfix_sdk._C's rANS (csrc/rans.h)


_RANS_FLAG = 0x80


class Model(IntEnum):
    CONSTANT = 0
    EMPIRICAL = 1
    LAPLACE = 2
    RAW = 3
    LAPLACE_MIX = 4
    LOG_HISTOGRAM = 5


_LOG_STEPS = 4  # quarter octaves
# 2^(k/4) in 16-bit fixed point, k = 0..3: integer tables from log counts.
_FRACTIONAL_POWERS = (65536, 77936, 92682, 110218)


def log_histogram_table(levels: np.ndarray) -> np.ndarray:
    """Integer weights ~ 2^(level / 4) (0 for level 0), exact on every machine."""
    levels = levels.astype(np.int64)
    fractional = np.asarray(_FRACTIONAL_POWERS, dtype=np.int64)[levels % _LOG_STEPS]
    return np.where(levels > 0, fractional << (levels // _LOG_STEPS), 0)


def laplace_table(center: int, ratio_q: int, lo: int, hi: int) -> np.ndarray:
    """Integer weights over ``[lo, hi]`` of a discrete Laplace: weight(k) =
    T(|k - center|) with T(0) = 2^30 and T(d + 1) = max(1, T(d) * ratio_q >> 16).

    Built in the native module (exact integers, thousands of steps for a wide
    channel); :func:`laplace_decay_reference` is the recursion's Python twin."""
    from gfix_sdk._native import cpu_module

    return cpu_module().laplace_weights(_LAPLACE_PEAK, int(center), int(lo), int(hi), int(ratio_q))


def laplace_decay_reference(ratio_q: int, reach: int) -> np.ndarray:
    """The decay T(0..reach-1) of :func:`laplace_table`, one Python step at a time."""
    decay = np.ones(reach, dtype=np.int64)
    value = _LAPLACE_PEAK
    for d in range(reach):
        decay[d] = value
        if value == 1:
            break
        value = max(1, (value * ratio_q) >> 16)
    return decay


def laplace_mixture_table(center: int, ratio_narrow: int, ratio_wide: int, weight_q: int, lo: int, hi: int) -> np.ndarray:
    """Integer weights ``max(1, (w T_narrow + (2^16 - w) T_wide) >> 16)`` with ``w = weight_q``
    (``T`` as in :func:`laplace_table`)."""
    from gfix_sdk._native import cpu_module

    return cpu_module().laplace_weights(_LAPLACE_PEAK, int(center), int(lo), int(hi), int(ratio_narrow),
                                        int(ratio_wide), int(weight_q))


def _table_encode(symbols: np.ndarray, weights: np.ndarray, coder: Coder) -> np.ndarray:
    if coder is Coder.RANS:
        from gfix_sdk._native import cpu_module

        return cpu_module().rans_encode(symbols.astype(np.int64), weights.astype(np.int64))
    model = constriction.stream.model.Categorical(weights.astype(np.float64), perfect=False)
    ans = constriction.stream.stack.AnsCoder()
    ans.encode_reverse(symbols.astype(np.int32), model)
    return ans.get_compressed()


def _table_decode(words: np.ndarray, weights: np.ndarray, count: int, reader: ByteReader, field: str, coder: Coder,
                  offset: int, out: np.ndarray | None) -> np.ndarray:
    """The ``count`` symbols (plus ``offset``), in ``out`` when given."""
    if coder is Coder.RANS:
        from gfix_sdk._native import cpu_module

        try:
            return cpu_module().rans_decode(words, weights, count, offset, out)
        except (ValueError, RuntimeError) as exc:  # a damaged table or damaged words
            raise reader.error(f"{field}: entropy-coded data is invalid ({exc})") from None
    symbols = _ans_decode(words, weights, count, reader) + offset
    if out is None:
        return symbols
    out[:] = symbols
    return out


def _ans_decode(words: np.ndarray, weights: np.ndarray, count: int, reader: ByteReader) -> np.ndarray:
    try:
        # Inside the try: a table read from a damaged file may not be a distribution.
        model = constriction.stream.model.Categorical(weights.astype(np.float64), perfect=False)
        coder = constriction.stream.stack.AnsCoder(words)
        symbols = coder.decode(model, count)
    except (ValueError, RuntimeError) as exc:
        raise reader.error(f"entropy-coded data is invalid ({exc})") from exc
    if not coder.is_empty():
        # After popping exactly `count` symbols an intact ANS stream is empty.
        raise reader.error("entropy-coded data does not match its symbol count (corrupted)")
    return symbols.astype(np.int64)


def _encode_with(model: Model, values: np.ndarray, hints: tuple = (), coder: Coder = Coder.ANS) -> bytes:
    w = ByteWriter()
    coded = model not in (Model.CONSTANT, Model.RAW)
    w.u8(int(model) | (_RANS_FLAG if coded and coder is Coder.RANS else 0))
    lo, hi = int(values.min()), int(values.max())
    if model is Model.CONSTANT:
        w.svarint(lo)
    elif model is Model.RAW:
        bits = max(1, (hi - lo).bit_length())
        w.svarint(lo)
        w.u8(bits)
        w.raw(_pack_bits(values - lo, bits))
    elif model is Model.EMPIRICAL:
        counts = np.bincount(values - lo, minlength=hi - lo + 1)
        w.svarint(lo)
        w.varint(hi - lo + 1)
        for c in counts:
            w.varint(int(c))
        w.u32_array(_table_encode(values - lo, counts, coder))
    elif model is Model.LOG_HISTOGRAM:
        counts = np.bincount(values - lo, minlength=hi - lo + 1)
        levels = np.round(_LOG_STEPS * np.log2(1.0 + counts)).astype(np.int64)
        w.svarint(lo)
        w.varint(hi - lo + 1)
        w.raw(encode_symbols(np.diff(levels, prepend=0), coder=coder, _allow_histograms=False))
        w.u32_array(_table_encode(values - lo, log_histogram_table(levels), coder))
    elif model is Model.LAPLACE_MIX:
        center, narrow, wide, weight_q = _fit_laplace_mixture(values, hints)
        w.svarint(lo)
        w.varint(hi - lo)
        w.svarint(center - lo)
        w.u16(narrow)
        w.u16(wide)
        w.u16(weight_q)
        table = laplace_mixture_table(center - lo, narrow, wide, weight_q, 0, hi - lo)
        w.u32_array(_table_encode(values - lo, table, coder))
    elif model is Model.LAPLACE:
        center, ratio_q = _fit_laplace(values)
        w.svarint(lo)
        w.varint(hi - lo)
        w.svarint(center - lo)
        w.u16(ratio_q)
        w.u32_array(_table_encode(values - lo, laplace_table(center - lo, ratio_q, 0, hi - lo), coder))
    return w.getvalue()


def _fit_laplace(values: np.ndarray) -> tuple[int, int]:
    """Centre (median) and fixed-point decay ratio minimising the coded size."""
    center = int(np.median(values))
    lo, hi = int(values.min()), int(values.max())
    counts = np.bincount(values - lo, minlength=hi - lo + 1).astype(np.float64)
    mad = float(np.mean(np.abs(values - center)))
    # Two-sided geometric: E|k| = 2r / (1 - r^2)  ->  r = (sqrt(1 + m^2) - 1) / m.
    guess = (math.sqrt(1.0 + mad * mad) - 1.0) / mad if mad > 0 else 0.01
    best = None
    for factor in (0.9, 0.97, 1.0, 1.03, 1.1):
        r = min(max(1.0 - (1.0 - guess) * factor, 1e-4), 1.0 - 1.0 / _RATIO_ONE)
        ratio_q = int(round(r * _RATIO_ONE))
        table = laplace_table(center - lo, ratio_q, 0, hi - lo).astype(np.float64)
        bits = -float(np.sum(counts * np.log2(table / table.sum())))
        if best is None or bits < best[0]:
            best = (bits, ratio_q)
    return center, best[1]


def _mixture_bits(counts: np.ndarray, distance: np.ndarray, narrow: float, wide: float, weight: float) -> float:
    table = weight * narrow**distance / (narrow**distance).sum() + (1 - weight) * wide**distance / (wide**distance).sum()
    return float(-(counts * np.log2(np.maximum(table, 1e-300))).sum())


def _fit_laplace_mixture(values: np.ndarray, hints: tuple[tuple[float, float, float], ...] = ()) -> tuple[int, int, int, int]:
    """Centre and fixed-point (narrow ratio, wide ratio, weight) minimising the
    cross-entropy with the histogram: a coarse grid (plus any ``hints``), then
    coordinate descent in (log-decay, logit-weight) space, all on float tables;
    the exact integer table is built once for the winner."""
    center = int(np.median(values))
    lo, hi = int(values.min()), int(values.max())
    counts = np.bincount(values - lo, minlength=hi - lo + 1).astype(np.float64)
    distance = np.abs(np.arange(lo, hi + 1) - center).astype(np.float64)
    ratios = 1.0 - np.geomspace(0.95, 1e-3, 14)
    weights = np.array([0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995])
    tables = ratios[:, None] ** distance[None, :]
    tables /= tables.sum(1, keepdims=True)
    best = None
    for i, narrow in enumerate(ratios):
        for j in range(i, len(ratios)):
            mix = weights[:, None] * tables[i] + (1 - weights[:, None]) * tables[j]
            bits = -(counts[None, :] * np.log2(np.maximum(mix, 1e-300))).sum(1)
            k = int(np.argmin(bits))
            if best is None or bits[k] < best[0]:
                best = (bits[k], narrow, ratios[j], weights[k])
    for narrow, wide, weight in hints:
        bits = _mixture_bits(counts, distance, narrow, wide, weight)
        if bits < best[0]:
            best = (bits, narrow, wide, weight)
    # Local refinement: x = (-log(1 - r_narrow), -log(1 - r_wide), logit(w)).
    x = np.array([-np.log1p(-best[1]), -np.log1p(-best[2]), np.log(best[3] / (1 - best[3]))])
    decode = lambda x: (1 - np.exp(-x[0]), 1 - np.exp(-x[1]), 1 / (1 + np.exp(-x[2])))  # noqa: E731
    cost, delta = best[0], 0.5
    while delta > 0.01:
        improved = False
        for axis in range(3):
            for sign in (1.0, -1.0):
                trial = x.copy()
                trial[axis] += sign * delta
                r1, r2, w = decode(trial)
                if not (0 < r1 < 1 and 0 < r2 < 1 and 0 < w < 1):
                    continue
                value = _mixture_bits(counts, distance, r1, r2, w)
                if value < cost:
                    x, cost, improved = trial, value, True
        if not improved:
            delta /= 2
    r1, r2, w = decode(x)
    to_q = lambda r: int(min(max(round(r * _RATIO_ONE), 1), _RATIO_ONE - 1))  # noqa: E731
    return center, to_q(r1), to_q(r2), to_q(w)


def _pack_bits(values: np.ndarray, bits: int) -> bytes:
    as_bits = ((values[:, None] >> np.arange(bits, dtype=np.int64)) & 1).astype(np.uint8)
    return np.packbits(as_bits.reshape(-1), bitorder="little").tobytes()


def _unpack_bits(data: bytes, count: int, bits: int) -> np.ndarray:
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")[: count * bits]
    return (flat.reshape(count, bits).astype(np.int64) << np.arange(bits, dtype=np.int64)).sum(1)


def encode_symbols(
    values: np.ndarray,
    *,
    mixture_hints: tuple[tuple[float, float, float], ...] = (),
    coder: Coder = Coder.ANS,
    _allow_histograms: bool = True,
) -> bytes:
    """Code a 1-D integer array; the count is not stored (the caller knows it).

    ``mixture_hints``: optional ``(narrow ratio, wide ratio, weight)`` triples
    (e.g. a trained rate model's Laplace mixture expressed per grid step) that
    the LAPLACE_MIX fit also tries. ``coder``: the entropy coder of the table
    models (:class:`Coder`); :func:`decode_symbols` reads it from the data."""
    values = np.asarray(values)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError("values must be a 1-D integer array")
    values = values.astype(np.int64)
    if len(values) == 0:
        return bytes([int(Model.CONSTANT), 0])
    lo, hi = int(values.min()), int(values.max())
    if max(abs(lo), abs(hi)) > MAX_ABS_SYMBOL:
        raise ValueError(f"symbols must lie within +-{MAX_ABS_SYMBOL}")
    if lo == hi:
        return _encode_with(Model.CONSTANT, values, coder=coder)
    candidates = [Model.RAW]
    if hi - lo < MAX_ALPHABET:
        candidates += [Model.LAPLACE, Model.LAPLACE_MIX]
        if _allow_histograms and hi - lo + 1 <= 4 * len(values) + 16:  # a histogram can pay for itself
            candidates += [Model.EMPIRICAL, Model.LOG_HISTOGRAM]
    return min((_encode_with(m, values, mixture_hints, coder) for m in candidates), key=len)


def decode_symbols(reader: ByteReader, count: int, field: str = "symbols", *,
                   out: np.ndarray | None = None, _histograms: bool = True) -> np.ndarray:
    """Inverse of :func:`encode_symbols` for ``count`` values read from ``reader``.

    Raises:
        GFixFormatError: the data is not a valid coding of ``count`` values
            (the message names ``field`` and the byte offset).
    """
    if out is not None and (out.shape != (count,) or out.dtype != np.int64 or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous int64 array of {count} values")
    values = _read_coding(reader, count, field, _histograms)(out)
    if out is not None and values is not out:
        out[:] = values
        return out
    return values


def skip_symbols(reader: ByteReader, count: int, field: str = "symbols") -> None:
    """Move ``reader`` past the coding of ``count`` values without decoding them:
    the model and its parameters are read and checked, the coded words are
    not decoded, and nothing of the size of ``count`` is allocated. For
    containers that learn how many values there must be only later
    (:func:`~gfix_sdk.enhance.adapter.decode_adapter`); decode the bytes
    passed over with :func:`decode_symbols` then.

    Raises:
        GFixFormatError: the model or its parameters are malformed, or the data is truncated.
    """
    _read_coding(reader, count, field, True)


def decode_channels(reader: ByteReader, count: int, fields: Sequence[str], outs: Sequence[np.ndarray]) -> None:
    """Decode ``len(fields)`` consecutive codings of ``count`` values each,
    channel ``k`` (named ``fields[k]`` in errors) into ``outs[k]`` (C-contiguous
    int64 arrays of ``count`` values): what :func:`decode_symbols` gives per
    channel, but read and decoded in one native call (the channels decoded in
    parallel) when every channel is rANS-coded or needs no coder - how a
    frame's attribute channels are read. Anything else (constriction's ANS,
    damaged data) goes through the Python reader, which decodes it or raises.

    Raises:
        GFixFormatError: a channel is not a valid coding of ``count`` values.
    """
    if len(outs) != len(fields):
        raise ValueError("one output array per field")
    for out in outs:
        if out.shape != (count,) or out.dtype != np.int64 or not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError(f"outs must be writeable, C-contiguous int64 arrays of {count} values")
    from gfix_sdk._native import cpu_module

    start = reader.pos
    end = cpu_module().decode_channels(reader.buffer, start, count, list(outs))
    if end >= 0:
        reader.skip(end - start)
        return
    for field, out in zip(fields, outs):
        values = _read_coding(reader, count, field, True)(out)
        if values is not out:
            out[:] = values


def _read_coding(reader: ByteReader, count: int, field: str, histograms: bool) -> Callable[[np.ndarray | None], np.ndarray]:
    """Read the coding of ``count`` values (the model, its parameters and the
    coded data), leaving the symbols to be decoded."""
    model_byte = reader.u8(f"{field} model")
    coder = Coder.RANS if model_byte & _RANS_FLAG else Coder.ANS
    try:
        model = Model(model_byte & ~_RANS_FLAG)
    except ValueError:
        raise reader.error(f"{field}: unknown entropy model") from None
    if coder is Coder.RANS and model in (Model.CONSTANT, Model.RAW):
        raise reader.error(f"{field}: an entropy coder flagged on a model without one")
    if not histograms and model in (Model.EMPIRICAL, Model.LOG_HISTOGRAM):
        # The encoder never codes a histogram with a histogram model; allowing
        # it would let a crafted file nest them until Python's stack overflows.
        raise reader.error(f"{field}: a histogram coded with a histogram model")
    lo = reader.svarint(f"{field} minimum", bound=MAX_ABS_SYMBOL)
    if model is Model.CONSTANT:
        def decode_constant(out: np.ndarray | None) -> np.ndarray:
            if out is None:
                return np.full(count, lo, dtype=np.int64)
            out.fill(lo)
            return out

        return decode_constant
    if model is Model.RAW:
        bits = reader.u8(f"{field} bit width")
        if not 1 <= bits <= 32:
            raise reader.error(f"{field}: bit width {bits} out of range")
        data = reader.raw((count * bits + 7) // 8, f"{field} packed bits")
        return lambda out: _unpack_bits(data, count, bits) + lo
    if model is Model.LOG_HISTOGRAM:
        size = reader.varint(f"{field} alphabet size", maximum=MAX_ALPHABET)
        if size < 1:
            raise reader.error(f"{field}: empty alphabet")
        levels = np.cumsum(decode_symbols(reader, size, f"{field} histogram", _histograms=False))
        if levels.min() < 0 or levels.max() > _LOG_STEPS * 40:
            raise reader.error(f"{field}: histogram levels out of range")
        table = log_histogram_table(levels)
        if not table.any():
            raise reader.error(f"{field}: empty histogram")
        words = reader.u32_array(f"{field} words")

        def decode_log_histogram(out: np.ndarray | None) -> np.ndarray:
            symbols = _table_decode(words, table, count, reader, field, coder, lo, out)
            # rANS gives zero-weight symbols no slot; constriction's model may.
            if coder is Coder.ANS and count and table[symbols - lo].min() == 0:
                raise reader.error(f"{field}: symbol outside the histogram (corrupted)")
            return symbols

        return decode_log_histogram
    if model is Model.EMPIRICAL:
        size = reader.varint(f"{field} alphabet size", maximum=MAX_ALPHABET)
        if size < 1:
            raise reader.error(f"{field}: empty alphabet")
        counts = np.array([reader.varint(f"{field} count", maximum=count) for _ in range(size)], dtype=np.int64)
        if counts.sum() != count:
            raise reader.error(f"{field}: histogram holds {counts.sum()} symbols, expected {count}")
        words = reader.u32_array(f"{field} words")
        return lambda out: _table_decode(words, counts, count, reader, field, coder, lo, out)
    # LAPLACE and LAPLACE_MIX
    span = reader.varint(f"{field} alphabet span", maximum=MAX_ALPHABET - 1)
    center = reader.svarint(f"{field} centre", bound=MAX_ALPHABET)
    ratios = [reader.u16(f"{field} ratio") for _ in range(2 if model is Model.LAPLACE_MIX else 1)]
    weight_q = reader.u16(f"{field} mixing weight") if model is Model.LAPLACE_MIX else 0
    if not all(0 < r < _RATIO_ONE for r in ratios) or not 0 <= center <= span:
        raise reader.error(f"{field}: invalid Laplace parameters")
    words = reader.u32_array(f"{field} words")
    if model is Model.LAPLACE_MIX:
        table = laplace_mixture_table(center, ratios[0], ratios[1], weight_q, 0, span)
    else:
        table = laplace_table(center, ratios[0], 0, span)
    return lambda out: _table_decode(words, table, count, reader, field, coder, lo, out)


def symbols_cost_bytes(values: np.ndarray, coder: Coder = Coder.ANS) -> int:
    """Exact coded size of :func:`encode_symbols` (for choosing between codings)."""
    return len(encode_symbols(values, coder=coder))


__all__ = ["Coder", "Model", "encode_symbols", "decode_symbols", "decode_channels", "symbols_cost_bytes", "laplace_table", "laplace_mixture_table", "log_histogram_table"]
