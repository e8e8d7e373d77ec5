"""VMAF through libvmaf in an ffmpeg binary (the static one in ``imageio-ffmpeg``).

What is computed
----------------
Netflix's VMAF with libvmaf's built-in ``vmaf_v0.6.1`` model (the standard
1080p model; viewing distance 3x the picture height), run by ffmpeg's
``libvmaf`` filter with the decoded sequence as the *main* (distorted) input
and the reference as the *reference* input. The per-frame scores and the
pooled mean (``pooled_metrics.vmaf.mean``) are read from libvmaf's JSON log.
Range 0..100, higher is better. libvmaf does not give 100 for identical
input: measured on the bundled clip (identical frames, 8 frames), 97.4 for
the first frame (whose motion feature is 0) and 99.4-99.9 for the others,
mean 99.4 at 320x180 and 98.9 at 160x90. The model was trained on 1080p
content; scores on small frames are comparable with each other but not
calibrated.

Colour path
-----------
Frames arrive as ``uint8`` RGB. Both sequences are converted to 8-bit
YUV 4:2:0 with BT.601 limited-range coefficients and 2x2-mean chroma by
:func:`gfix_sdk.io.rgb_to_yuv420` (the conversion the H.264 anchor feeds to
x264, and the inverse of the BT.601 path the readers use for raw ``.yuv``
input), and handed to ffmpeg as YUV4MPEG2 (y4m) streams tagged
``C420jpeg XCOLORRANGE=LIMITED``: the reference as a temporary ``.y4m``
file (written once per video and reused by :class:`VmafReference`), the
decoded sequence through a pipe. VMAF's features use the luma plane only,
so chroma siting does not affect the score.

The binary
----------
``ffmpeg=`` names one; by default ``imageio_ffmpeg.get_ffmpeg_exe()`` (which
honours ``$IMAGEIO_FFMPEG_EXE``). It must list ``libvmaf`` in
``ffmpeg -filters`` and accept the model name; otherwise the metric is
omitted with the reason (``value=None``), never a crash.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np

from gfix_sdk.metrics._sequences import Frames, iter_frames
from gfix_sdk.metrics.result import MetricResult, MetricUnavailable

NAME = "vmaf"
DEFAULT_MODEL = "vmaf_v0.6.1"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_LOG_NAME = "vmaf.json"
_PROBE_SIZE = (64, 48)  # small enough to be instant, large enough for VMAF's 4 scales


@functools.lru_cache(maxsize=8)
def _has_libvmaf(ffmpeg: str) -> tuple[bool, str]:
    """Whether ``ffmpeg -filters`` lists libvmaf, and its version line."""
    try:
        filters = subprocess.run([ffmpeg, "-hide_banner", "-filters"], capture_output=True, text=True,
                                 timeout=60, check=False)
        version = subprocess.run([ffmpeg, "-hide_banner", "-version"], capture_output=True, text=True,
                                 timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"cannot run {ffmpeg}: {exc}"
    listed = any(line.split()[1:2] == ["libvmaf"] for line in filters.stdout.splitlines())
    first = version.stdout.splitlines()[0] if version.stdout else ""
    return listed, first.split(" Copyright")[0]


def find_ffmpeg(ffmpeg: str | os.PathLike[str] | None = None) -> str:
    """The ffmpeg binary to use: ``ffmpeg``, else imageio-ffmpeg's.

    Raises:
        MetricUnavailable: no binary, or one without the libvmaf filter.
    """
    if ffmpeg is None:
        try:
            import imageio_ffmpeg
        except ImportError:
            raise MetricUnavailable(
                "VMAF omitted: no ffmpeg with libvmaf (the imageio-ffmpeg package is not installed: "
                "pip install imageio-ffmpeg, or pass the path of an ffmpeg built with --enable-libvmaf)"
            ) from None
        try:
            ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        except RuntimeError as exc:
            raise MetricUnavailable(f"VMAF omitted: imageio-ffmpeg has no ffmpeg binary here ({exc})") from None
    path = str(ffmpeg)
    listed, detail = _has_libvmaf(path)
    if not listed:
        raise MetricUnavailable(
            f"VMAF omitted: {path} has no libvmaf filter ({detail or 'not in ffmpeg -filters'}); "
            "use an ffmpeg built with --enable-libvmaf (the static one in imageio-ffmpeg >= 0.5 has it)"
        )
    return path


def _y4m_header(width: int, height: int, fps: float) -> bytes:
    rate = Fraction(fps).limit_denominator(1001)
    return (f"YUV4MPEG2 W{width} H{height} F{rate.numerator}:{rate.denominator} Ip A1:1 "
            "C420jpeg XCOLORRANGE=LIMITED\n").encode("ascii")


def _y4m_frame(frame: np.ndarray) -> bytes:
    from gfix_sdk.io.yuv import rgb_to_yuv420

    y, u, v = rgb_to_yuv420(frame)
    return b"FRAME\n" + y.tobytes() + u.tobytes() + v.tobytes()


def write_y4m(stream: BinaryIO, frames: Frames, fps: float) -> tuple[int, tuple[int, int]]:
    """Write ``uint8`` RGB frames to ``stream`` as 8-bit 4:2:0 y4m (BT.601, limited range).

    Returns:
        ``(frame count, (height, width))``.

    Raises:
        ValueError: no frames, or invalid frames.
    """
    count, shape = 0, (0, 0)
    for frame in iter_frames(frames, "frames"):
        if count == 0:
            shape = frame.shape[:2]
            stream.write(_y4m_header(shape[1], shape[0], fps))
        stream.write(_y4m_frame(frame))
        count += 1
    if count == 0:
        raise ValueError("no frames to write")
    return count, shape


class VmafReference:
    """A reference sequence written once as a temporary y4m file.

    Create it with :meth:`SequenceVMAF.reference` and use it as a context
    manager (or call :meth:`close`); score decoded versions of the same video
    against it without converting the reference again.
    """

    def __init__(self, frames: Frames, fps: float) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="gfix-vmaf-")
        self.path = Path(self._dir.name) / "reference.y4m"
        try:
            with open(self.path, "wb") as handle:
                self.count, self.shape = write_y4m(handle, frames, fps)
        except BaseException:
            self._dir.cleanup()
            raise
        self.fps = float(fps)

    def close(self) -> None:
        """Delete the temporary file. Idempotent."""
        self._dir.cleanup()

    def __enter__(self) -> VmafReference:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class SequenceVMAF:
    """VMAF of whole sequences through one ffmpeg binary; see the module doc.

    Build it with :meth:`load`, which checks the binary and the model once.

    Args:
        ffmpeg: path of an ffmpeg with libvmaf.
        model: a libvmaf built-in model version (default ``vmaf_v0.6.1``).
        threads: libvmaf threads; None uses every core.
    """

    name = NAME
    higher_is_better = True

    def __init__(self, ffmpeg: str, *, model: str = DEFAULT_MODEL, threads: int | None = None) -> None:
        if not _MODEL_NAME.match(model):
            raise ValueError(f"model must be a libvmaf built-in model name such as {DEFAULT_MODEL!r}, got {model!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        self.ffmpeg = ffmpeg
        self.model = model
        self.threads = threads or os.cpu_count() or 1
        self.version: str = _has_libvmaf(ffmpeg)[1]
        """The binary's ``ffmpeg -version`` first line."""

    @classmethod
    def load(cls, *, ffmpeg: str | os.PathLike[str] | None = None, model: str = DEFAULT_MODEL,
             threads: int | None = None) -> SequenceVMAF:
        """Find the binary and check that it computes VMAF with ``model``.

        Raises:
            MetricUnavailable: no binary, no libvmaf, or the model is refused
                (the message quotes ffmpeg).
        """
        scorer = cls(find_ffmpeg(ffmpeg), model=model, threads=threads)
        width, height = _PROBE_SIZE
        probe = np.zeros((2, height, width, 3), np.uint8)
        probe[:, ::4] = 200  # some structure, so that every feature is defined
        try:
            result = scorer(probe, probe)
        except RuntimeError as exc:
            raise MetricUnavailable(f"VMAF omitted: {exc}") from None
        if result.value is None:
            raise MetricUnavailable(f"VMAF omitted: {result.reason}")
        return scorer

    def reference(self, frames: Frames, fps: float = 25.0) -> VmafReference:
        """Convert a reference sequence once, for several :meth:`__call__`\\ s."""
        return VmafReference(frames, fps)

    def __call__(self, reference: Frames | VmafReference, decoded: Frames, *, fps: float = 25.0) -> MetricResult:
        """VMAF of ``decoded`` against ``reference`` (``uint8`` RGB frames).

        Args:
            reference: frames, or a :class:`VmafReference` of them.
            decoded: frames of the same count and size.
            fps: frame rate written into the streams (VMAF's scores do not
                depend on it; a :class:`VmafReference` keeps its own).

        Raises:
            ValueError: invalid frames, or sequences of different lengths or sizes.
            RuntimeError: ffmpeg failed (the message quotes its error output).
        """
        if isinstance(reference, VmafReference):
            return self._score(reference, decoded)
        with self.reference(reference, fps) as ref:
            return self._score(ref, decoded)

    def _score(self, ref: VmafReference, decoded: Frames) -> MetricResult:
        with tempfile.TemporaryDirectory(prefix="gfix-vmaf-") as work:
            options = f"model=version={self.model}:log_fmt=json:log_path={_LOG_NAME}:n_threads={self.threads}"
            cmd = [self.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
                   "-f", "yuv4mpegpipe", "-i", "pipe:0", "-i", str(ref.path),
                   "-lavfi", f"[0:v][1:v]libvmaf={options}", "-f", "null", "-"]
            errors_path = Path(work) / "stderr.txt"
            # stderr goes to a file: a full pipe would block ffmpeg while we write to it.
            with open(errors_path, "wb") as errors:
                proc = subprocess.Popen(cmd, cwd=work, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=errors)
                count = 0
                try:
                    count = self._feed(proc, ref, decoded)
                except BaseException:
                    proc.kill()
                    proc.wait()
                    raise
                code = proc.wait()
            message = errors_path.read_text(errors="replace").strip()
            if code != 0 or count < 0:
                raise RuntimeError(f"ffmpeg/libvmaf failed (exit code {code}): {message[-800:] or 'no message'}")
            return self._parse(Path(work) / _LOG_NAME, ref.count)

    @staticmethod
    def _feed(proc: subprocess.Popen, ref: VmafReference, decoded: Frames) -> int:
        """Write the decoded frames to ffmpeg's stdin; -1 if ffmpeg stopped reading."""
        stdin = proc.stdin
        if stdin is None:
            raise RuntimeError("ffmpeg was started without a stdin pipe")
        count = 0
        try:
            for frame in iter_frames(decoded, "decoded"):
                if frame.shape[:2] != ref.shape:
                    raise ValueError(
                        f"decoded frame {count} is {frame.shape[1]}x{frame.shape[0]} but the reference is "
                        f"{ref.shape[1]}x{ref.shape[0]}"
                    )
                if count == ref.count:
                    raise ValueError(f"the decoded sequence has more than the reference's {ref.count} frames")
                if count == 0:
                    stdin.write(_y4m_header(ref.shape[1], ref.shape[0], ref.fps))
                stdin.write(_y4m_frame(frame))
                count += 1
            stdin.close()
        except BrokenPipeError:
            return -1
        if count != ref.count:
            raise ValueError(f"the decoded sequence has {count} frames but the reference {ref.count}")
        return count

    def _parse(self, log: Path, count: int) -> MetricResult:
        try:
            record = json.loads(log.read_text())
            per_frame = tuple(float(f["metrics"]["vmaf"]) for f in record["frames"])
            pooled = float(record["pooled_metrics"]["vmaf"]["mean"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RuntimeError(f"cannot read libvmaf's JSON log: {exc}") from exc
        if len(per_frame) != count:
            raise RuntimeError(f"libvmaf scored {len(per_frame)} frames, expected {count}")
        if not math.isfinite(pooled):
            return MetricResult.omitted(NAME, f"VMAF omitted: libvmaf returned {pooled}")
        return MetricResult(name=NAME, value=pooled, per_frame=per_frame)


def sequence_vmaf(
    reference: Frames,
    decoded: Frames,
    *,
    fps: float = 25.0,
    model: str = DEFAULT_MODEL,
    ffmpeg: str | os.PathLike[str] | None = None,
) -> MetricResult:
    """VMAF (mean over frames, 0..100, higher is better) of two ``uint8`` RGB sequences.

    See the module doc for the model and the colour path.

    Returns:
        The pooled score and per-frame scores, or, when no ffmpeg with
        libvmaf is available, ``value=None`` with the reason (never an
        exception).

    Raises:
        ValueError: invalid or mismatched frames.
        RuntimeError: ffmpeg failed on these frames.
    """
    try:
        scorer = SequenceVMAF.load(ffmpeg=ffmpeg, model=model)
    except MetricUnavailable as exc:
        return MetricResult.omitted(NAME, str(exc))
    return scorer(reference, decoded, fps=fps)
