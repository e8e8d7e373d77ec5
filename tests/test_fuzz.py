"""Hostile input: every byte sequence decodes or raises a GFixError.

Structure-aware fuzzing of whole files and ENHANCER payloads (1,000 cases
each by default, 100,000 with ``-m slow``), Hypothesis properties of the
byte streams and the symbol coder, and the resource limits that keep a small
crafted file from asking for gigabytes.
"""

import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gfix_sdk.bitstream import GFixReader, GFixWriter, SectionType, StreamHeader
from gfix_sdk.bitstream.fuzz import ByteMutator, Container, Mutator
from gfix_sdk.coding import ByteReader, ByteWriter, decode_symbols, encode_symbols, skip_symbols
from gfix_sdk.coding.symbols import MAX_ABS_SYMBOL
from gfix_sdk.enhance.adapter import decode_adapter
from gfix_sdk.errors import GFixError, GFixFormatError, ResourceLimitError
from gfix_sdk.gaussians.code import encode_intra, encode_stream_info
from gfix_sdk.gaussians.quantize import QuantizedFrame, QuantSpec
from gfix_sdk.raster import rasterize_stats, tile_intersections_bound
from gfix_sdk.runtime.decoder import MAX_TILE_INTERSECTIONS, Decoder
from gfix_sdk.runtime.fuzz import (
    default_seeds,
    fuzz_adapter,
    fuzz_files,
    seed_adapter_payload,
)

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="session")
def seeds(tmp_path_factory):
    return default_seeds(tmp_path_factory.mktemp("fuzz-seeds"))


# ---------------------------------------------------------------- the harness
def test_seeds_decode_and_reassemble_byte_for_byte(seeds, tmp_path):
    for number, data in enumerate(seeds):
        assert Container.parse(data).assemble() == data
        path = tmp_path / f"seed{number}.gfix"
        path.write_bytes(data)
        with Decoder.open(path, enhance=False) as dec:
            assert sum(1 for _ in dec.frames()) == len(dec) > 0
    coded = decode_adapter(seed_adapter_payload())  # the encoder's writer, on a small configuration
    assert (coded.config.unet_targets, coded.strengths) == (("conv_in", "conv_out"), (0.75, 0.5))
    assert coded.group_values("unet", 300).shape == (300,)


def test_mutated_files_reach_the_frame_decoder(seeds, tmp_path):
    """The point of recomputing CRCs: most cases must get past the container
    checks, or the fuzzer only tests the CRC."""
    mutator, opened = Mutator(seeds, seed=7), 0
    for _ in range(200):
        data, _ = mutator()
        path = tmp_path / "case.gfix"
        path.write_bytes(data)
        try:
            GFixReader(path).close()
            opened += 1
        except GFixFormatError:
            pass
    assert opened >= 120


def test_mutator_is_reproducible(seeds):
    one, two = Mutator(seeds, seed=3), Mutator(seeds, seed=3)
    assert [one() for _ in range(20)] == [two() for _ in range(20)]
    assert ByteMutator(5).mutate(b"abcdef") == ByteMutator(5).mutate(b"abcdef")


def _check(report) -> None:
    escaped = "\n".join(f"{what}: {outcome}" for what, outcome in report.failures)
    assert report.escaped == 0, escaped
    assert report.cases == sum(report.outcomes.values())


def test_fuzz_files(seeds, tmp_path):
    report = fuzz_files(seeds, 1000, tmp_path, seed=0)
    _check(report)
    # Both ends are exercised: damage that still decodes, and damage caught.
    assert report.outcomes["decoded"] > 100 and report.outcomes["GFixFormatError"] > 100


def test_fuzz_adapter():
    report = fuzz_adapter(seed_adapter_payload(), 1000, seed=0)
    _check(report)
    assert report.outcomes["decoded"] > 20 and report.outcomes["GFixFormatError"] > 100


