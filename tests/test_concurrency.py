"""Concurrent use of one cache: real processes opening enhanced videos on one
base with a shared, cold ``$GFIX_CACHE`` at once all succeed and leave one
valid entry per key (factors, base-hash record; ONNX exports with ``-m slow``)
and no temporaries; threads of one process writing one entry (factors, base
record, ONNX export and template pointer, TensorRT engine) do not collide."""

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from gfix_sdk.bitstream import GFixReader
from gfix_sdk.bitstream.writer import copy_with_enhancer
from gfix_sdk.enhance.adapter import write_adapter
from gfix_sdk.enhance.base import load_base
from gfix_sdk.enhance.model import AdapterConfig, Enhancer
from gfix_sdk.runtime import factors as fc
from gfix_sdk.runtime.fuzz import write_seed_clip

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
CONFIG = AdapterConfig(patch=32, overlap=8)

# Each worker imports everything first, then waits for the others at a barrier
# (a file per worker in one folder), so that the cache work starts together.
WORKER = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel  # noqa: F401 - imported before
from transformers import CLIPTextModel, CLIPTokenizer  # noqa: F401 - the barrier (diffusers imports lazily)
from gfix_sdk.runtime import Decoder

video, base, backend, barrier, name, parties, out = sys.argv[1:8]
barrier = Path(barrier)
(barrier / name).touch()
deadline = time.time() + 300
while len(list(barrier.iterdir())) < int(parties):
    if time.time() > deadline:
        sys.exit("the other workers never reached the barrier")
    time.sleep(0.01)
start = time.time()
with Decoder.open(video, base=base, backend=backend) as dec:
    frame = dec[0]
    used = dec.info.backend
np.save(out, frame)
print(json.dumps({"start": start, "end": time.time(), "backend": used}))
"""


@pytest.fixture(scope="module")
def videos(tiny_base_dir, tiny_base_hash, tmp_path_factory):
    """Two small enhanced ``.gfix`` files on the stand-in base (random Gaussians, random adapters)."""
    folder = tmp_path_factory.mktemp("concurrent_videos")
    plain = write_seed_clip(folder / "plain.gfix", frames=2, width=64, height=48, gaussians=40, gop=2)
    groups = Enhancer(load_base(tiny_base_dir), CONFIG).groups()
    sizes = {group: sum(t.numel() for t in tensors) for group, tensors in groups.items()}
    paths = []
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        values = {group: rng.integers(-8, 9, size=size) for group, size in sizes.items()}
        payload = write_adapter(CONFIG, values, dict.fromkeys(sizes, 1e-3), tiny_base_hash, t=150.0 + seed,
                                strengths=(1.0, 1.0))
        paths.append(copy_with_enhancer(plain, folder / f"v{seed}.gfix", payload))
    return paths


#: The PyTorch backend fills the factor cache and the base record (seconds); ONNX
#: Runtime also exports the graph, about a minute per process on two busy cores.
BACKENDS = ["torch", pytest.param("onnxruntime", marks=pytest.mark.slow)]


def _decode_together(videos, base_dir, cache, work, backend) -> list[tuple[dict, np.ndarray]]:
    """Decode frame 0 of each of ``videos`` in its own process, all started
    together on the cache folder ``cache``; returns each worker's report and frame."""
    barrier = work / "barrier"
    barrier.mkdir(parents=True)
    env = {**os.environ, "GFIX_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(video), str(base_dir), backend, str(barrier),
                               f"w{i}", str(len(videos)), str(work / f"frame{i}.npy")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i, video in enumerate(videos)]
    results = []
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
        results.append((json.loads(out.strip().splitlines()[-1]), np.load(work / f"frame{i}.npy")))
    return results


def _stray(folder) -> list:
    """Temporaries (and any other hidden file) below ``folder``."""
    return [p for p in folder.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]


def _check_cache(cache, digest, base_dir, exports: int) -> None:
    """One valid entry per key, nothing else (no temporaries, no hidden files)."""
    assert _stray(cache) == []
    factors = list((cache / "factors").iterdir())
    assert [p.name for p in factors] == [fc.factor_path(digest, CONFIG, cache).name]
    assert fc.load_factor_set(digest, CONFIG, cache) is not None  # whole: metadata, digest and shapes check out
    assert len(list((cache / "bases").iterdir())) == 1 and fc.known_base_hash(base_dir, cache) == digest
    onnx = cache / "onnx"
    assert onnx.exists() == bool(exports)
    if exports:
        folders = sorted(p for p in onnx.iterdir() if p.name != "templates")
        assert len(folders) == exports and all((p / "enhancer.onnx").is_file() for p in folders)
        pointers = list((onnx / "templates").iterdir())
        assert len(pointers) == 1 and pointers[0].read_text().strip() in {p.name for p in folders}


