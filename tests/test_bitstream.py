"""The .gfix container: round trip, validation of damaged files, atomic writes.

Files are also assembled and parsed here with ``struct`` straight from the
specification in ``gfix_sdk/bitstream/format.py``, independently of the
package's own coding, so that the spec and the code cannot drift apart.
"""

import json
import struct
import time
import tracemalloc
import zlib

import pytest

from gfix_sdk.bitstream import (
    MAGIC,
    GFixReader,
    GFixWriter,
    SectionFlag,
    SectionType,
    StreamHeader,
)
from gfix_sdk.errors import GFixError, GFixFormatError

HEADER = StreamHeader(width=320, height=180, fps_num=30000, fps_den=1001, frame_count=3)
STREAM_INFO = b"stream parameters"
ENHANCER = b"adapter weights"
FRAMES = [(b"key frame", True), (b"", False), (bytes(range(40)), False)]

# The header as the spec's table lays it out: magic, version major/minor,
# width, height, fps_num, fps_den, frame_count, primaries, transfer, matrix,
# full_range, flags, header_crc.
HEADER_FIELDS = [
    tuple(field.split(":"))
    for field in (
        "magic:8s version_major:H version_minor:H width:I height:I fps_num:I fps_den:I "
        "frame_count:I primaries:B transfer:B matrix:B full_range:B flags:I header_crc:I"
    ).split()
]
HEADER_NAMES = [name for name, _ in HEADER_FIELDS]
HEADER_LAYOUT = struct.Struct("<" + "".join(code for _, code in HEADER_FIELDS))
SECTION_HEAD = struct.Struct("<HHQ")


def field_offset(name: str) -> int:
    codes = [code for _, code in HEADER_FIELDS[: HEADER_NAMES.index(name)]]
    return struct.calcsize("<" + "".join(codes))


def patch_header(data: bytes, *, fix_crc: bool = True, **fields: int) -> bytes:
    """``data`` with header fields replaced and (by default) the CRC recomputed."""
    values = dict(zip(HEADER_NAMES, HEADER_LAYOUT.unpack_from(data)))
    values.update(fields)
    header = bytearray(HEADER_LAYOUT.pack(*values.values()))
    if fix_crc:
        struct.pack_into("<I", header, 40, zlib.crc32(header[:40]))
    return bytes(header) + data[HEADER_LAYOUT.size :]


def spec_header(frame_count: int, **fields: int) -> bytes:
    values = dict(zip(HEADER_NAMES, (MAGIC, 1, 0, 64, 48, 25, 1, frame_count, 6, 6, 6, 0, 0, 0)))
    values.update(fields)
    return patch_header(HEADER_LAYOUT.pack(*values.values()))


