"""One writer per run folder: a lock file holding the writer's pid and host.

`hold` creates ``MODEL_DIR/fold_NN/.lock`` (`sercseg_tf.layout.lock_path`) with
``{"pid", "host", "command", "started"}``, atomically (written to a temporary file and
hard-linked into place, so the lock never exists without its content). A second writer
on the same folder gets `RunLockedError`, a one-line message naming the holder. A lock
whose process is gone (same host, pid no longer running: a crash or ``kill -9``) is
stale and taken over with a warning; a lock from another host is never taken over (its
process cannot be checked from here): the message says how to remove it by hand.
Within one process the lock is re-entrant (``run_loocv`` holds it around the stages,
``train`` inside takes it again).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import time
from collections.abc import Iterator

from absl import logging

_HOST = socket.gethostname()
_held: dict[pathlib.Path, int] = {}  # lock path -> re-entry count in this process


class RunLockedError(RuntimeError):
    """The run folder is being written by another process; the message names it."""


def _read(path: pathlib.Path) -> dict | None:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(holder: dict | None) -> bool:
    """A lock is stale when its process on this host no longer runs (or it is garbled)."""
    if holder is None:
        return True
    if holder.get("host") != _HOST:
        return False
    return not _alive(int(holder.get("pid", -1)))


def _try_create(path: pathlib.Path, command: str) -> bool:
    """Creates the lock file with its content in one step; False if it exists."""
    info = {"pid": os.getpid(), "host": _HOST, "command": command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    tmp = path.with_name(f"{path.name}.{_HOST}-{os.getpid()}")
    tmp.write_text(json.dumps(info) + "\n", encoding="utf-8")
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _refusal(path: pathlib.Path, holder: dict) -> RunLockedError:
    return RunLockedError(
        f"{path.parent}: in use by {holder.get('command', '?')} (pid {holder.get('pid')} on "
        f"{holder.get('host')}, since {holder.get('started')}); wait for it to finish or "
        f"stop it (if that process no longer runs, delete {path})")


def acquire(path: str | os.PathLike, command: str) -> None:
    """Takes the lock at ``path`` for ``command`` (re-entrant in this process).

    Raises:
      RunLockedError: another live process holds it.
    """
    path = pathlib.Path(path)
    if path in _held:
        _held[path] += 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        if _try_create(path, command):
            _held[path] = 1
            return
        holder = _read(path)
        if holder and holder.get("host") == _HOST and holder.get("pid") == os.getpid():
            _held[path] = 1  # our own lock, e.g. left by a finished call in this process
            return
        if not _is_stale(holder):
            raise _refusal(path, holder)
        logging.warning("%s: removing the stale lock of %s (pid %s no longer runs)", path,
                        (holder or {}).get("command", "?"), (holder or {}).get("pid", "?"))
        path.unlink(missing_ok=True)
    raise RunLockedError(f"{path}: could not take the lock (another process keeps taking it)")


def release(path: str | os.PathLike) -> None:
    """Releases one hold; the file is deleted when the last hold of this process ends."""
    path = pathlib.Path(path)
    if path not in _held:
        return
    _held[path] -= 1
    if _held[path] > 0:
        return
    del _held[path]
    holder = _read(path)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == _HOST:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def hold(path: str | os.PathLike, command: str) -> Iterator[None]:
    """Holds the lock at ``path`` for the block (`acquire`, then `release`)."""
    acquire(path, command)
    try:
        yield
    finally:
        release(path)
