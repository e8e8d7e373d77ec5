"""The evaluation suite (gfix_sdk.eval, gfix eval) and UVG support (gfix_sdk.io.uvg).

The end-to-end report runs the bundled clip (downscaled to 160x90, 8
frames) through H.264 (4 CRFs), the Gaussian codec (4 Gaussian counts with
few fitting iterations) and a small lossy codec written here against the
RatePointCodec protocol, scoring PSNR, MS-SSIM, LPIPS (seeded random
weights), VMAF, with FID omitted (no weights), and checks every written
file. ``-m slow`` adds GFix on the tiny base.
"""

from __future__ import annotations

import csv
import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest

from gfix_sdk.anchors import EncodedClip, GaussianAnchor, GFixAnchor, H264Anchor, RatePointCodec
from gfix_sdk.errors import VideoReadError
from gfix_sdk.eval import CodecOptions, main, run_eval, uvg_videos, video_spec
from gfix_sdk.eval.bdtables import BDCell, anchor_table, bd_cell, mean_cell
from gfix_sdk.eval.codecs import load_codec
from gfix_sdk.eval.records import CSV_COLUMNS, RatePointResult, csv_text
from gfix_sdk.eval.scoring import metric_spec
from gfix_sdk.eval.videos import BUNDLED, VideoSpec, unique_names
from gfix_sdk.gaussians.sequence import SequenceConfig
from gfix_sdk.metrics import bd_rate
from gfix_sdk.io import load_bundled_clip, read_video, write_video
from gfix_sdk.io.uvg import UVG_SEQUENCES, find_uvg, load_uvg, open_uvg, uvg_sequence

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Few fitting iterations: a quick, low-quality Gaussian codec for CI.
QUICK_GS = SequenceConfig(key_iterations=60, p_iterations=10, qat_iterations=10)


@pytest.fixture(autouse=True)
def _no_weight_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GFIX_LPIPS", "GFIX_FID_WEIGHTS", "GFIX_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GFIX_LPIPS_ALEX", "/nonexistent/lpips_alex.pt")  # nor the installed weights


def _point(codec: str, kbps: float, **scores: float | None) -> RatePointResult:
    # 25 fps, 25 frames: bytes = kbps * 125 gives exactly `kbps`.
    return RatePointResult(video="v", codec=codec, knob="q", value=kbps, bytes=int(round(kbps * 125)), frames=25,
                           width=16, height=16, fps=25.0, seconds=0.0, scores=dict(scores))


# --------------------------------------------------------------------------- BD-rate cells


def test_bd_cell_half_rate_is_minus_fifty_percent() -> None:
    rates = [100.0, 200.0, 400.0, 800.0]
    anchor = [_point("a", r, psnr=30 + i, lpips=0.4 - 0.1 * i) for i, r in enumerate(rates)]
    test = [_point("t", r / 2, psnr=30 + i, lpips=0.4 - 0.1 * i) for i, r in enumerate(rates)]
    for key in ("psnr", "lpips"):  # lpips: lower is better
        cell = bd_cell("v", "t", "a", metric_spec(key), test, anchor)
        assert cell.value == pytest.approx(-50.0, abs=1e-9) and cell.text() == "-50.0 %"
        reverse = bd_cell("v", "a", "t", metric_spec(key), anchor, test)
        assert reverse.value == pytest.approx(100.0, abs=1e-9)


def test_bd_cell_reasons() -> None:
    anchor = [_point("a", r, psnr=30 + i) for i, r in enumerate([100.0, 200.0, 400.0, 800.0])]
    far = [_point("t", r, psnr=40 + i) for i, r in enumerate([100.0, 200.0, 400.0, 800.0])]
    few = far[:3]
    missing = [_point("t", r, psnr=None) for r in [100.0, 200.0, 400.0, 800.0]]
    spec = metric_spec("psnr")
    assert bd_cell("v", "t", "a", spec, far, anchor).text() == "n/a (no overlap)"
    assert bd_cell("v", "t", "a", spec, few, anchor).text() == "n/a (< 4 points)"
    assert bd_cell("v", "t", "a", spec, missing, anchor).text() == "n/a (no scores)"
    omitted = bd_cell("v", "t", "a", metric_spec("fid"), far, anchor, omitted="FID omitted: no weights")
    assert omitted.text() == "n/a (metric omitted)" and omitted.detail == "FID omitted: no weights"
    shifted = [_point("t", r, psnr=32 + i) for i, r in enumerate([100.0, 200.0, 400.0, 800.0])]
    low = bd_cell("v", "t", "a", spec, shifted, anchor)  # overlap [32, 33]: 1 dB of 5
    assert low.low_overlap and low.value is not None and low.text().endswith(" %*")