def spec_section(type_code: int, payload: bytes, flags: int = 0) -> bytes:
    body = SECTION_HEAD.pack(type_code, flags, len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def spec_file(
    frames: list[tuple[bytes, int]], *, before_index: bytes = b"", index_entries=None
) -> bytes:
    """A file built from the spec alone: STREAM_INFO, FRAME sections (payload,
    frame_flags), ``before_index`` raw bytes, INDEX."""
    data = spec_header(len(frames)) + spec_section(1, b"info")
    entries = []
    for payload, frame_flags in frames:
        entries.append((len(data), frame_flags))
        data += spec_section(2, bytes([frame_flags]) + payload)
    data += before_index
    entries = entries if index_entries is None else index_entries
    index = struct.pack("<I", len(entries)) + b"".join(struct.pack("<QB", *e) for e in entries)
    return data + spec_section(4, index, flags=1)


def write_sample(path, *, extra=(), header=HEADER, frames=FRAMES) -> bytes:
    """Write a sample file; ``extra`` holds (type, payload, optional) sections
    written between the ENHANCER and the frames."""
    with GFixWriter(path, header) as out:
        out.write_section(SectionType.STREAM_INFO, STREAM_INFO)
        out.write_section(SectionType.ENHANCER, ENHANCER)
        for type_code, payload, optional in extra:
            out.write_section(type_code, payload, optional=optional)
        for payload, key in frames:
            out.write_frame(payload, key=key)
    return path.read_bytes()


def read_everything(path) -> dict:
    """Open ``path`` and read every section and frame through the public API."""
    with GFixReader(path) as clip:
        for entry in clip.sections:
            clip.read_section(entry)
        count = clip.header.frame_count
        return {
            "header": clip.header,
            "version": clip.version,
            "stream_info": clip.stream_info(),
            "enhancer": clip.enhancer(),
            "frames": [(clip.frame_payload(i), clip.frame_is_key(i)) for i in range(count)],
        }


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "sample.gfix"
    return path, write_sample(path)


# --- round trip and layout ---------------------------------------------------


def test_round_trip(sample):
    path, data = sample
    contents = read_everything(path)
    assert contents == {
        "header": HEADER,
        "version": (1, 1),
        "stream_info": STREAM_INFO,
        "enhancer": ENHANCER,
        "frames": FRAMES,
    }
    with GFixReader(path) as clip:
        assert clip.num_bytes == len(data)
        assert [e.type for e in clip.sections] == (
            [SectionType.STREAM_INFO, SectionType.ENHANCER]
            + [SectionType.FRAME] * 3
            + [SectionType.INDEX]
        )
        assert [e.number for e in clip.sections if e.type == SectionType.FRAME] == [0, 1, 2]
        assert clip.header.fps == pytest.approx(29.97, abs=1e-3)


def test_layout_matches_the_spec(sample):
    _, data = sample
    header = dict(zip(HEADER_NAMES, HEADER_LAYOUT.unpack_from(data)))
    assert HEADER_LAYOUT.size == 44 and field_offset("flags") == 36
    assert header == {
        "magic": b"\x89GFX\r\n\x1a\n",
        "version_major": 1,
        "version_minor": 1,
        "width": 320,
        "height": 180,
        "fps_num": 30000,
        "fps_den": 1001,
        "frame_count": 3,
        "primaries": 6,
        "transfer": 6,
        "matrix": 6,
        "full_range": 0,
        "flags": 0,
        "header_crc": zlib.crc32(data[:40]),
    }

    sections, offset = [], 44
    while offset < len(data):
        type_code, flags, length = SECTION_HEAD.unpack_from(data, offset)
        end = offset + 12 + length
        assert struct.unpack_from("<I", data, end)[0] == zlib.crc32(data[offset:end])
        sections.append((type_code, flags, offset, data[offset + 12 : end]))
        offset = end + 4
    assert offset == len(data)
    assert [(t, f) for t, f, _, _ in sections] == [(1, 0), (3, 1), (2, 0), (2, 0), (2, 0), (4, 1)]
    frames = [(off, payload) for t, _, off, payload in sections if t == 2]
    assert [p[1:] for _, p in frames] == [payload for payload, _ in FRAMES]
    assert [p[0] for _, p in frames] == [1, 0, 0]  # frame_flags: KEY bit
    index = sections[-1][3]
    assert struct.unpack_from("<I", index)[0] == 3 and len(index) == 4 + 9 * 3
    assert list(struct.iter_unpack("<QB", index[4:])) == [(off, p[0]) for off, p in frames]


def test_file_assembled_from_the_spec_reads(tmp_path):
    path = tmp_path / "spec.gfix"
    path.write_bytes(spec_file([(b"a", 1), (b"bc", 0)]))
    contents = read_everything(path)
    assert contents["stream_info"] == b"info" and contents["enhancer"] is None
    assert contents["frames"] == [(b"a", True), (b"bc", False)]
    assert contents["header"] == StreamHeader(64, 48, 25, 1, 2)


def test_empty_stream_round_trip(tmp_path):
    path = tmp_path / "empty.gfix"
    header = StreamHeader(16, 16, 1, 1, frame_count=0, full_range=1)
    with GFixWriter(path, header) as out:
        out.write_section(SectionType.STREAM_INFO, b"")
    contents = read_everything(path)
    assert contents["header"] == header and contents["frames"] == []
    assert contents["stream_info"] == b"" and contents["enhancer"] is None


# --- unknown sections --------------------------------------------------------


def test_unknown_optional_sections_are_skipped(tmp_path):
    path = tmp_path / "extra.gfix"
    write_sample(path, extra=[(0x8001, b"experiment", True), (0x0042, b"future", True)])
    assert read_everything(path)["frames"] == FRAMES
    with GFixReader(path) as clip:
        unknown = [e for e in clip.sections if not e.known]
        assert [(e.type, e.optional) for e in unknown] == [(0x8001, True), (0x0042, True)]
        assert clip.read_section(unknown[0]) == b"experiment"


@pytest.mark.parametrize("type_code", [0x8001, 0x0042])
def test_unknown_mandatory_section_is_rejected(tmp_path, type_code):
    path = tmp_path / "mandatory.gfix"
    write_sample(path, extra=[(type_code, b"must understand", False)])
    with pytest.raises(GFixFormatError, match=f"unknown section type 0x{type_code:04x}.*OPTIONAL"):
        GFixReader(path)


# --- damaged files -----------------------------------------------------------


def test_every_truncation_raises(sample, tmp_path):
    _, data = sample
    damaged = tmp_path / "cut.gfix"
    for cut in range(len(data)):
        damaged.write_bytes(data[:cut])
        with pytest.raises(GFixFormatError):
            read_everything(damaged)


def test_truncation_messages_say_where(sample, tmp_path):
    _, data = sample
    damaged = tmp_path / "cut.gfix"
    index_start = len(data) - (16 + 4 + 9 * 3)
    cases = {
        20: r"header: truncated: fps_num needs 4 bytes, 0 left \(at byte 20\)",
        index_start: r"at byte \d+ \(end of file\): the last section must be the INDEX",
        index_start + 5: rf"5 bytes at byte {index_start} are too few for a section",
        index_start + 16: rf"section INDEX #0 at byte {index_start}: truncated",
    }
    for cut, message in cases.items():
        damaged.write_bytes(data[:cut])
        with pytest.raises(GFixFormatError, match=message):
            GFixReader(damaged)


@pytest.mark.parametrize("trailing", [b"x", b"\0" * 11, b"\0" * 15, b"\0" * 16, b"\0" * 40])
def test_trailing_garbage_raises(sample, tmp_path, trailing):
    _, data = sample
    damaged = tmp_path / "trailing.gfix"
    damaged.write_bytes(data + trailing)
    expected = "too few for a section" if len(trailing) < 16 else "follows the INDEX"
    with pytest.raises(GFixFormatError, match=expected):
        GFixReader(damaged)


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_every_flipped_byte_raises(sample, tmp_path, mask):
    # Every byte is covered by a CRC (the header's, checked at open, or its
    # section's, checked on reading), so any single damaged byte is caught,
    # the reserved header flags included: with the CRC left as it was, even a
    # minor version that ignores the flags still fails the header CRC.
    _, data = sample
    damaged = tmp_path / "flipped.gfix"
    for offset in range(len(data)):
        flipped = bytearray(data)
        flipped[offset] ^= mask
        damaged.write_bytes(flipped)
        with pytest.raises(GFixFormatError):
            read_everything(damaged)


def test_crc_mismatch_names_the_section(sample, tmp_path):
    path, data = sample
    with GFixReader(path) as clip:
        frame = [e for e in clip.sections if e.type == SectionType.FRAME][2]
    damaged = bytearray(data)
    damaged[frame.payload_offset + 5] ^= 0x10
    path.write_bytes(damaged)
    with GFixReader(path) as clip:
        assert clip.frame_payload(0) == FRAMES[0][0]  # other sections still read
        assert clip.frame_is_key(2) is False  # the INDEX is intact
        pattern = (
            rf"section FRAME #2 at byte {frame.offset}: CRC mismatch "
            r"\(stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\)"
        )
        with pytest.raises(GFixFormatError, match=pattern):
            clip.frame_payload(2)


def test_reserved_header_flags(sample, tmp_path):
    _, data = sample
    damaged = tmp_path / "flags.gfix"
    # In 1.0 the flags must be 0 (CRC fixed up, so only the flags are wrong) ...
    damaged.write_bytes(patch_header(data, version_minor=0, flags=1))
    with pytest.raises(GFixFormatError, match=r"flags 0x00000001 at byte 36 must be 0"):
        GFixReader(damaged)
    # ... while a later minor version may use them, and a 1.0 reader ignores them.
    damaged.write_bytes(patch_header(data, version_minor=1, flags=0xFFFFFFFF))
    assert read_everything(damaged)["version"] == (1, 1)


def test_header_crc_mismatch(sample, tmp_path):
    _, data = sample
    damaged = tmp_path / "crc.gfix"
    damaged.write_bytes(patch_header(data, width=321, fix_crc=False))
    with pytest.raises(GFixFormatError, match=r"header at byte 0: CRC mismatch"):
        GFixReader(damaged)


@pytest.mark.parametrize(
    ("start", "message"),
    [
        (b"", "is empty"),
        (b"\x89GF", "ends inside the magic"),
        (b"hello, world, this is text" * 3, "not a .gfix file: .* starts with b'hello, w'"),
        (b"\x89PNG\r\n\x1a\n" + bytes(60), "not a .gfix file"),
        (b"\x89GFX\n\x1a\n" + bytes(60), "magic looks damaged"),  # CRLF -> LF
        (b"\x09GFX\r\n\x1a\n" + bytes(60), "magic looks damaged"),  # high bit stripped
    ],
)
def test_wrong_magic(tmp_path, start, message):
    path = tmp_path / "other.gfix"
    path.write_bytes(start)
    with pytest.raises(GFixFormatError, match=message):
        GFixReader(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        GFixReader(tmp_path / "nothing.gfix")


def test_future_major_version_is_rejected(sample, tmp_path):
    _, data = sample
    damaged = tmp_path / "v2.gfix"
    # A new major may lay the header out differently: it is rejected before
    # its CRC is even looked at.
    damaged.write_bytes(patch_header(data, version_major=2, version_minor=3, fix_crc=False))
    with pytest.raises(
        GFixFormatError, match=r"unsupported \.gfix version 2\.3 \(this reader supports 1\.x\)"
    ):
        GFixReader(damaged)


def test_future_minor_version_is_accepted(sample, tmp_path):
    _, data = sample
    newer = tmp_path / "v1_7.gfix"
    newer.write_bytes(patch_header(data, version_minor=7))
    contents = read_everything(newer)
    assert contents["version"] == (1, 7) and contents["frames"] == FRAMES


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("width", 0),
        ("width", 100_000),
        ("height", 16385),
        ("fps_num", 0),
        ("fps_den", 10**6 + 1),
        ("frame_count", 10**7),
        ("full_range", 2),
    ],
)
def test_absurd_header_fields_are_rejected(sample, tmp_path, field, value):
    _, data = sample
    damaged = tmp_path / "absurd.gfix"
    damaged.write_bytes(patch_header(data, **{field: value}))
    with pytest.raises(
        GFixFormatError, match=rf"{field} = {value} is outside .* \(at byte {field_offset(field)}\)"
    ):
        GFixReader(damaged)
    with pytest.raises(ValueError, match=field):
        StreamHeader(**{**HEADER.__dict__, field: value})