@pytest.mark.slow
def test_fuzz_100k(seeds, tmp_path):
    files = fuzz_files(seeds, 100_000, tmp_path, seed=1)
    adapter = fuzz_adapter(seed_adapter_payload(1), 100_000, seed=1)
    print(f"\nfiles: {files.cases} in {files.seconds:.0f} s: {dict(files.outcomes)}")
    print(f"ENHANCER: {adapter.cases} in {adapter.seconds:.0f} s: {dict(adapter.outcomes)}")
    _check(files)
    _check(adapter)


# ------------------------------------------------------- Hypothesis properties
FIELDS = st.lists(st.one_of(
    st.tuples(st.just("u8"), st.integers(0, 2**8 - 1)),
    st.tuples(st.just("u16"), st.integers(0, 2**16 - 1)),
    st.tuples(st.just("u32"), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("u64"), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("varint"), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("svarint"), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just("f64"), st.floats(allow_nan=False)),
    st.tuples(st.just("blob"), st.binary(max_size=40)),
), max_size=20)


@PROPERTY
@given(FIELDS)
def test_byte_stream_round_trip(fields):
    writer = ByteWriter()
    for kind, value in fields:
        getattr(writer, kind)(value)
    data = writer.getvalue()
    assert len(writer) == len(data)
    reader = ByteReader(data)
    assert [(kind, getattr(reader, kind)()) for kind, _ in fields] == fields
    reader.expect_end()


@PROPERTY
@given(st.binary(max_size=64), st.lists(st.sampled_from(
    ["u8", "u16", "u32", "u64", "f32", "f64", "varint", "svarint", "blob", "u32_array"]), max_size=12))
def test_byte_reader_fails_only_with_format_errors(data, reads):
    reader = ByteReader(data, context="garbage")
    try:
        for kind in reads:
            getattr(reader, kind)()
        reader.expect_end()
    except GFixFormatError as exc:
        assert "garbage" in str(exc)  # the context names where it happened


SYMBOLS = st.one_of(
    st.lists(st.integers(-MAX_ABS_SYMBOL, MAX_ABS_SYMBOL), max_size=30),
    st.lists(st.integers(-3, 3), max_size=300),  # histogram and Laplace models
    st.lists(st.sampled_from([0, 0, 0, 0, 1, -40]), max_size=300),  # sparse: the mixture
)


@PROPERTY
@given(SYMBOLS)
def test_symbol_coder_round_trip(values):
    values = np.asarray(values, dtype=np.int64)
    data = encode_symbols(values)
    reader = ByteReader(data)
    np.testing.assert_array_equal(decode_symbols(reader, len(values)), values)
    reader.expect_end()
    skipped = ByteReader(data)  # skipping passes over exactly the same bytes
    skip_symbols(skipped, len(values))
    skipped.expect_end()


@PROPERTY
@given(st.integers(0, 5), st.binary(max_size=48), st.sampled_from([0, 1, 2, 7, 300]))
def test_symbol_decoder_fails_only_with_format_errors(model, garbage, count):
    # A valid model byte first, so that the garbage reaches each model's parser.
    try:
        symbols = decode_symbols(ByteReader(bytes([model]) + garbage, context="chan"), count)
    except GFixFormatError:
        return
    assert symbols.shape == (count,) and symbols.dtype == np.int64


@PROPERTY
@given(SYMBOLS.filter(len), st.data())
def test_damaged_symbol_coding_fails_only_with_format_errors(values, data):
    coded = bytearray(encode_symbols(np.asarray(values, dtype=np.int64)))
    position = data.draw(st.integers(0, len(coded) - 1))
    coded[position] = data.draw(st.integers(0, 255))
    try:
        decode_symbols(ByteReader(bytes(coded)), len(values))
    except GFixFormatError:
        pass


def test_nested_histograms_are_refused_not_a_stack_overflow():
    # LOG_HISTOGRAM whose level histogram is again a LOG_HISTOGRAM, 5000 deep:
    # once a RecursionError, now refused at the first nesting.
    nested = bytes([5, 0, 1]) * 5000
    with pytest.raises(GFixFormatError, match="histogram coded with a histogram model"):
        decode_symbols(ByteReader(nested), 3)


