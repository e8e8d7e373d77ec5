"""File-system helpers shared by every writer (standard library only)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

# `.NAME.<host>.<pid>.<hex>.tmp`: the host and pid say whose it is, so that a
# later writer can tell an orphan (its process was SIGKILLed) from a live one.
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"


def temp_sibling(target: Path) -> Path:
    """A hidden, unique temporary path beside ``target``, after removing the
    orphaned temporaries of earlier writers of ``target`` (see
    :func:`remove_orphaned_temps`).

    Same directory, so moving it onto ``target`` with :func:`os.replace` is an
    atomic rename on one file system; unique, so concurrent writers do not
    collide.
    """
    remove_orphaned_temps(target)
    return target.with_name(f".{target.name}.{_HOST}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


def write_atomically(target: Path, write: Callable[[Path], object]) -> Path:
    """``write(temp)`` to a :func:`temp_sibling` of ``target``, then rename it
    onto ``target``: a reader sees the old file or the whole new one, never a
    part; concurrent writers (processes, threads, hosts sharing the folder)
    each write their own temporary and the last rename wins. On an error or
    a signal the temporary is removed. Returns ``target``."""
    temp = temp_sibling(target)
    try:
        write(temp)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return target


def remove_orphaned_temps(target: Path) -> list[Path]:
    """Remove the temporary files (or folders) of writers of ``target`` whose
    process no longer runs on this host -- what a SIGKILL or a power cut
    leaves. Temporaries of live processes, and of other hosts sharing the
    folder, are left alone. Returns what was removed."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.{re.escape(_HOST)}\.(\d+)\.[0-9a-f]+\.tmp")
    removed = []
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            match = pattern.fullmatch(entry.name)
            if match is None or _alive(int(match.group(1))):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or an odd pid): not ours to judge
    return True
