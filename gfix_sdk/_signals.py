"""Termination signals as an exception, so that ``with``/``finally`` blocks
(which remove temporary files) run before a command-line tool exits."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

# SIGINT already raises KeyboardInterrupt; these are what `timeout`, job
# schedulers and a closed terminal send.
_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s)


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM or SIGHUP.

    A KeyboardInterrupt (not an Exception), so that ``except Exception``
    blocks do not swallow it and code that cleans up after Ctrl-C cleans up
    after it too. :attr:`exit_status` is the shell's convention, 128 + signal.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"terminated by {signal.Signals(signum).name}")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def exit_status(exc: KeyboardInterrupt) -> int:
    """128 + the signal that stopped the process: 130 for Ctrl-C (SIGINT)."""
    return exc.exit_status if isinstance(exc, Terminated) else 128 + signal.SIGINT


def forget_handled_interrupt() -> None:
    """Tell CPython that a KeyboardInterrupt was handled.

    CPython sets a private flag when a KeyboardInterrupt leaves code it runs
    through ``PyRun_String`` (which libraries call from C), even when Python
    code further up then catches it; at exit, ``python -m`` sees the flag
    and kills the process with SIGINT, replacing the status the tool chose
    (130) by death-by-signal. Measured on interrupted
    ``python -m gfix_sdk.cli encode`` runs under load: the flag was set in 2
    of 12 (printed at exit), the signal test got -2 in 4 of 12. The flag is a C global up to
    Python 3.11 (cleared here); where it is not reachable this does nothing.
    """
    try:
        import ctypes

        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
    except (AttributeError, ValueError, OSError):  # not CPython, or the flag moved into _PyRuntime
        pass


@contextlib.contextmanager
def termination_raises() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` in the main
    thread; later termination signals are ignored while the first one unwinds
    (a second SIGTERM must not cut the clean-up short). Previous handlers are
    restored on exit. Does nothing outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        if received:
            return
        received.append(signum)
        # Ctrl-C while unwinding is ignored as well (SIG_IGN for SIGINT).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in _SIGNALS}
    previous_int = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
        signal.signal(signal.SIGINT, previous_int)