# ---------------------------------------------------------------- resource bounds
def _with_header(data: bytes, **fields: int) -> bytes:
    container = Container.parse(data)
    header = bytearray(container.header)
    for name, value in fields.items():
        struct.pack_into("<I", header, {"width": 12, "height": 16}[name], value)
    container.header = bytes(header)
    return container.assemble()


def test_huge_frames_are_refused_before_allocating(seeds, tmp_path):
    path = tmp_path / "huge.gfix"
    path.write_bytes(_with_header(seeds[0], width=16384, height=16384))
    assert path.stat().st_size < 10_000
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ResourceLimitError, match=r"16384x16384 = 268435456 pixels exceed max_pixels"):
        Decoder.open(path, enhance=False)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 1.0 and peak < 5 << 20  # a 3.2 GB frame was never started


def test_max_pixels_is_inclusive_and_adjustable(seeds, tmp_path):
    path = tmp_path / "clip.gfix"
    path.write_bytes(seeds[0])
    pixels = 48 * 32
    with Decoder.open(path, enhance=False, max_pixels=pixels) as dec:
        assert dec[0].shape == (32, 48, 3)
    with pytest.raises(ResourceLimitError):
        Decoder.open(path, enhance=False, max_pixels=pixels - 1)
    # The limit's type is that of both the SDK's errors and ValueError.
    assert issubclass(ResourceLimitError, GFixError) and issubclass(ResourceLimitError, ValueError)
    with pytest.raises(ValueError, match="max_pixels"):
        Decoder.open(path, max_pixels=0)


def test_tile_pair_bound_is_never_below_the_rasterizer_count():
    generator = torch.Generator().manual_seed(0)
    for _ in range(100):
        height, width = (int(v) for v in torch.randint(1, 90, (2,), generator=generator))
        means = (torch.rand(40, 2, generator=generator) * 1.4 - 0.2) * torch.tensor([width, height])
        chol = torch.randn(40, 3, generator=generator) * 10 ** (torch.rand(40, 1, generator=generator) * 4 - 3)
        _, stats = rasterize_stats(means, chol, torch.rand(40, 3), height, width)
        bound = tile_intersections_bound(means, chol, height, width)
        assert stats["num_intersections"] <= bound <= 4 * stats["num_intersections"] + 40


def test_frames_covering_too_many_tiles_are_refused_before_rendering(tmp_path):
    # 40,000 identical Gaussians each covering all 4,096 tiles of a 1024x1024
    # frame: a 60-byte payload asking for 164M tile pairs (655 MB, minutes).
    count = 40_000
    huge = QuantizedFrame(
        means=torch.full((count, 2), 4096, dtype=torch.int64),
        chol=torch.tensor([[8000, 0, 8000]] * count, dtype=torch.int64),
        colors=torch.zeros((count, 3), dtype=torch.int64),
    )
    payload, _ = encode_intra(huge)
    path = tmp_path / "tiles.gfix"
    with GFixWriter(path, StreamHeader(width=1024, height=1024, fps_num=25, fps_den=1, frame_count=1)) as w:
        w.write_section(SectionType.STREAM_INFO, encode_stream_info(QuantSpec(), gaussians=count, gop=1, encoder="t"))
        w.write_frame(payload, key=True)
    assert len(payload) < 100 and count * 4096 > MAX_TILE_INTERSECTIONS
    start = time.perf_counter()
    with Decoder.open(path, enhance=False) as dec, pytest.raises(ResourceLimitError, match="frame 0: 40000 Gaussians"):
        dec[0]
    assert time.perf_counter() - start < 5.0