def test_tables_and_means() -> None:
    cells = [BDCell("v", "gs", "h264", "psnr", 12.345), BDCell("v", "gs", "h264", "lpips", None, "no overlap")]
    table = anchor_table(cells, "h264", ["h264", "gs"], [metric_spec("psnr"), metric_spec("lpips")])
    assert table.splitlines() == ["| codec | PSNR (dB) | LPIPS |", "|---|---|---|",
                                  "| gs | +12.3 % | n/a (no overlap) |"]
    mean = mean_cell([BDCell("a", "t", "x", "psnr", -10.0), BDCell("b", "t", "x", "psnr", -20.0),
                      BDCell("c", "t", "x", "psnr", None, "no overlap")])
    assert mean.value == pytest.approx(-15.0) and mean.text() == "-15.0 % (2/3 videos)"


def test_csv_columns_and_empty_cells() -> None:
    text = csv_text([_point("a", 100.0, psnr=31.5, ms_ssim=None)])
    rows = list(csv.DictReader(text.splitlines()))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[0]["psnr"] == "31.5" and rows[0]["ms_ssim"] == "" and rows[0]["kbps"] == "100.0"


# --------------------------------------------------------------------------- inputs and codecs


def test_video_specs(tmp_path: Path) -> None:
    assert video_spec(BUNDLED) == VideoSpec(name="bundled", path="bundled")
    raw = tmp_path / "clip_176x144_30fps_10bit.yuv"
    raw.write_bytes(b"")
    spec = video_spec(raw)
    assert (spec.name, spec.size, spec.fps, spec.bit_depth) == ("clip_176x144_30fps_10bit", (176, 144), 30.0, 10)
    (tmp_path / "plain.yuv").write_bytes(b"")
    with pytest.raises(ValueError, match="--size"):
        video_spec(tmp_path / "plain.yuv")
    assert video_spec(tmp_path / "plain.yuv", size=(64, 48)).size == (64, 48)
    with pytest.raises(FileNotFoundError, match="bundled"):
        video_spec(tmp_path / "missing.mp4")
    names = [s.name for s in unique_names([VideoSpec("a b", "x"), VideoSpec("a_b", "y"), VideoSpec("a_b-2", "z")])]
    assert names == ["a_b", "a_b-2", "a_b-2-2"]


def test_protocol_and_codec_loading() -> None:
    for codec in (H264Anchor(), GaussianAnchor(), _ZlibCodec()):
        assert isinstance(codec, RatePointCodec)
    assert H264Anchor().rate_points(4, 320, 180) == [42, 35, 29, 22]
    assert GaussianAnchor().rate_points(4, 320, 180) == [1000, 2000, 4000, 8000]
    assert isinstance(load_codec("gfix_sdk.anchors:H264Anchor"), H264Anchor)
    with pytest.raises(ValueError, match="does not follow RatePointCodec"):
        load_codec("os:path")
    with pytest.raises(ValueError, match="module:attribute"):
        load_codec("nocolon")