def test_absurd_section_length_fails_before_allocating(sample, tmp_path):
    _, data = sample
    damaged = tmp_path / "huge.gfix"
    for length, message in [
        (2**60, f"payload length {2**60} exceeds the maximum"),
        (2**30 - 1, "truncated: the section needs"),
    ]:
        damaged.write_bytes(data[:44] + struct.pack("<HHQ", 1, 0, length) + data[56:])
        tracemalloc.start()
        started = time.perf_counter()
        try:
            pattern = rf"section STREAM_INFO #0 at byte 44: {message}"
            with pytest.raises(GFixFormatError, match=pattern):
                GFixReader(damaged)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20
        assert time.perf_counter() - started < 1.0


def one_frame_without_flags_byte() -> bytes:
    index = struct.pack("<IQB", 1, 60, 1)
    return spec_header(1) + spec_section(1, b"") + spec_section(2, b"") + spec_section(4, index)


STRUCTURE_ERRORS = {
    "frame first": (
        lambda: spec_header(0) + spec_section(2, b"\x01") + spec_section(1, b""),
        "FRAME #0 at byte 44: the first section must be STREAM_INFO",
    ),
    "optional first": (
        lambda: spec_header(0) + spec_section(0x8000, b"", flags=1),
        "the first section must be STREAM_INFO",
    ),
    "no sections": (lambda: spec_header(0), "no sections"),
    "two stream infos": (
        lambda: spec_file([], before_index=spec_section(1, b"")),
        "a second STREAM_INFO",
    ),
    "two enhancers": (
        lambda: spec_file([], before_index=spec_section(3, b"") * 2),
        "a second ENHANCER",
    ),
    "two indexes": (
        lambda: spec_file([(b"", 1)]) + spec_section(4, b"\0" * 4, flags=1),
        "follows the INDEX",
    ),
    "frame after index": (
        lambda: spec_file([]) + spec_section(2, b"\x01"),
        "follows the INDEX",
    ),
    "extra frame": (
        lambda: spec_file([(b"", 1)], before_index=spec_section(2, b"\x01")),
        "more FRAME sections than the header's frame_count 1",
    ),
    "frame without flags": (
        one_frame_without_flags_byte,
        "empty payload, missing the frame flags byte",
    ),
    "missing frame": (
        lambda: patch_header(spec_file([(b"x", 1)]), frame_count=2),
        "holds 1 FRAME sections but the header's frame_count is 2",
    ),
    "index offset": (
        lambda: spec_file([(b"x", 1)], index_entries=[(65, 1)]),
        "entry 0 points at byte 65, but section FRAME #0 at byte 64",
    ),
    "index count": (
        lambda: spec_file([(b"x", 1)], index_entries=[]),
        "lists 0 frames but the file holds 1",
    ),
}


