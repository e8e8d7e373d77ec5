"""File-system helpers shared by every writer (standard library only)."""

from __future__ import annotations

import uuid
from pathlib import Path


def temp_sibling(target: Path) -> Path:
    """A hidden, unique temporary path beside ``target``.

    Same directory, so moving it onto ``target`` with :func:`os.replace` is an
    atomic rename on one file system; unique, so concurrent writers do not
    collide.
    """
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
