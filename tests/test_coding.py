"""Byte streams and entropy-coded integer channels."""

import numpy as np
import pytest

from gfix_sdk.coding import ByteReader, ByteWriter, decode_symbols, encode_symbols
from gfix_sdk.coding.symbols import Model, laplace_decay_reference, laplace_table
from gfix_sdk.errors import GFixFormatError

RNG = np.random.default_rng(0)
CHANNELS = {
    "laplace": np.round(RNG.laplace(3, 2.0, 5000)).astype(np.int64),
    "uniform": RNG.integers(0, 4096, 3000),
    "constant": np.full(100, -7),
    "two": np.array([1, -2]),
    "sparse": (RNG.random(4000) < 0.05).astype(np.int64),
    "wide": RNG.integers(-(2**30), 2**30, 500),
    "empty": np.zeros(0, dtype=np.int64),
}


@pytest.mark.parametrize("name", list(CHANNELS))
def test_round_trip(name):
    values = CHANNELS[name]
    reader = ByteReader(encode_symbols(values))
    np.testing.assert_array_equal(decode_symbols(reader, len(values)), values)
    reader.expect_end()


def test_size_close_to_empirical_entropy():
    for name in ("laplace", "sparse"):
        values = CHANNELS[name]
        _, counts = np.unique(values, return_counts=True)
        entropy_bytes = -(counts * np.log2(counts / counts.sum())).sum() / 8
        assert len(encode_symbols(values)) <= entropy_bytes * 1.03 + 16


def test_picks_the_smallest_model():
    assert encode_symbols(CHANNELS["constant"])[0] == Model.CONSTANT
    assert encode_symbols(CHANNELS["uniform"])[0] == Model.RAW
    assert encode_symbols(CHANNELS["laplace"])[0] in (Model.LAPLACE, Model.EMPIRICAL)


@pytest.mark.parametrize("ratio_q", [1, 3000, 40000, 65000, 65535])
def test_native_laplace_decay_matches_the_python_recursion(ratio_q):
    """The table both ends of the coder rebuild: the native recursion must be
    the reference's to the last unit (including the floor of 1 and past it)."""
    from gfix_sdk._native import cpu_module

    reach = 70000
    native = cpu_module().laplace_decay(1 << 30, ratio_q, reach)
    np.testing.assert_array_equal(native, laplace_decay_reference(ratio_q, reach))
    with pytest.raises(ValueError):
        cpu_module().laplace_decay(1 << 30, 0, 4)


def test_laplace_table_is_integer_and_symmetric():
    table = laplace_table(10, 40000, 0, 20)
    assert table.dtype == np.int64 and table[10] == 2**30
    np.testing.assert_array_equal(table[:10], table[11:][::-1])
    assert np.all(np.diff(table[10:]) <= 0) and table.min() >= 1


