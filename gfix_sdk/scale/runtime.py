"""Starting, joining and stopping the Ray runtime that GOP tasks run on.

``ray`` is an optional dependency (the ``cluster`` extra): it is imported
here only, and only when a caller asks for more than one worker or for a
cluster address.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from types import ModuleType

from gfix_sdk.errors import MissingDependencyError

INSTALL_HINT = 'pip install "gfix-sdk[cluster]"'


def import_ray() -> ModuleType:
    """The ``ray`` module, or :class:`MissingDependencyError` naming the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError(
            f"workers > 1 or a Ray address needs Ray, which is not installed ({exc}); "
            f"install it with `{INSTALL_HINT}`"
        ) from None
    return ray


def check_address(address: str | None) -> None:
    """``ValueError`` unless ``address`` is None, ``"auto"``, ``ray://host:port`` or ``host:port``."""
    if address is None or address == "auto" or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not (sep and host and port.isdigit()):
        raise ValueError(f"Ray address must be 'auto', 'ray://HOST:PORT' or 'HOST:PORT', got {address!r}")


@contextlib.contextmanager
def ray_runtime(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[ModuleType]:
    """Yield ``ray`` with a runtime to submit tasks to.

    * Ray already initialised in this process (by the caller, a notebook, a
      test fixture): that runtime is used and left running.
    * ``address`` None: a local runtime with ``num_cpus`` CPUs (dashboard off,
      worker logs not forwarded) is started, and stopped on exit.
    * ``address`` ``"auto"``, ``"ray://HOST:PORT"`` or ``"HOST:PORT"``: the
      existing cluster is joined, and left on exit (the cluster keeps running).

    Every node must have ``gfix-sdk`` (with its native module) installed: tasks
    import it there.
    """
    check_address(address)
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    # Ray asks about usage statistics on a first run; a codec should not.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
    if address is None:
        ray.init(num_cpus=num_cpus, include_dashboard=False, **quiet)
    else:
        ray.init(address=address, **quiet)
    try:
        yield ray
    finally:
        ray.shutdown()


__all__ = ["INSTALL_HINT", "check_address", "import_ray", "ray_runtime"]
