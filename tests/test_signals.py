"""Stopping the command-line tools with signals leaves no temporary files.

Real subprocesses: ``gfix encode`` and ``gfix decode -o FILE`` are signalled
while their temporary output exists; they must remove it and exit with
128 + the signal. A SIGKILLed writer's temporary file is recognisable and
removed by the next writer of the same target.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gfix_sdk._fs import remove_orphaned_temps, temp_sibling
from gfix_sdk.bitstream.fuzz import Container
from gfix_sdk.runtime.fuzz import write_seed_clip

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "gfix_sdk" / "data" / "bbb_320x180_16f.mkv"


def _start(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    # A child of a background job inherits SIGINT ignored (and Python then keeps
    # it ignored, as it should); the test wants an interactive user's process.
    return subprocess.Popen([sys.executable, "-m", "gfix_sdk.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _temps(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


def _wait_for_temp(process: subprocess.Popen, folder: Path, timeout: float = 120.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _temps(folder)
        if found:
            return found[0]
        if process.poll() is not None:
            pytest.fail(f"the command ended ({process.returncode}) before writing: {process.stderr.read()}")
        time.sleep(0.05)
    process.kill()
    pytest.fail("no temporary file appeared")


def _stop(process: subprocess.Popen, signum: int) -> str:
    process.send_signal(signum)
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"still running 60 s after signal {signum}")
    return err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signalled_encode_leaves_nothing(tmp_path, signum):
    out = tmp_path / "clip.gfix"
    process = _start("encode", str(CLIP), "-o", str(out), "--frames", "16", "-q")
    temp = _wait_for_temp(process, tmp_path)
    assert temp.name.startswith(".clip.gfix.") and f".{process.pid}." in temp.name
    err = _stop(process, signum)
    assert process.returncode == 128 + signum, err
    assert "interrupted" in err
    assert list(tmp_path.iterdir()) == []


def test_signalled_decode_leaves_nothing(tmp_path):
    # One coded key frame repeated 300 times: seconds to decode, instant to make.
    one = Container.parse(write_seed_clip(tmp_path / "one.gfix", frames=1, width=320, height=180,
                                          gaussians=300).read_bytes())
    one.sections[1:2] = [one.sections[1]] * 300
    source = tmp_path / "src.gfix"
    source.write_bytes(one.assemble())
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    process = _start("decode", str(source), "-o", str(out_dir / "video.mkv"), "--lossless")
    _wait_for_temp(process, out_dir)
    err = _stop(process, signal.SIGTERM)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert list(out_dir.iterdir()) == []


def test_sigkilled_writers_temp_is_removed_by_the_next_writer(tmp_path):
    out = tmp_path / "clip.gfix"
    process = _start("encode", str(CLIP), "-o", str(out), "--frames", "16", "-q")
    orphan = _wait_for_temp(process, tmp_path)
    process.kill()  # SIGKILL: no clean-up can run
    process.wait(timeout=30)
    assert orphan.exists()
    # A live writer's temporary file (this process's) is left alone.
    live = temp_sibling(out)
    live.write_bytes(b"in progress")
    write_seed_clip(out, frames=2)
    assert not orphan.exists() and live.exists() and out.exists()
    live.unlink()
    assert remove_orphaned_temps(out) == []


def test_interrupt_while_the_native_module_loads_is_an_interrupt(monkeypatch):
    """Ctrl-C during pybind11's module init arrives as ImportError("initialization
    failed") caused by the KeyboardInterrupt: it must stay an interruption (status
    130, not "native module not available", status 1) and not be cached as a failure."""
    from gfix_sdk import _native

    class InterruptedInit:
        def find_spec(self, name, path=None, target=None):
            if name == "gfix_sdk._C":
                try:
                    raise KeyboardInterrupt
                except KeyboardInterrupt as exc:
                    raise ImportError("initialization failed") from exc
            return None

    monkeypatch.delitem(sys.modules, "gfix_sdk._C", raising=False)
    monkeypatch.setattr(sys, "meta_path", [InterruptedInit(), *sys.meta_path])
    _native._load.cache_clear()
    try:
        with pytest.raises(KeyboardInterrupt):
            _native.cpu_module()
        monkeypatch.setattr(sys, "meta_path", sys.meta_path[1:])
        assert _native.cpu_module().__name__ == "gfix_sdk._C"  # the next call loads it
    finally:
        _native._load.cache_clear()


def test_handled_interrupt_does_not_turn_into_death_by_sigint():
    """run_command chooses 130 for Ctrl-C; CPython's flag for an unhandled
    KeyboardInterrupt (set spuriously when one passes through PyRun_String)
    would make `python -m` exit by SIGINT instead (seen in 4 of 12 runs)."""
    import ctypes

    from gfix_sdk._signals import forget_handled_interrupt

    try:
        flag = ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt")
    except ValueError:
        pytest.skip("this Python keeps the flag inside _PyRuntime")
    flag.value = 1
    forget_handled_interrupt()
    assert flag.value == 0
