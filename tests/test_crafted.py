"""Crafted files: every section CRC is valid, yet the content breaks a rule of
the codec. Each must be refused with a GFixFormatError that names the problem
(the fuzzer finds such cases at random; these pin the ones we know of)."""

import math
import struct

import numpy as np
import pytest
import torch

from gfix_sdk.bitstream import GFixWriter, SectionType, StreamHeader
from gfix_sdk.bitstream.format import FrameFlag
from gfix_sdk.bitstream.fuzz import Container
from gfix_sdk.coding import ByteWriter, encode_symbols
from gfix_sdk.errors import GFixFormatError
from gfix_sdk.gaussians.code import FrameType, encode_intra, encode_predicted, encode_stream_info
from gfix_sdk.gaussians.quantize import QuantizedFrame, QuantSpec
from gfix_sdk.runtime.decoder import Decoder

WIDTH, HEIGHT = 32, 24


def _gaussians(count: int, seed: int = 0) -> QuantizedFrame:
    g = torch.Generator().manual_seed(seed)
    return QuantizedFrame(
        means=torch.stack([torch.randint(0, WIDTH * 8, (count,), generator=g),
                           torch.randint(0, HEIGHT * 8, (count,), generator=g)], dim=1),
        chol=torch.tensor([[16, 0, 16]] * count, dtype=torch.int64),
        colors=torch.randint(0, 100, (count, 3), generator=g),
    )


def _stream_info(spec: QuantSpec | None = None) -> bytes:
    return encode_stream_info(spec or QuantSpec(), gaussians=4, gop=2, encoder="crafted")


def _write(path, frames: list[tuple[bytes, bool]], *, stream_info: bytes | None = None,
           enhancer: bytes | None = None):
    header = StreamHeader(width=WIDTH, height=HEIGHT, fps_num=25, fps_den=1, frame_count=len(frames))
    with GFixWriter(path, header) as writer:
        writer.write_section(SectionType.STREAM_INFO, stream_info or _stream_info())
        if enhancer is not None:
            writer.write_section(SectionType.ENHANCER, enhancer)
        for payload, key in frames:
            writer.write_frame(payload, key=key)
    return path


def _valid_pair() -> tuple[bytes, QuantizedFrame, bytes]:
    """A key frame of 4 Gaussians and a predicted frame keeping 3 of them."""
    intra, ref = encode_intra(_gaussians(4))
    keep = torch.tensor([True, False, True, True])
    kept = ref.select(keep)
    kept.means = kept.means + 1
    predicted, _ = encode_predicted(ref, keep, kept, _gaussians(1, seed=1))
    return intra, ref, predicted


def _decode_all(path, **kwargs) -> None:
    with Decoder.open(path, enhance=False, **kwargs) as dec:
        for index in range(len(dec)):
            dec.gaussians(index)


def _predicted_payload(ref: QuantizedFrame, keep: list[int], modes: int) -> bytes:
    """A predicted payload written field by field (``keep`` may hold any
    integers, ``modes`` any byte), with absolute values for the kept groups."""
    w = ByteWriter()
    w.u8(int(FrameType.PREDICTED))
    w.varint(ref.num_gaussians)
    w.raw(encode_symbols(np.asarray(keep, dtype=np.int64)))
    w.u8(modes)
    kept = ref.select(torch.tensor([k != 0 for k in keep]))
    for values in (kept.means, kept.chol, kept.colors):
        for column in values.T:
            w.raw(encode_symbols(column.numpy()))
    w.varint(0)  # no new Gaussians: five empty channels follow
    for _ in range(8):
        w.raw(encode_symbols(np.zeros(0, dtype=np.int64)))
    return w.getvalue()


def test_the_helpers_make_a_file_that_decodes(tmp_path):
    # The baseline: without the crafted change each case below decodes.
    intra, ref, predicted = _valid_pair()
    _decode_all(_write(tmp_path / "ok.gfix", [(intra, True), (predicted, False)]))
    _decode_all(_write(tmp_path / "ok2.gfix", [(intra, True), (_predicted_payload(ref, [1, 0, 1, 1], 0), False)]))


def test_first_frame_not_a_key_frame(tmp_path):
    intra, _, predicted = _valid_pair()
    # Through the fuzz tools: clear frame 0's KEY bit, INDEX and CRCs recomputed.
    container = Container.parse(_write(tmp_path / "ok.gfix", [(intra, True), (predicted, False)]).read_bytes())
    frame = next(s for s in container.sections if s.type == SectionType.FRAME)
    frame.payload = bytes([frame.payload[0] & ~FrameFlag.KEY]) + frame.payload[1:]
    path = tmp_path / "nokey.gfix"
    path.write_bytes(container.assemble())
    with pytest.raises(GFixFormatError, match="nokey.gfix: the first frame is not a key frame"):
        Decoder.open(path, enhance=False)