def test_truncated_stream_raises_format_error():
    data = encode_symbols(CHANNELS["laplace"])
    for cut in (0, 1, 3, len(data) // 2, len(data) - 1):
        with pytest.raises(GFixFormatError):
            decode_symbols(ByteReader(data[:cut], context="test"), len(CHANNELS["laplace"]))


def test_corrupted_words_are_detected():
    values = CHANNELS["laplace"]
    data = bytearray(encode_symbols(values))
    data[-3] ^= 0x5A  # flip bits inside the ANS words
    with pytest.raises(GFixFormatError, match="corrupted|invalid"):
        decode_symbols(ByteReader(bytes(data)), len(values))


def test_unknown_model_and_absurd_sizes_rejected():
    with pytest.raises(GFixFormatError, match="unknown entropy model"):
        decode_symbols(ByteReader(bytes([9, 0])), 4)
    w = ByteWriter()
    w.u8(int(Model.EMPIRICAL))
    w.svarint(0)
    w.varint(10**9)  # alphabet size far beyond the limit
    with pytest.raises(GFixFormatError, match="alphabet size"):
        decode_symbols(ByteReader(w.getvalue()), 4)


def test_reader_bounds_and_varints():
    w = ByteWriter()
    w.u32(7)
    w.varint(300)
    w.svarint(-5)
    w.blob(b"abc")
    r = ByteReader(w.getvalue(), context="hdr")
    assert (r.u32(), r.varint(), r.svarint(), r.blob()) == (7, 300, -5, b"abc")
    r.expect_end()
    with pytest.raises(GFixFormatError, match="hdr: truncated"):
        ByteReader(b"\x01\x02", context="hdr").u32("width")
    with pytest.raises(GFixFormatError, match="exceeds the maximum"):
        ByteReader(bytes([0xFF, 0x01])).varint("count", maximum=10)
    with pytest.raises(GFixFormatError, match="longer than"):
        ByteReader(b"\xff" * 12).varint()


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        encode_symbols(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError):
        encode_symbols(np.array([0.5, 1.0]))


def test_an_all_zero_histogram_is_a_format_error_not_a_bare_value_error():
    """A crafted EMPIRICAL channel whose counts are all zero (count 0) must not
    reach constriction as a non-normalisable distribution."""
    w = ByteWriter()
    w.u8(int(Model.EMPIRICAL))
    w.svarint(0)
    w.varint(3)
    for _ in range(3):
        w.varint(0)
    w.u32_array(np.array([1], dtype=np.uint32))
    with pytest.raises(GFixFormatError, match="invalid|corrupted"):
        decode_symbols(ByteReader(w.getvalue()), 0)


# ------------------------------------------------------------------ native rANS
from gfix_sdk.coding import Coder, decode_channels  # noqa: E402
from gfix_sdk.coding.symbols import laplace_mixture_table  # noqa: E402


def _native():
    from gfix_sdk._native import cpu_module

    return cpu_module()


@pytest.mark.parametrize("count", [0, 1, 2, 4095, 4096, 4097, 16383, 16384, 16387])
@pytest.mark.parametrize("alphabet", [2, 7, 300, 40000])
def test_rans_round_trip_across_lane_counts_and_alphabets(count, alphabet):
    """1, 2 and 4 interleaved states (the 4096/16384 thresholds and the tails
    that do not fill a round), narrow to wide alphabets, skewed weights."""
    rng = np.random.default_rng(count * 7 + alphabet)
    weights = np.maximum(1, (1e6 * np.exp(-np.arange(alphabet) / max(1, alphabet / 8)))).astype(np.int64)
    symbols = rng.choice(alphabet, size=count, p=weights / weights.sum())
    words = _native().rans_encode(symbols, weights)
    assert words.dtype == np.uint32
    np.testing.assert_array_equal(_native().rans_decode(words, weights, count), symbols)
    out = np.full(count, -1, dtype=np.int64)
    assert _native().rans_decode(words, weights, count, 5, out) is out
    np.testing.assert_array_equal(out, symbols + 5)


def test_rans_zero_weight_symbols_and_a_certain_symbol():
    weights = np.array([0, 5, 0, 0, 3, 0], dtype=np.int64)
    symbols = np.array([1, 4, 4, 1, 1, 4] * 1000)
    words = _native().rans_encode(symbols, weights)
    np.testing.assert_array_equal(_native().rans_decode(words, weights, len(symbols)), symbols)
    with pytest.raises(ValueError, match="no probability"):
        _native().rans_encode(np.array([2]), weights)
    # One symbol with all the probability costs nothing: the states stay 0 (no state words),
    # only the lane table remains.
    certain = np.array([0, 9, 0], dtype=np.int64)
    words = _native().rans_encode(np.ones(20000, dtype=np.int64), certain)
    np.testing.assert_array_equal(words, [0, 0, 0, 0])  # four empty lanes
    np.testing.assert_array_equal(_native().rans_decode(words, certain, 20000), np.ones(20000))


@pytest.mark.parametrize("count", [1, 3, 5, 40, 4096, 20000])
def test_rans_states_take_only_the_words_they_need(count):
    """States start at 0: a lane holding under 32 bits of information ends in
    one state word (none at 0), a fuller one in two; decoding takes exactly
    those words, and a non-canonical state is refused."""
    weights = np.array([1, 1, 1, 1], dtype=np.int64)  # 2 bits per symbol
    symbols = np.random.default_rng(count).integers(0, 4, count)
    words = _native().rans_encode(symbols, weights)
    lanes = 1 if count < 4096 else 2 if count < 16384 else 4
    bits = 2 * count
    # 2 bits/symbol in 32-bit words; a lane's final state holds 32-64 bits, so at most
    # two words per lane above the information, plus the lane table.
    assert len(words) - (lanes if lanes > 1 else 0) <= -(-bits // 32) + 2 * lanes
    if count <= 15:  # under 32 bits: one word
        assert len(words) == 1 and words[0] != 0
        padded = np.array([words[0], 0], dtype=np.uint32)  # the same value in two words
        with pytest.raises(RuntimeError, match="state is invalid"):
            _native().rans_decode(padded, weights, count)
    np.testing.assert_array_equal(_native().rans_decode(words, weights, count), symbols)


def test_rans_a_lane_of_first_symbols_is_empty_and_framed_by_its_caller():
    """A state starting at 0 stays 0 under the first symbol, so such a lane
    has no words at all; with several lanes the stored lane sizes must add
    up to the stream, so a cut stream is not read as one (a single lane's
    length is framed by the frame layer, inside a CRC-checked section)."""
    weights = np.array([1, 1], dtype=np.int64)
    assert len(_native().rans_encode(np.zeros(100, dtype=np.int64), weights)) == 0
    np.testing.assert_array_equal(_native().rans_decode(np.zeros(0, dtype=np.uint32), weights, 100), np.zeros(100))
    symbols = np.zeros(5000, dtype=np.int64)
    symbols[1::2] = np.random.default_rng(0).integers(0, 2, 2500)  # lane 0 all zeros, lane 1 not
    words = _native().rans_encode(symbols, weights)
    assert words[0] == 0 and words[1] > 0 and len(words) == 2 + words[1]
    np.testing.assert_array_equal(_native().rans_decode(words, weights, 5000), symbols)
    with pytest.raises(RuntimeError, match="lanes are inconsistent"):
        _native().rans_decode(words[:-1], weights, 5000)


def test_rans_rejects_tables_no_weights_can_make():
    for bad in ([0, 0], [-1, 3], []):
        with pytest.raises(ValueError):
            _native().rans_encode(np.zeros(1, dtype=np.int64), np.array(bad, dtype=np.int64))


def test_rans_output_array_is_written_in_place_or_refused():
    words = _native().rans_encode(np.array([0, 1, 1]), np.array([1, 1]))
    for bad in (np.zeros(3, dtype=np.int32), np.zeros(6, dtype=np.int64)[::2], np.zeros(4, dtype=np.int64)):
        with pytest.raises((TypeError, ValueError)):
            _native().rans_decode(words, np.array([1, 1]), 3, 0, bad)


@pytest.mark.parametrize("count", [10, 5000, 20000])
def test_rans_damaged_words_are_errors_never_garbage(count):
    """Truncation, extra words, a bad state or inconsistent lane sizes: the
    decoder checks that every lane ends in its initial state having read every
    word, so damage surfaces as an error."""
    rng = np.random.default_rng(count)
    weights = np.array([50, 30, 10, 5, 3, 2], dtype=np.int64)
    symbols = rng.choice(6, size=count, p=weights / weights.sum())
    words = _native().rans_encode(symbols, weights)
    damaged = [words[:-1], np.append(words, 7), words[: len(words) // 2]]
    flipped = words.copy()
    flipped[len(words) // 2] ^= 0x00F0F000
    damaged.append(flipped)
    bad_state = words.copy()
    bad_state[_lane_table_size(count) + 1] = 0  # the first lane's state drops below 2^32
    damaged.append(bad_state)
    if _lane_table_size(count):
        bad_lanes = words.copy()
        bad_lanes[0] = len(words) + 5
        damaged.append(bad_lanes)
    for data in damaged:
        with pytest.raises(RuntimeError):
            _native().rans_decode(data.astype(np.uint32), weights, count)


def _lane_table_size(count: int) -> int:
    return 4 if count >= 16384 else 2 if count >= 4096 else 0


@pytest.mark.parametrize("name", [n for n in CHANNELS if n != "empty"])
def test_rans_channels_round_trip_at_constriction_size(name):
    """The model choice is the same; the native coder's bytes are within a
    few states (8 bytes each) of constriction's."""
    values = CHANNELS[name]
    data = encode_symbols(values, coder=Coder.RANS)
    reader = ByteReader(data)
    np.testing.assert_array_equal(decode_symbols(reader, len(values)), values)
    reader.expect_end()
    assert len(data) <= len(encode_symbols(values, coder=Coder.ANS)) * 1.005 + 3 * 8 + 4


def test_both_coders_decode_by_their_flag_and_the_flag_is_checked():
    values = CHANNELS["laplace"]
    ans, rans = encode_symbols(values, coder=Coder.ANS), encode_symbols(values, coder=Coder.RANS)
    assert ans[0] & 0x80 == 0 and rans[0] & 0x80 and ans[0] == rans[0] & 0x7F
    for data in (ans, rans):
        np.testing.assert_array_equal(decode_symbols(ByteReader(data), len(values)), values)
    constant = bytearray(encode_symbols(CHANNELS["constant"], coder=Coder.RANS))
    assert constant[0] == Model.CONSTANT  # no coder, no flag
    constant[0] |= 0x80
    with pytest.raises(GFixFormatError, match="flagged"):
        decode_symbols(ByteReader(bytes(constant)), len(CHANNELS["constant"]))


def test_decode_channels_equals_decode_symbols_and_names_the_damaged_field():
    channels = [CHANNELS["laplace"][:3000], CHANNELS["uniform"], CHANNELS["constant"].repeat(30),
                CHANNELS["sparse"][:3000]]
    channels = [np.resize(c, 3000) for c in channels]
    w = ByteWriter()
    for c in channels:
        w.raw(encode_symbols(c, coder=Coder.RANS))
    w.raw(encode_symbols(channels[0], coder=Coder.ANS))  # a constriction channel in the same batch
    data = w.getvalue()
    outs = [np.empty(3000, dtype=np.int64) for _ in range(5)]
    reader = ByteReader(data)
    decode_channels(reader, 3000, [f"c{k}" for k in range(5)], outs)
    reader.expect_end()
    for got, want in zip(outs, channels + channels[:1]):
        np.testing.assert_array_equal(got, want)
    # Damage the last word of the fourth channel (a rANS one): the error names it.
    sizes = [len(encode_symbols(c, coder=Coder.RANS)) for c in channels]
    damaged = bytearray(data)
    damaged[sum(sizes[:4]) - 2] ^= 0x41
    with pytest.raises(GFixFormatError, match="c3"):
        decode_channels(ByteReader(bytes(damaged)), 3000, [f"c{k}" for k in range(5)], outs)


@pytest.mark.parametrize("seed", range(40))
def test_native_laplace_tables_equal_the_python_recursion(seed):
    """Encoder and decoder rebuild these tables; the native builder must equal
    the definition (laplace_decay_reference) for single and mixed Laplaces."""
    rng = np.random.default_rng(seed)
    span = int(rng.integers(0, 3000))
    center = int(rng.integers(0, span + 1))
    narrow, wide = (int(v) for v in rng.integers(1, 65536, 2))
    weight_q = int(rng.integers(0, 65537))
    reach = span + 1
    distance = np.abs(np.arange(span + 1) - center)
    t_narrow = laplace_decay_reference(narrow, reach)[distance]
    t_wide = laplace_decay_reference(wide, reach)[distance]
    np.testing.assert_array_equal(laplace_table(center, narrow, 0, span), t_narrow)
    want = np.maximum(1, (weight_q * t_narrow + (65536 - weight_q) * t_wide) >> 16)
    if weight_q == 65536:
        want = t_narrow
    np.testing.assert_array_equal(laplace_mixture_table(center, narrow, wide, weight_q, 0, span), want)


def _python_read(data: bytes, count: int, channels: int):
    """The Python reader's verdict on ``channels`` codings: values or None."""
    reader = ByteReader(data)
    try:
        return [decode_symbols(reader, count, f"c{k}") for k in range(channels)], reader.pos
    except GFixFormatError:
        return None


def _coded_channels(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.round(rng.laplace(0, 3, count)).astype(np.int64),            # LAPLACE / mixture
            rng.integers(0, 3, count) * (rng.random(count) < 0.2),          # skewed: a histogram
            rng.integers(-(2**20), 2**20, count),                           # RAW
            np.full(count, 5),                                              # CONSTANT
            np.where(rng.random(count) < 0.5, rng.integers(0, 9000, count), 17)]  # wide, peaked


def test_native_channel_reader_takes_our_channels_and_agrees_with_python():
    """decode_channels' native reader (csrc/channels.cpp) must decode every
    model the encoder writes with rANS, as the Python reader does."""
    for count in (0, 1, 700, 5000, 17000):
        channels = _coded_channels(count, count)
        data = b"".join(encode_symbols(c, coder=Coder.RANS) for c in channels)
        models = {Model(data_[0] & 0x7F) for data_ in (encode_symbols(c, coder=Coder.RANS) for c in channels)}
        outs = [np.empty(count, dtype=np.int64) for _ in channels]
        end = _native().decode_channels(data, 0, count, outs)
        assert end == len(data)
        for got, want in zip(outs, channels):
            np.testing.assert_array_equal(got, want)
        if count >= 5000:
            assert {Model.RAW, Model.CONSTANT} <= models and len(models) >= 4
    # constriction-coded channels are left to the Python reader
    ans = encode_symbols(_coded_channels(700, 1)[0], coder=Coder.ANS)
    assert _native().decode_channels(ans, 0, 700, [np.empty(700, dtype=np.int64)]) == -1


@pytest.mark.parametrize("seed", range(6))
def test_native_channel_reader_never_accepts_what_python_rejects(seed):
    """Differential fuzz: damaged codings (flipped bytes, cuts) are either
    declined by the native reader (-1: Python then reads them) or decoded to
    exactly what the Python reader decodes."""
    rng = np.random.default_rng(100 + seed)
    count = int(rng.choice([3, 300, 4100]))
    channels = _coded_channels(count, seed)
    data = b"".join(encode_symbols(c, coder=Coder.RANS) for c in channels)
    accepted = 0
    for trial in range(150):
        damaged = bytearray(data)
        if trial % 5 == 0:
            damaged = damaged[: int(rng.integers(0, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 3))):
                position = int(rng.integers(0, len(damaged)))
                damaged[position] = int(rng.integers(0, 256)) if trial % 3 else damaged[position] ^ 0x80
        outs = [np.empty(count, dtype=np.int64) for _ in channels]
        end = _native().decode_channels(bytes(damaged), 0, count, outs)
        if end < 0:
            continue
        accepted += 1
        verdict = _python_read(bytes(damaged), count, len(channels))
        assert verdict is not None, "the native reader accepted data the Python reader rejects"
        values, python_end = verdict
        assert python_end == end
        for got, want in zip(outs, values):
            np.testing.assert_array_equal(got, want)
    assert accepted < 150  # damage was seen
