"""The Gaussian video codec end to end: encode -> .gfix -> Decoder, and the CLI."""

import errno
import gc
import json
import os
import weakref

import numpy as np
import pytest
import torch

from gfix_sdk import Decoder, encode_video
from gfix_sdk.encoder import encode_frames
from gfix_sdk.cli import main as gfix_main
from gfix_sdk.errors import GFixFormatError, VideoReadError
from gfix_sdk.gaussians.sequence import SequenceConfig
from gfix_sdk.io import load_bundled_clip, read_video, write_video

CONFIG = SequenceConfig(gaussians=400, key_iterations=120, p_iterations=25, qat_iterations=15, gop=4)


@pytest.fixture(scope="module")
def clip():
    frames, info = load_bundled_clip(max_frames=6, size=(160, 90))
    return frames, info


@pytest.fixture(scope="module")
def encoded(clip, tmp_path_factory):
    frames, info = clip
    path = tmp_path_factory.mktemp("codec") / "clip.gfix"
    recons = []
    report = encode_frames(frames, path, width=160, height=90, fps=info.fps, config=CONFIG,
                           total=len(frames), progress=False,
                           on_frame=lambda c: recons.append(c.reconstruction.numpy()))
    return path, report, recons


def test_round_trip_reproduces_encoder_reconstruction_exactly(encoded):
    path, report, recons = encoded
    with Decoder.open(path) as dec:
        assert len(dec) == report.num_frames == 6
        assert dec.info.key_frames == (0, 4)
        for decoded, expected in zip(dec.frames(), recons, strict=True):
            assert decoded.dtype == np.uint8 and decoded.shape == (90, 160, 3)
            np.testing.assert_array_equal(decoded, expected)


def test_a_predicted_frame_that_keeps_every_gaussian_adds_none(clip, tmp_path):
    # No pruning and no renewal: every P-frame keeps all its (visible) Gaussians
    # and places zero new ones (this used to fail in torch.multinomial).
    frames, info = clip
    config = SequenceConfig(gaussians=30, key_iterations=20, p_iterations=4, qat_iterations=2, gop=4,
                            prune_ratio=0.0, add_fraction=0.0)
    recons = []
    encode_frames(frames[:2], tmp_path / "keep.gfix", width=160, height=90, fps=info.fps, config=config,
                  progress=False, on_frame=lambda c: recons.append(c.reconstruction.numpy()))
    with Decoder.open(tmp_path / "keep.gfix") as dec:
        for decoded, expected in zip(dec.frames(), recons, strict=True):
            np.testing.assert_array_equal(decoded, expected)


def test_random_access_from_nearest_key_frame(encoded):
    path, _, recons = encoded
    with Decoder.open(path) as dec:
        for index in (5, 2, 4, 0, 3, -1):
            np.testing.assert_array_equal(dec[index], recons[index])
        tensor = dec.frame(1, as_tensor=True)
        assert tensor.dtype.is_floating_point is False and tuple(tensor.shape) == (90, 160, 3)
        with pytest.raises(IndexError):
            dec.frame(6)
        with pytest.raises(TypeError):
            dec["1"]


def test_report_and_info_agree(encoded, clip):
    path, report, _ = encoded
    with Decoder.open(path) as dec:
        info = dec.info
    assert info.num_bytes == report.num_bytes == path.stat().st_size
    assert info.fps == pytest.approx(25.0) and (info.width, info.height) == (160, 90)
    assert info.bits_per_pixel == pytest.approx(8 * info.num_bytes / (6 * 160 * 90))
    assert info.bitrate_kbps == pytest.approx(8 * info.num_bytes / (6 / 25) / 1000)
    assert min(report.frame_psnr) > 24.5  # measured 25.31 .. 26.06 dB


def test_decoder_streams_without_holding_frames(encoded):
    """Every yielded frame (the array and the tensor whose memory it shares)
    is collectable once the caller drops it: a decoder that kept frames (a
    list, a cache) would keep them alive and fail here."""
    path, _, recons = encoded
    with Decoder.open(path) as dec:
        refs = []
        for frame in dec.frames():
            assert frame.shape == (90, 160, 3)
            refs.append([weakref.ref(frame)] + ([weakref.ref(frame.base)] if frame.base is not None else []))
            del frame
            gc.collect()
            # Only the frame just yielded may still be referenced (by the generator's frame).
            alive = [i for i, group in enumerate(refs[:-1]) if any(r() is not None for r in group)]
            assert alive == [], f"frames {alive} are still held after the caller dropped them"
        assert len(refs) == len(recons) == 6
        gc.collect()
        assert all(r() is None for group in refs for r in group)
        # Between frames the decoder holds Gaussians, never images.
        assert [v for v in vars(dec).values() if isinstance(v, (np.ndarray, torch.Tensor))] == []