@pytest.mark.parametrize(("build", "message"), STRUCTURE_ERRORS.values(), ids=STRUCTURE_ERRORS)
def test_structure_errors(tmp_path, build, message):
    path = tmp_path / "bad.gfix"
    path.write_bytes(build())
    with pytest.raises(GFixFormatError, match=message):
        GFixReader(path)


def test_key_flag_must_agree_with_the_index(tmp_path):
    path = tmp_path / "keys.gfix"
    path.write_bytes(spec_file([(b"x", 1)], index_entries=[(64, 0)]))
    with GFixReader(path) as clip:
        assert clip.frame_is_key(0) is False  # what the INDEX says
        with pytest.raises(GFixFormatError, match="KEY flag is 1 in the frame but 0 in the INDEX"):
            clip.frame_payload(0)


def test_format_error_is_a_value_error():
    assert issubclass(GFixFormatError, ValueError) and issubclass(GFixFormatError, GFixError)


# --- reader behaviour --------------------------------------------------------


def test_reader_closes_and_checks_arguments(sample):
    path, _ = sample
    with GFixReader(path) as clip:
        for bad in (-1, 3, True):
            with pytest.raises(IndexError):
                clip.frame_payload(bad)
        assert "320x180" in repr(clip)
    assert clip.closed
    with pytest.raises(ValueError, match="closed"):
        clip.stream_info()


