"""Scale-out on Ray: GOP-parallel encoding gives the same bytes, survives a
dead worker, leaves no partial file, and encode-many reports failures.

One local Ray runtime with 2 CPUs serves the whole module (starting one costs
seconds); ``encode_frames`` and ``encode_many`` use a runtime that is already
up and leave it running.
"""

import contextlib
import hashlib
import json
import os
import sys

import numpy as np
import pytest
import torch

from gfix_sdk.encoder import encode_frames
from gfix_sdk.cli import main as gfix_main
from gfix_sdk.errors import MissingDependencyError
from gfix_sdk.gaussians.sequence import SequenceConfig, SequenceEncoder
from gfix_sdk.io import load_bundled_clip, write_video
from gfix_sdk.raster.rasterize import cpu_threads
from gfix_sdk.scale import encode_gop, gop_chunks
from gfix_sdk.scale.gop import gop_threads

# Tiny on purpose: the point is bytes and plumbing, not quality.
CONFIG = SequenceConfig(gaussians=120, key_iterations=30, p_iterations=8, qat_iterations=4, gop=2)
W, H = 64, 36
# Big enough that torch's float reductions run on several threads and the
# bytes depend on their count (at 64x36 they never do): 2 one-frame GOPs.
WIDE = SequenceConfig(gaussians=1000, key_iterations=300, p_iterations=8, qat_iterations=20, gop=1)
WW, WH = 320, 180


@pytest.fixture(scope="module")
def frames():
    clip, _ = load_bundled_clip(max_frames=5, size=(W, H))
    clip = clip.copy()
    clip[3] = 255 - clip[3]  # a scene cut inside the second GOP
    return clip


@pytest.fixture(scope="module")
def sequential(frames, tmp_path_factory):
    """The workers=1 reference file (no Ray) and its bytes, encoded with default
    arguments by a process on 2 torch threads (the 2 workers get 1 CPU each)."""
    path = tmp_path_factory.mktemp("seq") / "seq.gfix"
    with process_threads(2):
        report = encode_frames(frames, path, width=W, height=H, fps=25, config=CONFIG, progress=False)
    return report, path.read_bytes()


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """Frames where the thread count matters, and their workers=1 file encoded
    with default arguments by a process on 2 torch threads."""
    clip, _ = load_bundled_clip(max_frames=2, size=(WW, WH))
    return clip, encode_wide(clip, tmp_path_factory.mktemp("wide") / "ref.gfix", threads=2)


def encode_wide(clip, path, *, threads, **options):
    with process_threads(threads):
        encode_frames(clip, path, width=WW, height=WH, fps=25, config=WIDE, progress=False, **options)
    return path.read_bytes()


@contextlib.contextmanager
def process_threads(count):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- GOPs are independent (no Ray needed) -----------------------------------------------------------


def test_scene_cut_does_not_move_gop_boundaries(sequential):
    report, _ = sequential
    # Boundaries at 0, 2, 4; the cut at 3 adds a key frame without shifting the next one.
    assert report.key_frames == [0, 2, 3, 4]


def test_a_gop_coded_alone_equals_the_sequence_there(frames):
    with gop_threads():
        whole = SequenceEncoder(CONFIG, H, W)
        expected = [whole.encode(f).payload for f in frames]
    chunks = list(gop_chunks(frames, gop=CONFIG.gop, height=H, width=W))
    assert [(start, len(batch)) for start, batch in chunks] == [(0, 2), (2, 2), (4, 1)]
    alone = [c.payload for start, batch in reversed(chunks)  # later GOPs first: no hidden state
             for c in encode_gop(batch, start_index=start, config=CONFIG, threads=1)]
    assert alone == expected[4:] + expected[2:4] + expected[:2]


def test_gops_are_fitted_on_threads_per_gop_torch_threads_and_all_cpus_for_the_rasterizer(frames, tmp_path):
    seen = []
    with process_threads(2):
        encode_frames(frames[:2], tmp_path / "x.gfix", width=W, height=H, fps=25, config=CONFIG, progress=False,
                      on_frame=lambda c: seen.append((torch.get_num_threads(), cpu_threads())))
        assert torch.get_num_threads() == 2  # restored
    assert seen == [(1, 2), (1, 2)]
    with pytest.raises(ValueError, match="threads_per_gop"):
        encode_frames(frames, tmp_path / "y.gfix", width=W, height=H, fps=25, config=CONFIG, threads_per_gop=0)
    assert not (tmp_path / "y.gfix").exists()