def test_corrupted_and_truncated_files_raise_format_error(encoded, tmp_path):
    path, _, _ = encoded
    data = path.read_bytes()
    cuts = [0, 10, 40, 60, len(data) // 2, len(data) - 1]
    for cut in cuts:
        bad = tmp_path / f"cut{cut}.gfix"
        bad.write_bytes(data[:cut])
        with pytest.raises(GFixFormatError):
            with Decoder.open(bad) as dec:
                list(dec.frames())
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    bad = tmp_path / "flipped.gfix"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(GFixFormatError):
        with Decoder.open(bad) as dec:
            list(dec.frames())


def test_missing_and_unreadable_inputs(tmp_path):
    with pytest.raises(FileNotFoundError):
        encode_video(tmp_path / "missing.mp4", tmp_path / "out.gfix", config=CONFIG, progress=False)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 50)
    with pytest.raises(VideoReadError):
        encode_video(garbage, tmp_path / "out.gfix", config=CONFIG, progress=False)
    assert not (tmp_path / "out.gfix").exists()
    with pytest.raises(FileNotFoundError):
        Decoder.open(tmp_path / "missing.gfix")


def test_failed_encode_leaves_nothing(clip, tmp_path):
    frames, info = clip

    def frames_then_crash():
        yield frames[0]
        yield frames[1]
        raise RuntimeError("source died")

    target = tmp_path / "partial.gfix"
    with pytest.raises(RuntimeError, match="source died"):
        encode_frames(frames_then_crash(), target, width=160, height=90, fps=25, config=CONFIG, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="uint8"):
        encode_frames([frames[0].astype(np.float32)], target, width=160, height=90, fps=25,
                      config=CONFIG, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cli_encode_info_decode(clip, tmp_path, capsys):
    frames, _ = clip
    source = tmp_path / "in.mkv"
    write_video(source, frames[:3], fps=25, lossless=True)
    out = tmp_path / "out.gfix"
    assert gfix_main(["encode", str(source), "-o", str(out), "--preset", "fast", "--gaussians", "300",
                      "--frames", "2", "-q"]) == 0
    assert "2 frames" in capsys.readouterr().out
    assert gfix_main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == 2 and info["width"] == 160 and info["gaussians"] == 300
    decoded_path = tmp_path / "decoded.mkv"
    assert gfix_main(["decode", str(out), "-o", str(decoded_path), "--lossless"]) == 0
    decoded, _ = read_video(decoded_path)  # PyAV as an independent client of our output
    with Decoder.open(out) as dec:
        np.testing.assert_array_equal(decoded, np.stack(list(dec.frames())))
    # Errors are reported, not raised, with a non-zero exit code.
    assert gfix_main(["info", str(tmp_path / "missing.gfix")]) == 1
    assert "error" in capsys.readouterr().err
    (tmp_path / "bad.gfix").write_bytes(b"hello")
    assert gfix_main(["decode", str(tmp_path / "bad.gfix"), "-o", str(tmp_path / "x.mp4")]) == 1
    assert not (tmp_path / "x.mp4").exists()


def test_cli_help_teaches(capsys):
    with pytest.raises(SystemExit):
        gfix_main(["--help"])
    text = capsys.readouterr().out
    for word in ("encode", "decode", "info", "demo", "examples"):
        assert word in text


def test_cli_max_drift_option(capsys):
    from gfix_sdk.cli import _config_from_args, build_parser
    from gfix_sdk.gaussians.sequence import PRESETS

    parse = build_parser().parse_args
    assert _config_from_args(parse(["encode", "in.mp4", "-o", "o.gfix"])).max_drift_db == PRESETS["medium"].max_drift_db
    assert _config_from_args(parse(["encode", "in.mp4", "-o", "o.gfix", "--max-drift", "off"])).max_drift_db is None
    assert _config_from_args(parse(["encode", "in.mp4", "-o", "o.gfix", "--max-drift", "0.5"])).max_drift_db == 0.5
    for bad in ("0", "-1", "nan", "inf", "x"):
        with pytest.raises(SystemExit):
            parse(["encode", "in.mp4", "-o", "o.gfix", "--max-drift", bad])
        assert "positive number of dB or 'off'" in capsys.readouterr().err


def test_encoding_device_plumbing(clip, tmp_path, capsys):
    """Device strings are checked up front with clear errors and nothing written;
    the CPU path is the default here and records where it ran."""
    import torch

    from gfix_sdk.gaussians.sequence import SequenceEncoder, resolve_device

    frames, info = clip
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad, message in (("meta", "cpu' or 'cuda"), ("tpu", "invalid device"), ("cuda:99", "CUDA")):
        with pytest.raises(ValueError, match=message):
            SequenceEncoder(CONFIG, 90, 160, device=bad)
    target = tmp_path / "out.gfix"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            encode_frames(frames[:1], target, width=160, height=90, fps=25, config=CONFIG, progress=False,
                          device="cuda")
        source = tmp_path / "in.mkv"
        write_video(source, frames[:1], fps=25, lossless=True)
        assert gfix_main(["encode", str(source), "-o", str(target), "--device", "cuda", "-q"]) == 1
        assert "no CUDA device" in capsys.readouterr().err
    assert not target.exists()
    report = encode_frames(frames[:2], target, width=160, height=90, fps=25, config=CONFIG, progress=False,
                           device="cpu")
    assert report.device == "cpu" and target.exists()


@pytest.mark.needs_cuda
def test_gpu_encode_decodes_like_a_cpu_encode(clip, tmp_path):
    """Encoding on CUDA writes the same format: the CPU decoder reproduces the
    encoder's reconstruction exactly, at a quality close to a CPU encode's."""
    frames, info = clip
    recons = []
    gpu = encode_frames(frames, tmp_path / "gpu.gfix", width=160, height=90, fps=info.fps, config=CONFIG,
                        progress=False, device="cuda", on_frame=lambda c: recons.append(c.reconstruction.numpy()))
    cpu = encode_frames(frames, tmp_path / "cpu.gfix", width=160, height=90, fps=info.fps, config=CONFIG,
                        progress=False, device="cpu")
    assert gpu.device.startswith("cuda")
    with Decoder.open(tmp_path / "gpu.gfix") as dec:
        for frame, expected in zip(dec.frames(), recons, strict=True):
            np.testing.assert_array_equal(frame, expected)
    assert abs(gpu.mean_psnr - cpu.mean_psnr) < 0.5


class _SmallDisk:
    """A file object that fails with ENOSPC once ``room`` bytes are written,
    as a full file system does (for GFixWriter's ``open``)."""

    def __init__(self, file, room: int) -> None:
        self._file, self._room = file, room

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if size > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= size
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)


@pytest.mark.parametrize("room", [10, 150, 10 ** 9])
def test_disk_full_fails_clearly_and_leaves_nothing(clip, tmp_path, capsys, monkeypatch, room):
    """ENOSPC while writing the header, a frame, or (room to spare, the
    failure at fsync) when publishing: one line naming the path and the
    cause, exit status 1, and no target or temporary file left behind."""
    import builtins

    from gfix_sdk.bitstream import writer as writer_module

    frames, _ = clip
    source = tmp_path / "in.mkv"
    write_video(source, frames[:2], fps=25, lossless=True)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "clip.gfix"
    monkeypatch.setattr(writer_module, "open", lambda *a, **k: _SmallDisk(builtins.open(*a, **k), room),
                        raising=False)
    if room > 10 ** 6:
        def fsync(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(writer_module.os, "fsync", fsync)
    status = gfix_main(["encode", str(source), "-o", str(target), "--preset", "fast", "--gaussians", "30",
                        "--frames", "2", "-q"])
    err = capsys.readouterr().err
    assert status == 1, err
    assert err.startswith("gfix: error: ") and err.count("\n") == 1, err  # one line, no traceback
    assert str(target) in err and "No space left on device" in err, err
    assert list(out_dir.iterdir()) == []
