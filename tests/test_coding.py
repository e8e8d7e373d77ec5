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