def test_key_flagged_frame_with_a_predicted_payload(tmp_path):
    intra, _, predicted = _valid_pair()
    path = _write(tmp_path / "keypred.gfix", [(intra, True), (predicted, True)])
    with Decoder.open(path, enhance=False) as dec:
        assert dec.info.key_frames == (0, 1)
        dec.gaussians(0)
        with pytest.raises(GFixFormatError, match="frame 1: predicted frame without a reference frame"):
            dec.gaussians(1)  # sequentially, right after frame 0
    with Decoder.open(path, enhance=False) as dec, \
            pytest.raises(GFixFormatError, match="frame 1: predicted frame without a reference frame"):
        dec.gaussians(1)  # random access
    path = _write(tmp_path / "keypred0.gfix", [(predicted, True)])
    with pytest.raises(GFixFormatError, match="frame 0: predicted frame without a reference frame"):
        _decode_all(path)


@pytest.mark.parametrize("keep", [[1, 0, 2, 1], [1, -1, 1, 1], [1, 0, 1, 255]])
def test_keep_flags_above_one(tmp_path, keep):
    intra, ref, _ = _valid_pair()
    path = _write(tmp_path / "keep.gfix", [(intra, True), (_predicted_payload(ref, keep, 0), False)])
    with pytest.raises(GFixFormatError, match="frame 1: keep flags must be 0 or 1"):
        _decode_all(path)


@pytest.mark.parametrize("modes", [0x08, 0x80, 0xFF])
def test_unknown_prediction_mode_bits(tmp_path, modes):
    intra, ref, _ = _valid_pair()
    path = _write(tmp_path / "modes.gfix", [(intra, True), (_predicted_payload(ref, [1, 0, 1, 1], modes), False)])
    with pytest.raises(GFixFormatError, match=f"frame 1: unknown prediction mode bits {modes:#x}"):
        _decode_all(path)


def test_unsorted_intra_positions(tmp_path):
    w = ByteWriter()
    w.u8(int(FrameType.INTRA))
    w.varint(3)
    w.raw(encode_symbols(np.array([10, 4, -2], dtype=np.int64)))  # y = 10, 14, 12
    for column in ([1, 2, 3], [16, 16, 16], [0, 0, 0], [16, 16, 16], [5, 5, 5], [0, 0, 0], [0, 0, 0]):
        w.raw(encode_symbols(np.array(column, dtype=np.int64)))
    path = _write(tmp_path / "unsorted.gfix", [(w.getvalue(), True)])
    with pytest.raises(GFixFormatError, match="frame 0: intra positions are not sorted"):
        _decode_all(path)
    # The same block sorted decodes: it is the order that is refused.
    sorted_block = bytearray(w.getvalue())
    good = ByteWriter()
    good.u8(int(FrameType.INTRA))
    good.varint(3)
    good.raw(encode_symbols(np.array([10, 2, 2], dtype=np.int64)))
    rest = bytes(sorted_block[2 + len(encode_symbols(np.array([10, 4, -2], dtype=np.int64))):])
    _decode_all(_write(tmp_path / "sorted.gfix", [(good.getvalue() + rest, True)]))


def _stream_info_with(steps: tuple[float, float, float, float]) -> bytes:
    payload = bytearray(_stream_info())
    struct.pack_into("<4d", payload, 1, *steps)  # version u8, then the four f64 steps
    return bytes(payload)


@pytest.mark.parametrize("field,value", [
    ("pos_step", math.nan), ("chol_step", math.inf), ("luma_step", 0.0),
    ("chroma_step", -1 / 64), ("pos_step", 1e300), ("chol_step", -math.nan),
])
def test_nan_or_absurd_quantisation_steps(tmp_path, field, value):
    intra, _, _ = _valid_pair()
    steps = dict(zip(("pos_step", "chol_step", "luma_step", "chroma_step"), (0.125, 0.125, 1 / 128, 1 / 64)))
    steps[field] = value
    path = _write(tmp_path / "steps.gfix", [(intra, True)], stream_info=_stream_info_with(tuple(steps.values())))
    with pytest.raises(GFixFormatError, match=rf"steps.gfix: STREAM_INFO: invalid quantisation steps: {field}"):
        Decoder.open(path, enhance=False)
    # The unmodified steps written the same way decode.
    _decode_all(_write(tmp_path / "ok.gfix", [(intra, True)],
                       stream_info=_stream_info_with((0.125, 0.125, 1 / 128, 1 / 64))))


@pytest.mark.parametrize("garbage", [b"", b"\x00", b"not an adapter at all" * 4, bytes(range(256))])
def test_garbage_enhancer_payload_through_decoder_open(tmp_path, garbage):
    from gfix_sdk.enhance.tiny import SHIPPED

    intra, _, _ = _valid_pair()
    path = _write(tmp_path / "enh.gfix", [(intra, True)], enhancer=garbage)
    with pytest.raises(GFixFormatError, match="enh.gfix: ENHANCER: "):
        Decoder.open(path, base=SHIPPED, backend="torch")
    with Decoder.open(path, enhance=False) as dec:  # the Gaussian frames still decode without it
        assert dec.info.has_enhancer and dec[0].shape == (HEIGHT, WIDTH, 3)