# --- writer ------------------------------------------------------------------


def test_writer_is_atomic_on_exception(tmp_path):
    path = tmp_path / "out.gfix"
    with pytest.raises(RuntimeError, match="encoder failed"):
        with GFixWriter(path, HEADER) as out:
            out.write_section(SectionType.STREAM_INFO, STREAM_INFO)
            out.write_frame(b"frame", key=True)
            assert not path.exists()  # nothing at the destination until close
            assert len(list(tmp_path.iterdir())) == 1  # just the hidden temp file
            raise RuntimeError("encoder failed")
    assert list(tmp_path.iterdir()) == []


def test_writer_failure_leaves_an_existing_file_untouched(tmp_path):
    path = tmp_path / "out.gfix"
    path.write_bytes(b"previous version")
    with pytest.raises(KeyboardInterrupt):
        with GFixWriter(path, HEADER) as out:
            out.write_section(SectionType.STREAM_INFO, STREAM_INFO)
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == [path]
    assert path.read_bytes() == b"previous version"
    # A clean close replaces it.
    write_sample(path)
    assert read_everything(path)["frames"] == FRAMES
    assert list(tmp_path.iterdir()) == [path]


def test_writer_abort_and_incomplete_close_leave_nothing(tmp_path):
    path = tmp_path / "out.gfix"
    out = GFixWriter(path, HEADER)
    out.write_section(SectionType.STREAM_INFO, STREAM_INFO)
    out.abort()
    assert out.closed and list(tmp_path.iterdir()) == []
    out.close()  # closing an aborted writer does nothing

    out = GFixWriter(path, HEADER)
    with pytest.raises(ValueError, match="no STREAM_INFO section"):
        out.close()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="closed"):
        out.write_frame(b"", key=True)


def test_header_frame_count_is_fixed_on_close(tmp_path):
    for promised in (0, 2, 5):
        path = tmp_path / f"count{promised}.gfix"
        header = StreamHeader(8, 8, 1, 1, frame_count=promised)
        with GFixWriter(path, header) as out:
            out.write_section(SectionType.STREAM_INFO, b"")
            for _ in range(2):
                out.write_frame(b"f", key=True)
        assert out.header.frame_count == 2
        contents = read_everything(path)
        assert contents["header"].frame_count == 2 and len(contents["frames"]) == 2