def test_crafted_header_crc_still_guards_the_limit_check(seeds, tmp_path):
    # The size check reads a CRC-verified header: a damaged (not crafted) size
    # is a format error, not a resource error.
    data = bytearray(_with_header(seeds[0], width=16384, height=16384))
    data[40:44] = (zlib.crc32(bytes(data[:40])) ^ 1).to_bytes(4, "little")
    path = tmp_path / "bad-crc.gfix"
    path.write_bytes(bytes(data))
    with pytest.raises(GFixFormatError, match="CRC mismatch"):
        Decoder.open(path, enhance=False)


def _declaring(payload: bytes, group: str, count: int) -> bytes:
    """``payload`` (whose ``group`` holds one value, coded as a constant) with
    that group's count varint changed to ``count``: a crafted file that asks
    the decoder for ``count`` values of a 2-byte coding."""
    at = decode_adapter(payload).coded[group][1] - 1  # the count is the varint right before the coding
    assert payload[at] == 1
    writer = ByteWriter()
    writer.varint(count)
    return payload[:at] + writer.getvalue() + payload[at + 1:]


def test_a_crafted_adapter_count_is_refused_before_decoding(tmp_path):
    """A ~100-byte ENHANCER payload declaring 2**28 U-Net values (2 GiB as
    int64, once allocated by the parser) is refused, naming the group, before
    any value is decoded: the count is compared with what the base's layers
    need, through the decoder's own path."""
    from gfix_sdk.enhance.adapter import quantize_groups, write_adapter
    from gfix_sdk.enhance.base import base_hash, load_base
    from gfix_sdk.enhance.model import GROUPS, AdapterConfig, Enhancer
    from gfix_sdk.enhance.tiny import SHIPPED
    from gfix_sdk.runtime import factors as fc

    config = AdapterConfig(patch=32, overlap=8)
    base = load_base(SHIPPED)
    digest = base_hash(base)
    enhancer = Enhancer(base, config)
    steps = dict.fromkeys(GROUPS, 1e-3)
    values = quantize_groups(enhancer, steps)
    need = {group: len(v) for group, v in values.items()}
    values["unet"] = np.zeros(1, dtype=np.int64)
    payload = _declaring(write_adapter(enhancer.config, values, steps, digest, t=199.0, strengths=(1.0, 1.0)),
                         "unet", 1 << 28)
    assert len(payload) < 200 and need["unet"] < 1 << 20

    tracemalloc.start()
    start = time.perf_counter()
    coded = decode_adapter(payload, context="crafted: ENHANCER")  # parses; decodes nothing
    assert coded.counts["unet"] == 1 << 28
    with pytest.raises(GFixFormatError, match=rf"crafted: ENHANCER: group unet holds {1 << 28} values "
                                              rf"but this base model's mlora layers need {need['unet']}"):
        coded.group_values("unet", need["unet"])
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 1.0 and peak < 1 << 20

    # The decoder's paths: the full rebuild (a Decoder with the PyTorch backend)
    # and the lean runtime's fold (cached factors, no Enhancer).
    path = tmp_path / "crafted.gfix"
    header = StreamHeader(width=32, height=32, fps_num=25, fps_den=1, frame_count=0)
    with GFixWriter(path, header) as writer:
        writer.write_section(SectionType.STREAM_INFO, encode_stream_info(QuantSpec(), gaussians=1, gop=1,
                                                                         encoder="t"))
        writer.write_section(SectionType.ENHANCER, payload)
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(GFixFormatError, match=rf"crafted.gfix: ENHANCER: group unet holds {1 << 28} values"):
        Decoder.open(path, base=SHIPPED, backend="torch")
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50 << 20, peak  # loading the stand-in base included
    factors = fc.load_factor_set(digest, config)  # cached by the open above
    with pytest.raises(GFixFormatError, match="group unet holds"):
        fc.fold_weights(coded, factors, SHIPPED)
    print(f"\ncrafted {len(payload)}-byte adapter: Decoder.open refused it in {elapsed:.2f} s, "
          f"traced peak {peak / 2**20:.1f} MiB")