def _overlapped(reports) -> bool:
    return max(r["start"] for r in reports) < min(r["end"] for r in reports)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_processes_open_one_video_on_a_cold_cache(tiny_base_dir, tiny_base_hash, videos, tmp_path, backend):
    cache = tmp_path / "cache"
    (one, frame_one), (two, frame_two) = _decode_together([videos[0]] * 2, tiny_base_dir, cache, tmp_path, backend)
    assert one["backend"] == two["backend"] == backend
    assert _overlapped([one, two])  # they really ran at the same time
    np.testing.assert_array_equal(frame_one, frame_two)
    _check_cache(cache, tiny_base_hash, tiny_base_dir, exports=int(backend == "onnxruntime"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_processes_open_two_videos_on_one_base_on_a_cold_cache(tiny_base_dir, tiny_base_hash, videos, tmp_path,
                                                                   monkeypatch, backend):
    cache = tmp_path / "cache"
    (one, frame_one), (two, frame_two) = _decode_together(videos, tiny_base_dir, cache, tmp_path, backend)
    assert _overlapped([one, two])
    assert not np.array_equal(frame_one, frame_two)  # each got its own adapter
    _check_cache(cache, tiny_base_hash, tiny_base_dir, exports=2 * int(backend == "onnxruntime"))
    # The cache left behind serves a third decoder, which gets the same frames.
    from gfix_sdk.runtime import Decoder

    monkeypatch.setenv("GFIX_CACHE", str(cache))
    for video, frame in zip(videos, (frame_one, frame_two), strict=True):
        with Decoder.open(video, base=tiny_base_dir, backend=backend) as dec:
            np.testing.assert_array_equal(dec[0], frame)


# ------------------------------------------------------------ threads, one process
def _at_once(count: int, work) -> list[BaseException]:
    """Run ``work()`` in ``count`` threads released together; the exceptions they raised."""
    gate, errors = threading.Barrier(count), []

    def run() -> None:
        gate.wait()
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_threads_writing_one_factor_entry_do_not_collide(tiny_base_dir, tiny_base_hash, tmp_path):
    """Same process, same pid: a temporary named by the pid alone was shared
    (one thread's rename took another's file away)."""
    built = fc.build_factor_set(load_base(tiny_base_dir), tiny_base_hash, CONFIG)
    path = fc.factor_path(tiny_base_hash, CONFIG, tmp_path)
    for _ in range(3):
        assert _at_once(8, lambda: fc.save_factor_set(built, path)) == []
        assert [p.name for p in path.parent.iterdir()] == [path.name]
        assert fc.load_factor_set(tiny_base_hash, CONFIG, tmp_path) is not None
    assert _at_once(8, lambda: fc.remember_base_hash(tiny_base_dir, tiny_base_hash, tmp_path)) == []
    record = next((tmp_path / "bases").iterdir())
    assert record.name == fc._record_path(tiny_base_dir, tmp_path).name
    assert fc.known_base_hash(tiny_base_dir, tmp_path) == tiny_base_hash
    record.write_text(record.read_text()[:40])  # half a record (a writer without the rename) reads as none
    assert fc.known_base_hash(tiny_base_dir, tmp_path) is None


def test_threads_exporting_one_onnx_graph_do_not_collide(tiny_base_dir, tiny_base_hash, videos, tmp_path, monkeypatch):
    """The ONNX export cache: each export goes to a private folder renamed into
    place (the first wins), the base's template pointer through a unique
    temporary (once named by the pid alone). The export itself is replaced by
    a slow stand-in (the real one takes a minute here)."""
    from gfix_sdk.export import onnx_export, onnx_refit
    from gfix_sdk.runtime import backends

    writes = []

    def write(out, data):  # as the real ones: into the given folder, made first
        writes.append(out)
        time.sleep(0.05)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)

    monkeypatch.setattr(onnx_export, "export_onnx", lambda folded, out, *, max_batch, opset: write(out, b"graph"))
    monkeypatch.setattr(onnx_refit, "refit_onnx", lambda template, weights, out: write(out, template.read_bytes()))
    with GFixReader(videos[0]) as reader:
        payload = reader.enhancer()
    enhancer = Enhancer(load_base(tiny_base_dir), CONFIG)
    paths = []
    assert _at_once(6, lambda: paths.append(backends.export_for(enhancer, payload, tiny_base_hash, max_batch=8,
                                                                cache=tmp_path)[0])) == []
    assert len(set(paths)) == 1 and paths[0].read_bytes() == b"graph"
    assert len(writes) > 1  # several threads wrote the entry: all but the first rename lost
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == sorted([paths[0].parent.name, "templates"])
    pointers = list((tmp_path / "onnx" / "templates").iterdir())
    assert len(pointers) == 1 and pointers[0].read_text() == paths[0].parent.name
    assert _stray(tmp_path) == []


def test_threads_building_one_tensorrt_engine_do_not_collide(tmp_path, monkeypatch):
    """The engine cache (no TensorRT here: the build is replaced by a slow
    stand-in) once wrote every build through one fixed temporary name."""
    from gfix_sdk.export import tensorrt_engine as te

    def build(onnx_path, key):
        time.sleep(0.05)
        return b"engine " * 10_000

    monkeypatch.setattr(te, "build_engine", build)
    key = te.EngineKey(base_hash="00" * 32, patch=32, min_batch=1, opt_batch=8, max_batch=8, fp16=True,
                       weights_layout="layout", gpu="none", tensorrt="none")
    paths = []
    assert _at_once(8, lambda: paths.append(te.cached_engine(tmp_path, tmp_path / "graph.onnx", key))) == []
    assert len(set(paths)) == 1 and paths[0].read_bytes() == b"engine " * 10_000
    assert json.loads(paths[0].with_suffix(".json").read_text())["patch"] == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([paths[0].name, paths[0].with_suffix(".json").name])