def test_the_bytes_follow_threads_per_gop_not_the_process_threads(wide, tmp_path):
    clip, expected = wide
    # Defaults: the same file from a process on 1 thread as from one on 2 ...
    assert sha(encode_wide(clip, tmp_path / "one.gfix", threads=1)) == sha(expected)
    # ... while torch on 2 threads per GOP is a different (equally valid) file here.
    assert sha(encode_wide(clip, tmp_path / "two.gfix", threads=2, threads_per_gop=2)) != sha(expected)


def test_gop_chunks_checks_frames_like_the_sequential_encoder(frames):
    with pytest.raises(ValueError, match="uint8"):
        list(gop_chunks([frames[0].astype(np.float32)], gop=2, height=H, width=W))


# --- Ray ---------------------------------------------------------------------------------------------


def test_two_workers_write_the_same_bytes_with_default_arguments(ray_local, frames, sequential, tmp_path):
    report, expected = sequential
    seen = []
    parallel = encode_frames(frames, tmp_path / "par.gfix", width=W, height=H, fps=25, config=CONFIG,
                             progress=False, workers=2, on_frame=lambda c: seen.append(c.index))
    assert sha((tmp_path / "par.gfix").read_bytes()) == sha(expected)
    assert seen == [0, 1, 2, 3, 4]  # on_frame still sees frames in order
    assert parallel.key_frames == report.key_frames and parallel.frame_psnr == report.frame_psnr
    assert parallel.device == "cpu"
    assert ray_local.is_initialized()  # a runtime we did not start is left running


def test_two_workers_of_one_cpu_equal_one_worker_on_two_threads(ray_local, wide, tmp_path):
    # The caveat this removes: the driver on 2 torch threads, each task on 1 CPU.
    clip, expected = wide
    assert sha(encode_wide(clip, tmp_path / "par.gfix", threads=2, workers=2)) == sha(expected)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_enhancer_is_trained_once_after_the_gops_with_the_same_bytes(ray_local, frames, tmp_path):
    from gfix_sdk.enhance.base import build_tiny_base
    from gfix_sdk.enhance.model import AdapterConfig
    from gfix_sdk.enhance.pipeline import EnhanceSettings
    from gfix_sdk.enhance.train import TrainConfig

    base = build_tiny_base(tmp_path / "base")  # random weights: only the plumbing is under test
    settings = EnhanceSettings(base=str(base), adapter=AdapterConfig(patch=32), train=TrainConfig(steps=2),
                               device="cpu", always_keep=True)
    files = []
    for workers in (1, 2):
        path = tmp_path / f"w{workers}.gfix"
        report = encode_frames(frames[:3], path, width=W, height=H, fps=25, config=CONFIG, progress=False,
                               enhance=settings, workers=workers)
        assert report.enhancer_bytes > 0 and len(report.enhanced_psnr) == 3
        files.append(path.read_bytes())
    assert sha(files[0]) == sha(files[1])


def test_a_dead_worker_is_retried_and_the_file_is_unchanged(ray_local, frames, sequential, tmp_path, monkeypatch):
    import gfix_sdk.scale.parallel as parallel

    marker = tmp_path / "killed-once"
    real = parallel.encode_gop

    def die_once(batch, **kwargs):
        # The first task to get here kills its worker process (as an OOM
        # kill or a lost node would); Ray must run that GOP again.
        try:
            with open(marker, "x"):
                pass
        except FileExistsError:
            return real(batch, **kwargs)
        os._exit(1)

    monkeypatch.setattr(parallel, "encode_gop", die_once)
    out = tmp_path / "retried.gfix"
    encode_frames(frames, out, width=W, height=H, fps=25, config=CONFIG, progress=False, workers=2)
    assert marker.exists()
    assert sha(out.read_bytes()) == sha(sequential[1])


def test_a_failing_task_leaves_no_file(ray_local, frames, tmp_path, monkeypatch):
    import gfix_sdk.scale.parallel as parallel

    real = parallel.encode_gop

    def fail_second_gop(batch, *, start_index, **kwargs):
        if start_index == 2:
            raise ValueError("fitting diverged")
        return real(batch, start_index=start_index, **kwargs)

    monkeypatch.setattr(parallel, "encode_gop", fail_second_gop)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(ValueError, match="fitting diverged") as info:
        encode_frames(frames, out_dir / "x.gfix", width=W, height=H, fps=25, config=CONFIG, progress=False,
                      workers=2)
    assert any("frames 2..3" in note for note in getattr(info.value, "__notes__", []))
    assert list(out_dir.iterdir()) == []  # neither the file nor its temporary