def test_writer_refuses_invalid_files(tmp_path):
    path = tmp_path / "out.gfix"
    with GFixWriter(path, HEADER) as out:
        with pytest.raises(ValueError, match="STREAM_INFO section first"):
            out.write_frame(b"", key=True)
        with pytest.raises(ValueError, match="STREAM_INFO section first"):
            out.write_section(SectionType.ENHANCER, b"")
        out.write_section(SectionType.STREAM_INFO, b"")
        with pytest.raises(ValueError, match="exactly one STREAM_INFO"):
            out.write_section(SectionType.STREAM_INFO, b"")
        out.write_section(SectionType.ENHANCER, b"")
        with pytest.raises(ValueError, match="at most one ENHANCER"):
            out.write_section(SectionType.ENHANCER, b"")
        with pytest.raises(ValueError, match="write_frame"):
            out.write_section(SectionType.FRAME, b"")
        with pytest.raises(ValueError, match="written by close"):
            out.write_section(SectionType.INDEX, b"")
        for bad_type in (0, 0x10000, -1, 1.0):
            with pytest.raises(ValueError, match="section type"):
                out.write_section(bad_type, b"")
        with pytest.raises(ValueError, match="key must be a bool"):
            out.write_frame(b"", key=1)
        with pytest.raises(TypeError):
            out.write_frame(10**9, key=True)  # not a byte count
        with pytest.raises(TypeError):
            out.write_section(0x8000, "text")
    # The refusals left the file valid.
    assert read_everything(path)["frames"] == []


def test_optional_flag_defaults(tmp_path):
    path = tmp_path / "flags.gfix"
    with GFixWriter(path, HEADER) as out:
        out.write_section(SectionType.STREAM_INFO, b"")
        out.write_section(SectionType.ENHANCER, b"", optional=False)
        out.write_section(0x8000, b"")
        out.write_section(0x8001, b"", optional=True)
    # Parsed by hand: the reader would refuse the mandatory unknown 0x8000.
    data, offset, flags = path.read_bytes(), 44, {}
    while offset < len(data):
        type_code, flags[type_code], length = SECTION_HEAD.unpack_from(data, offset)
        offset += 16 + length
    assert flags == {1: 0, 3: 0, 0x8000: 0, 0x8001: 1, 4: 1}
    with GFixWriter(path, HEADER) as out:
        out.write_section(SectionType.STREAM_INFO, b"")
        out.write_section(SectionType.ENHANCER, b"")
    with GFixReader(path) as clip:
        assert [e.optional for e in clip.sections] == [False, True, True]


def test_metadata_section_round_trip_and_validation(tmp_path):
    path = tmp_path / "meta.gfix"
    note = {"enhancer": {"kept": False, "reason": "dropped: ünïcode ok"}}
    with GFixWriter(path, HEADER) as out:
        out.write_section(SectionType.STREAM_INFO, b"")
        out.write_section(SectionType.METADATA, json.dumps(note).encode("utf-8"))
        with pytest.raises(ValueError, match="at most one METADATA"):
            out.write_section(SectionType.METADATA, b"{}")
    with GFixReader(path) as clip:
        assert clip.metadata() == note and clip.enhancer() is None
        assert [(e.type, e.optional) for e in clip.sections] == [
            (SectionType.STREAM_INFO, False), (SectionType.METADATA, True), (SectionType.INDEX, True)]
    # A file without one reads as {}; garbage or a non-object is a format error naming the section.
    write_sample(tmp_path / "plain.gfix")
    with GFixReader(tmp_path / "plain.gfix") as clip:
        assert clip.metadata() == {}
    for payload in (b"\xff\xfe", b"[1, 2]", b"{not json"):
        bad = tmp_path / "bad.gfix"
        bad.write_bytes(spec_file([(b"k", 1)], before_index=spec_section(5, payload, flags=1),
                                  index_entries=[(44 + 16 + 4, 1)]))
        with GFixReader(bad) as clip, pytest.raises(GFixFormatError, match="METADATA"):
            clip.metadata()
    # Two METADATA sections are refused by the reader too.
    twice = spec_section(5, b"{}", flags=1) * 2
    bad.write_bytes(spec_file([(b"k", 1)], before_index=twice, index_entries=[(44 + 16 + 4, 1)]))
    with pytest.raises(GFixFormatError, match="a second METADATA"):
        GFixReader(bad)


def test_stream_header_validation(tmp_path):
    assert HEADER.fps == 30000 / 1001
    assert (HEADER.primaries, HEADER.transfer, HEADER.matrix, HEADER.full_range) == (6, 6, 6, 0)
    for field, value in [("width", True), ("height", 1.5), ("primaries", 256), ("matrix", -1)]:
        with pytest.raises(ValueError, match=field):
            StreamHeader(**{**HEADER.__dict__, field: value})
    with pytest.raises(TypeError):
        GFixWriter(tmp_path / "x.gfix", {"width": 1})


def test_section_flag_constants():
    assert SectionFlag.OPTIONAL == 1
    assert [int(t) for t in SectionType] == [1, 2, 3, 4, 5]