class _ZlibCodec:
    """A codec of one's own: colours quantised with step ``value``, zlib-compressed."""

    name = "zlib"
    rate_knob = "step"

    def rate_points(self, count: int, width: int, height: int) -> list[int]:
        return [64, 32, 16, 8, 4, 2][:count]

    def encode_point(self, frames: np.ndarray, fps: float, value: int) -> EncodedClip:
        levels = (frames // value).astype(np.uint8)
        data = zlib.compress(levels.tobytes(), 9)
        decoded = np.clip(np.frombuffer(zlib.decompress(data), np.uint8).reshape(frames.shape).astype(np.int32)
                          * value + value // 2, 0, 255).astype(np.uint8)
        return EncodedClip(codec=self.name, data=data, num_bytes=len(data), decoded=decoded, fps=fps,
                           params={"step": value})


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames, info = load_bundled_clip(max_frames=8, size=(160, 90))
    path = tmp_path_factory.mktemp("clip") / "bbb_small.mkv"
    write_video(path, frames, fps=info.fps, lossless=True)
    return path


def test_report_end_to_end(small_clip: Path, lpips_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    codecs = ["h264", GaussianAnchor(preset=QUICK_GS), _ZlibCodec()]
    result = run_eval([small_clip], codecs, 8, out, rate_values={"h264": [42, 38, 34, 30], "gs": [100, 200, 400, 800]},
                      lpips=lpips_file, progress=False)
    assert result.metrics == ("psnr", "ms_ssim", "lpips", "vmaf")
    assert set(result.omitted) == {"fid"}

    rows = list(csv.DictReader(result.csv_path.read_text().splitlines()))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 12
    assert {r["codec"] for r in rows} == {"h264", "gs", "zlib"}
    assert [r["param"] for r in rows if r["codec"] == "gs"] == [f"gaussians={n}" for n in (100, 200, 400, 800)]
    for row in rows:
        assert row["video"] == "bbb_small" and row["fid"] == ""
        assert int(row["bytes"]) > 0 and float(row["kbps"]) > 0 and float(row["bpp"]) > 0
        for key in ("psnr", "ms_ssim", "lpips", "vmaf"):
            assert math.isfinite(float(row[key]))
        assert row["frames"] == "8" and (row["width"], row["height"]) == ("160", "90")
    h264 = [r for r in rows if r["codec"] == "h264"]
    # A real anchor's curve: CRF 42 -> 30 raises the rate, and the quality with it.
    for key in ("kbps", "psnr", "ms_ssim", "vmaf"):
        values = [float(r[key]) for r in h264]
        assert values == sorted(values) and len(set(values)) == 4, (key, values)
    lpips_values = [float(r["lpips"]) for r in h264]
    assert lpips_values == sorted(lpips_values, reverse=True), lpips_values

    # One point's PSNR recomputed from the frames, independently of the
    # pipeline: the zlib codec's decoded frames follow from its step.
    reference = read_video(small_clip)[0][:8].astype(np.int64)
    for row in (r for r in rows if r["codec"] == "zlib" and r["param"] == "step=8"):
        decoded = np.clip(reference // 8 * 8 + 4, 0, 255)
        mse = ((reference - decoded) ** 2).reshape(8, -1).mean(axis=1)
        assert float(row["psnr"]) == pytest.approx(float(np.mean(10 * np.log10(255 ** 2 / mse))), abs=1e-6)

    document = json.loads(result.json_path.read_text())
    assert document["format"] == "gfix-eval/1" and document["complete"] is True
    assert "pytorch-fid" in document["omitted"]["fid"] and document["metrics"]["fid"]["available"] is False
    assert len(document["points"]) == 12 and all(p["fid"] is None for p in document["points"])
    assert document["videos"] == [{"name": "bbb_small", "source": str(small_clip), "width": 160, "height": 90,
                                   "fps": 25.0, "frames": 8}]
    cells = document["bd_rate"]
    assert len(cells) == 3 * 2 * 4  # ordered codec pairs x available metrics
    assert all((c["value"] is None) != (c["reason"] is None) for c in cells)
    # A cell matches bd_rate recomputed on the CSV rows it summarises.
    cell = next(c for c in cells if (c["test"], c["anchor"], c["metric"]) == ("zlib", "h264", "psnr"))
    assert cell["value"] is not None, cell

    def curve(codec: str) -> tuple[list[float], list[float]]:
        points = [r for r in rows if r["codec"] == codec]
        return [float(r["kbps"]) for r in points], [float(r["psnr"]) for r in points]

    assert cell["value"] == pytest.approx(bd_rate(*curve("h264"), *curve("zlib")), rel=1e-6)

    png = out / "rd_bbb_small.png"
    assert result.plots == {"bbb_small": png} and png.read_bytes()[:8] == PNG_SIGNATURE

    summary = result.summary_path.read_text()
    for text in ("# GFix evaluation report", "## bbb_small", "![RD curves of bbb_small](rd_bbb_small.png)",
                 "### BD-rate against `h264`", "### BD-rate against `gs`", "### BD-rate against `zlib`",
                 "| codec | PSNR (dB) | MS-SSIM | LPIPS | VMAF |", "- fid: FID omitted", "| gs | gaussians=100 |"):
        assert text in summary, text


def test_cli_on_the_bundled_clip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    code = main(["bundled", "--anchors", "h264", "--frames", "4", "--crf", "40,34", "--no-vmaf", "-q",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "metrics: psnr, ms_ssim" in printed and "vmaf omitted: VMAF omitted: disabled" in printed
    document = json.loads((out / "points.json").read_text())
    assert [p["param"] for p in document["points"]] == ["crf=40", "crf=34"]
    assert document["bd_rate"] == []  # one codec: nothing to compare
    assert (out / "rd_bundled.png").read_bytes()[:8] == PNG_SIGNATURE


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path / "x")]) == 1
    assert "at least one VIDEO" in capsys.readouterr().err
    assert main(["bundled", "--anchors", "h264,nope", "--out", str(tmp_path / "y")]) == 1
    assert "unknown codec 'nope'" in capsys.readouterr().err
    assert main(["--uvg", str(tmp_path / "no-uvg"), "--out", str(tmp_path / "z")]) == 1
    assert "UVG folder" in capsys.readouterr().err


def test_add_eval_parser_registers_the_subcommand() -> None:
    import argparse

    from gfix_sdk.eval import add_eval_parser

    parser = argparse.ArgumentParser(prog="gfix")
    add_eval_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "a.mp4", "b.y4m", "--out", "o", "--anchors", "h264,gs", "--gaussians",
                              "500,1000", "--fid-weights", "f.pth", "--no-vmaf"])
    assert args.videos == ["a.mp4", "b.y4m"] and args.gaussians == [500, 1000] and args.no_vmaf
    assert args.frames == 96 and args.points == 4 and callable(args.func)


@pytest.mark.slow
def test_report_with_gfix_on_the_tiny_base(small_clip: Path, tmp_path: Path) -> None:
    options = CodecOptions(preset=QUICK_GS, gfix_steps=30, gfix_patch=32)
    result = run_eval([small_clip], ["gs", "gfix"], 4, tmp_path / "gfix", rate_values={"gs": [200, 400],
                      "gfix": [200, 400]}, vmaf=False, codec_options=options, progress=False)
    document = json.loads(result.json_path.read_text())
    gfix = [p for p in document["points"] if p["codec"] == "gfix"]
    gs = [p for p in document["points"] if p["codec"] == "gs"]
    assert len(gfix) == 2
    assert all((p["params"]["adapter_bytes"] > 0) == bool(p["params"]["adapter_kept"]) for p in gfix)
    # Same Gaussian stream plus the adapter (or the note why it was dropped): GFix's file is the larger one.
    assert all(g["bytes"] > s["bytes"] for g, s in zip(gfix, gs))
    assert any("tiny stand-in" in note for note in document["notes"])
    assert isinstance(GFixAnchor.with_tiny_base(tmp_path / "tiny"), GFixAnchor)


# --------------------------------------------------------------------------- UVG

UVG_NAMES = {
    "Beauty": "Beauty_1920x1080_120fps_420_8bit_YUV.yuv",
    "Bosphorus": "bosphorus_1920x1080_120.yuv",
    "HoneyBee": "HoneyBee.yuv",
    "Jockey": "Jockey_1920x1080_120fps_420_8bit_YUV_RAW/Jockey_1920x1080_120fps_420_8bit_YUV.yuv",
    "ReadySetGo": "Ready_Steady_Go-1920x1080.yuv",
    "ShakeNDry": "ShakeNDry_1920x1080_120fps_420_8bit_YUV_RAW.yuv",
    "YachtRide": "YachtRide_1920x1080_120fps_420_8bit_YUV.yuv",
}


def _placeholders(folder: Path, names: dict[str, str]) -> None:
    for relative in names.values():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(b"")


def test_uvg_names_are_matched(tmp_path: Path) -> None:
    _placeholders(tmp_path, UVG_NAMES)
    # Distractors: 4K and 10-bit versions, other files, a lesser Beauty match.
    for extra in ("Beauty_3840x2160_120fps_420_8bit_YUV.yuv", "YachtRide_1920x1080_120fps_420_10bit_YUV.yuv",
                  "Beauty.yuv", "notes.txt", "Bosphorus_1920x1080_120fps.y4m", "CityAlley_1920x1080_50fps.yuv"):
        (tmp_path / extra).write_bytes(b"")
    found = find_uvg(tmp_path)
    assert list(found) == [s.name for s in UVG_SEQUENCES]
    assert {name: str(path.relative_to(tmp_path)) for name, path in found.items()} == UVG_NAMES
    specs = uvg_videos(tmp_path, ["Jockey", "readysteadygo"])
    assert [(s.name, s.size, s.fps) for s in specs] == [("Jockey", (1920, 1080), 120.0),
                                                       ("ReadySetGo", (1920, 1080), 120.0)]
    assert uvg_sequence("ShakeNDry").num_frames == 300
    assert {s.fps for s in UVG_SEQUENCES} == {120.0}


def test_uvg_missing_folder_and_sequences(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="UVG folder .* does not exist"):
        find_uvg(tmp_path / "nowhere")
    partial = {k: v for k, v in UVG_NAMES.items() if k not in ("HoneyBee", "YachtRide")}
    _placeholders(tmp_path, partial)
    (tmp_path / "YachtRide_1920x1080_120fps_420_10bit_YUV.yuv").write_bytes(b"")
    with pytest.raises(FileNotFoundError) as info:
        find_uvg(tmp_path)
    message = str(info.value)
    assert "HoneyBee (e.g. HoneyBee_1920x1080_120fps_420_8bit_YUV.yuv)" in message
    assert "YachtRide" in message and "not 8-bit" in message and "Beauty" not in message
    with pytest.raises(ValueError, match="unknown UVG sequence"):
        find_uvg(tmp_path, ["Kimono"])
    (tmp_path / "Beauty_1920x1080_120fps_420_8bit_YUV_copy.yuv").write_bytes(b"")
    with pytest.raises(ValueError, match="several files"):
        find_uvg(tmp_path, ["Beauty"])
    with pytest.raises(VideoReadError, match="empty"):
        open_uvg(tmp_path, "Jockey")


def _bt601_limited(rgb: np.ndarray) -> np.ndarray:
    """RGB (.., 3) in 0..255 -> BT.601 limited-range Y'CbCr, unrounded."""
    r, g, b = (rgb[..., k].astype(np.float64) for k in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return np.stack([16 + 219 / 255 * y, 128 + 224 / 255 * (b - y) / 1.772,
                     128 + 224 / 255 * (r - y) / 1.402], axis=-1)


def test_uvg_reads_bt601_frames(tmp_path: Path) -> None:
    # Two colours in a 2x2 checkerboard of quadrants (catches swapped Cb/Cr,
    # a wrong matrix or range, and transposed planes), coded as 4:2:0 planes.
    height, width = 1080, 1920
    colours = np.array([[200, 40, 60], [30, 120, 220]], np.uint8)
    yuv = np.rint(_bt601_limited(colours)).astype(np.uint8)  # what a BT.601 encoder writes
    rows, cols = np.indices((height, width))
    which = ((rows >= height // 2) ^ (cols >= width // 2)).astype(int)
    planes = [yuv[which, 0], yuv[which[::2, ::2], 1], yuv[which[::2, ::2], 2]]
    frame = b"".join(plane.tobytes() for plane in planes)
    (tmp_path / "Bosphorus_1920x1080_120fps_420_8bit_YUV.yuv").write_bytes(frame * 3)
    frames, info = load_uvg(tmp_path, "Bosphorus", frames=2)
    assert frames.shape == (2, 1080, 1920, 3) and info.fps == 120.0
    # Read back: exactly the BT.601 inverse of the 8-bit codes, rounded, and
    # so the known RGB within the codes' rounding (measured: at most 1).
    y, cb, cr = (yuv[:, k].astype(np.float64) for k in range(3))
    luma = (y - 16) * 255 / 219
    red, blue = luma + 1.402 * (cr - 128) * 255 / 224, luma + 1.772 * (cb - 128) * 255 / 224
    inverse = np.rint(np.stack([red, (luma - 0.299 * red - 0.114 * blue) / 0.587, blue], axis=-1))
    assert inverse.tolist() == [[200, 39, 59], [30, 121, 220]]
    np.testing.assert_array_equal(frames[0], inverse.astype(np.uint8)[which])
    assert np.abs(frames[0].astype(int) - colours[which].astype(int)).max() == 1
    assert np.array_equal(frames[0], frames[1])