def test_an_interrupted_run_leaves_no_file(ray_local, frames, tmp_path):
    def ctrl_c(coded):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        encode_frames(frames, tmp_path / "x.gfix", width=W, height=H, fps=25, config=CONFIG, progress=False,
                      workers=2, on_frame=ctrl_c)
    assert list(tmp_path.iterdir()) == []
    assert ray_local.is_initialized()


def test_bad_options_are_refused_before_anything_is_written(frames, tmp_path):
    with pytest.raises(ValueError, match="workers"):
        encode_frames(frames, tmp_path / "x.gfix", width=W, height=H, fps=25, config=CONFIG, workers=0)
    with pytest.raises(ValueError, match="Ray address"):
        encode_frames(frames, tmp_path / "x.gfix", width=W, height=H, fps=25, config=CONFIG, workers=2,
                      ray_address="not an address")
    assert list(tmp_path.iterdir()) == []


def test_missing_ray_names_the_extra(frames, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(MissingDependencyError, match=r'pip install "gfix-sdk\[cluster\]"'):
        encode_frames(frames, tmp_path / "x.gfix", width=W, height=H, fps=25, config=CONFIG, workers=2)
    assert list(tmp_path.iterdir()) == []
    source = tmp_path / "in.mkv"
    write_video(source, frames[:2], fps=25, lossless=True)
    assert gfix_main(["encode", str(source), "-o", str(tmp_path / "y.gfix"), "--workers", "2", "-q"]) == 1
    assert "gfix-sdk[cluster]" in capsys.readouterr().err
    assert gfix_main(["eval", str(source), "--anchors", "h264", "--crf", "40", "--frames", "2", "--no-vmaf", "-q",
                      "--out", str(tmp_path / "eval"), "--workers", "2"]) == 1
    assert "gfix-sdk[cluster]" in capsys.readouterr().err
    # workers=1 needs no Ray at all.
    encode_frames(frames[:1], tmp_path / "z.gfix", width=W, height=H, fps=25, config=CONFIG, progress=False)
    assert (tmp_path / "z.gfix").exists()


# --- gfix eval --workers ----------------------------------------------------------------------------


def _eval_points(result):
    document = json.loads(result.json_path.read_text())
    assert document["complete"] is True
    return [{k: v for k, v in point.items() if k != "seconds"} for point in document["points"]], document["bd_rate"]


def test_eval_with_workers_gives_the_serial_report(ray_local, frames, tmp_path, monkeypatch, capsys):
    from gfix_sdk.anchors import GaussianAnchor
    from gfix_sdk.eval import run_eval

    for name in ("GFIX_LPIPS", "GFIX_FID_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)
    source = tmp_path / "in.mkv"
    write_video(source, frames[:3], fps=25, lossless=True)
    # The Gaussian point first: the H.264 task finishes long before it, and must still come second.
    codecs = [GaussianAnchor(preset=CONFIG), "h264"]
    common = dict(rate_values={"gs": [60], "h264": [40]}, vmaf=False)
    with process_threads(2):
        serial = run_eval([source], codecs, 3, tmp_path / "serial", progress=False, **common)
    parallel = run_eval([source], codecs, 3, tmp_path / "parallel", workers=2, **common)
    assert [(p.codec, p.value) for p in parallel.points] == [("gs", 60), ("h264", 40)]
    assert _eval_points(parallel) == _eval_points(serial)
    assert "2/2" in capsys.readouterr().err  # the progress bar counted both points
    assert ray_local.is_initialized()


def test_cli_eval_with_workers(ray_local, frames, tmp_path, capsys):
    source = tmp_path / "in.mkv"
    write_video(source, frames[:2], fps=25, lossless=True)
    assert gfix_main(["eval", str(source), "--anchors", "h264", "--crf", "40,34", "--frames", "2", "--no-vmaf", "-q",
                      "--out", str(tmp_path / "eval"), "--workers", "2"]) == 0
    assert "2 rate points" in capsys.readouterr().out
    document = json.loads((tmp_path / "eval" / "points.json").read_text())
    assert [p["param"] for p in document["points"]] == ["crf=40", "crf=34"]


def test_eval_task_errors_name_the_rate_point(ray_local, frames, tmp_path):
    from gfix_sdk.anchors import GaussianAnchor
    from gfix_sdk.eval import run_eval

    source = tmp_path / "in.mkv"
    write_video(source, frames[:2], fps=25, lossless=True)
    with pytest.raises(ValueError, match="gaussians") as info:
        run_eval([source], [GaussianAnchor(preset=CONFIG)], 2, tmp_path / "out", rate_values={"gs": [60, 0]},
                 vmaf=False, progress=False, workers=2)
    assert any("gs gaussians=0" in note for note in getattr(info.value, "__notes__", []))


# --- CLI ---------------------------------------------------------------------------------------------


def test_cli_encode_with_workers_matches_one_worker(ray_local, frames, tmp_path, capsys):
    source = tmp_path / "in.mkv"
    write_video(source, frames[:4], fps=25, lossless=True)
    common = ["--preset", "fast", "--gaussians", "60", "--gop", "2", "-q"]
    assert gfix_main(["encode", str(source), "-o", str(tmp_path / "one.gfix"), *common]) == 0
    assert gfix_main(["encode", str(source), "-o", str(tmp_path / "two.gfix"), "--workers", "2", *common]) == 0
    assert "4 frames" in capsys.readouterr().out
    assert (tmp_path / "one.gfix").read_bytes() == (tmp_path / "two.gfix").read_bytes()


def test_encode_many_writes_the_good_videos_and_reports_the_bad(ray_local, frames, tmp_path, capsys):
    good_a, good_b = tmp_path / "a.mkv", tmp_path / "b.mkv"
    write_video(good_a, frames[:3], fps=25, lossless=True)
    write_video(good_b, frames[2:5], fps=25, lossless=True)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 50)
    out = tmp_path / "out"
    status = gfix_main(["encode-many", str(good_a), str(bad), str(good_b), str(tmp_path / "missing.mp4"),
                        "--out-dir", str(out), "--workers", "2", "--preset", "fast", "--gaussians", "60",
                        "--gop", "2", "-q"])
    captured = capsys.readouterr()
    assert status == 1
    assert "2 video(s) failed" in captured.err and "FAILED" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["a.gfix", "b.gfix", "summary.csv", "summary.json"]
    rows = json.loads((out / "summary.json").read_text())
    assert [(r["input"], r["status"]) for r in rows] == [
        (str(good_a), "ok"), (str(bad), "failed"), (str(good_b), "ok"), (str(tmp_path / "missing.mp4"), "failed")]
    for row in rows:
        if row["status"] == "ok":
            assert row["frames"] == 3 and row["bytes"] == (out / f"{row['output'].split('/')[-1]}").stat().st_size
            assert row["kbps"] > 0 and row["psnr_db"] > 23.5 and row["error"] == ""  # measured 24.7, 24.8 dB
        else:
            assert row["bytes"] == 0 and row["psnr_db"] is None and row["error"]
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert csv_lines[0].split(",")[:4] == ["input", "output", "status", "frames"] and len(csv_lines) == 5


def test_encode_many_without_ray_and_name_clashes(frames, tmp_path):
    from gfix_sdk.scale.library import encode_many

    (tmp_path / "x").mkdir()
    first, second = tmp_path / "clip.mkv", tmp_path / "x" / "clip.mkv"
    for path in (first, second):
        write_video(path, frames[:2], fps=25, lossless=True)
    with pytest.raises(ValueError, match="both be written"):
        encode_many([first, second], tmp_path / "out", config=CONFIG, progress=False)
    report = encode_many([first, tmp_path / "nope.mkv"], tmp_path / "out", config=CONFIG, progress=False)
    assert [v.status for v in report.videos] == ["ok", "failed"]
    assert "nope.mkv" in report.failed[0].error and (tmp_path / "out" / "clip.gfix").exists()


@pytest.mark.slow
def test_scale_bench_runs_and_files_agree(capsys, tmp_path):
    from gfix_sdk.bench.__main__ import main as bench_main

    record = tmp_path / "scale.json"
    assert bench_main(["scale", "--preset", "fast", "--gaussians", "30", "--gop", "8", "--skip-warm",
                       "--json", str(record)]) == 0
    result = json.loads(record.read_text())
    assert [r["workers"] for r in result["runs"]] == [1, 1, 2]
    assert result["runs"][1]["label"] == "1 worker (worker-sized)"
    assert result["runs"][2]["speedup_per_worker"] == result["runs"][1]["seconds"] / result["runs"][2]["seconds"]
    assert result["speedup_ceiling"] == 2 * result["runs"][0]["seconds"] / result["runs"][1]["seconds"]
    assert "ceiling of the equal-CPU speed-up" in capsys.readouterr().out
    assert all(r["same_bytes"] for r in result["runs"]) and len(result["gop_seconds"]) == 2
