"""Atomic writes of files and whole folders: a temporary sibling, renamed into place.

A reader (or a re-run that checks for a file to decide whether work is finished) never
sees a half-written file: `os.replace` is atomic on POSIX within one file system. Every
file the project writes goes through here: `atomic_write_text`, `atomic_write_bytes`, or
`atomic_path` for writers that need a file name (video encoders, PIL, matplotlib).

Folders (a TFRecord build, a SavedModel, a case's frames, a fold's predictions) go
through `atomic_dir`, the one output discipline of every command: validate first, write
everything into a hidden sibling ``.NAME.partial-HOST-PID``, then swap it in
(`replace_dir`) and only then delete the old folder. On Linux the swap is one system
call, ``renameat2(RENAME_EXCHANGE)``, so the folder's path always holds a complete
result. Where that call is missing (other systems, some network file systems) the swap
is two renames: the old folder aside to ``.NAME.old-HOST-PID``, the new one in; a crash
between them leaves the old result under that hidden name, and the next `atomic_dir`
on the same folder renames it back (`recover_dir`) before doing anything else.
Temporary siblings of dead processes on this host are deleted at that point too; those
of live processes, or of other hosts, are reported and left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pathlib
import re
import shutil
import socket
import threading
from collections.abc import Iterator, Sequence

from absl import logging

from sercseg_tf.fault_points import fault_point


def _temp_sibling(path: pathlib.Path) -> pathlib.Path:
    """A hidden sibling name unique to this process and thread, keeping the suffix.

    The suffix is kept because some writers pick the format from it (OpenCV's video
    container, PIL's image format).
    """
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}-{threading.get_ident()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yields a temporary sibling of ``path`` to write; renames it onto ``path`` on success.

    On an exception (or Ctrl-C) the temporary file is removed and ``path`` is untouched.
    The parent folder is created if needed.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    """Writes ``data`` to ``path`` via a temporary sibling and an atomic rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return pathlib.Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Writes ``text`` (UTF-8) to ``path`` via a temporary sibling and an atomic rename.

    The parent folder is created if needed; on any failure the temporary file is removed
    and ``path`` is left as it was.

    Returns:
      ``path`` as a Path.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return pathlib.Path(path)


# ------------------------------------------------------------------------------ folders

_HOST = socket.gethostname()
# ".NAME.partial-HOST-PID" / ".NAME.old-HOST-PID"; older versions wrote ".NAME.partial",
# ".NAME.old-PID" and ".NAME.tmp-RANDOM" (mkdtemp), recognised too.
_SIBLING_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|old|tmp)(?:-(?P<rest>.*))?$")


def _owner_alive(rest: str | None) -> bool:
    """Whether the process that named a temporary sibling ``...-HOST-PID`` may still run.

    Names without an owner (older versions' ``.tmp-RANDOM``, ``.partial``) count as dead;
    ``-PID`` alone means this host; a process on another host counts as alive.
    """
    host, _, pid_text = (rest or "").rpartition("-")
    if not pid_text.isdigit():
        return False
    if host and host != _HOST:
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _siblings(final: pathlib.Path) -> list[tuple[pathlib.Path, str, bool]]:
    """Temporary siblings of ``final``: ``(path, kind, owner alive)``, newest first."""
    out = []
    if not final.parent.is_dir():
        return out
    for path in final.parent.iterdir():
        m = _SIBLING_RE.match(path.name)
        if m and m["name"] == final.name:
            out.append((path, m["kind"], _owner_alive(m["rest"])))
    return sorted(out, key=lambda t: t[0].lstat().st_mtime, reverse=True)


def _remove(path: pathlib.Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def recover_dir(final: str | os.PathLike, extra_litter: Sequence[str] = ()) -> list[str]:
    """Finishes or undoes an interrupted `replace_dir` of ``final`` and removes litter.

    If ``final`` is missing but a dead process left it aside as ``.NAME.old-*`` (killed
    between the two renames), that folder is renamed back. Every other temporary
    sibling of a dead process on this host is deleted, as are the entries of
    ``final.parent`` matching the glob patterns ``extra_litter`` (e.g. older versions'
    temporary names). Siblings of live processes are left alone.

    Returns:
      One line per sibling handled or left alone (also logged).
    """
    final = pathlib.Path(final)
    notes = []
    for path, kind, alive in _siblings(final):
        if alive:
            notes.append(f"{path}: left alone, its writer is still running")
        elif kind == "old" and not final.exists():
            os.replace(path, final)
            notes.append(f"{path}: restored as {final} (a replacement was interrupted)")
        else:
            _remove(path)
            notes.append(f"{path}: removed (left by an interrupted run)")
    for pattern in extra_litter:
        for path in final.parent.glob(pattern):
            _remove(path)
            notes.append(f"{path}: removed (left by an interrupted run)")
    for note in notes:
        logging.warning("%s", note)
    return notes


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: pathlib.Path, b: pathlib.Path) -> bool:
    """Atomically swaps two existing paths (Linux renameat2); False where unsupported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (38, 22, 95):  # ENOSYS, EINVAL, EOPNOTSUPP: not supported here
        return False
    raise OSError(err, f"{b}: cannot swap in {a} ({os.strerror(err)})")


def replace_dir(new: str | os.PathLike, final: str | os.PathLike) -> pathlib.Path:
    """Puts the complete folder ``new`` at ``final``; the old ``final`` is deleted last.

    With ``renameat2(RENAME_EXCHANGE)`` the two swap in one step and the old folder,
    now at ``new``'s name, is deleted. Otherwise: rename ``final`` aside to
    ``.NAME.old-HOST-PID``, rename ``new`` to ``final``, delete the old one; a crash
    between the renames is undone by the next `recover_dir`. Both folders must be on one
    file system.
    """
    new, final = pathlib.Path(new), pathlib.Path(final)
    if final.exists() and _exchange(new, final):
        fault_point("atomic_dir.new_in_place")
        _remove(new)
        return final
    old = final.with_name(f".{final.name}.old-{_HOST}-{os.getpid()}")
    if final.exists() or final.is_symlink():
        os.replace(final, old)
        fault_point("atomic_dir.old_moved_aside")
    os.replace(new, final)
    fault_point("atomic_dir.new_in_place")
    if old.exists() or old.is_symlink():
        _remove(old)
    return final


def _real_target(final: str | os.PathLike) -> pathlib.Path:
    """``final`` made absolute, symlinks resolved: a swap replaces the folder, not a link.

    Raises:
      ValueError: ``final`` is the current folder or a file-system root (a swap would
        pull the ground from under the process).
    """
    resolved = pathlib.Path(final).resolve()
    if resolved == pathlib.Path.cwd().resolve() or resolved.parent == resolved:
        raise ValueError(f"{final}: the current folder or a root cannot be replaced as a "
                         "whole; give a sub-folder")
    return resolved


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, extra_litter: Sequence[str] = ()
               ) -> Iterator[pathlib.Path]:
    """Yields an empty hidden sibling of ``final`` to fill; swaps it in on success.

    First `recover_dir` (interrupted swaps, litter of dead runs), then the writer fills
    ``.NAME.partial-HOST-PID`` (created with the usual 0777 & ~umask mode, not
    mkdtemp's 0700), then `replace_dir`. On an exception (or Ctrl-C) the partial folder
    is deleted and ``final`` is untouched.

    Args:
      final: the folder to create or replace; its parent is created if needed.
      extra_litter: glob patterns, relative to ``final.parent``, of older temporary
        names to delete as well.
    """
    final = _real_target(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(final, extra_litter)
    tmp = final.with_name(f".{final.name}.partial-{_HOST}-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def owned_temp_dir(parent: str | os.PathLike, prefix: str) -> pathlib.Path:
    """Creates ``parent/PREFIX-HOST-PID`` after deleting those of dead processes.

    For scratch folders outside any result (e.g. a non-chief worker's checkpoints):
    the owner in the name lets the next run clean up after a killed one.
    """
    parent = pathlib.Path(parent)
    for path in parent.glob(f"{prefix}-*"):
        if path.is_dir() and not _owner_alive(path.name[len(prefix) + 1:]):
            shutil.rmtree(path, ignore_errors=True)
            logging.warning("%s: removed (left by an interrupted run)", path)
    path = parent / f"{prefix}-{_HOST}-{os.getpid()}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def refuse_existing(paths: Sequence[str | os.PathLike], overwrite: bool) -> None:
    """Refuses to replace an earlier result unless the user asked for it (``--overwrite``).

    Commands call it before any work, so a re-run never replaces a result silently. A
    folder that an interrupted `replace_dir` left aside as ``.NAME.old-*`` counts as
    existing: `recover_dir` would rename it back, and the new result would replace it.

    Raises:
      FileExistsError: one line naming the first of ``paths`` that exists.
    """
    if overwrite:
        return
    for path in paths:
        if os.path.lexists(path):
            raise FileExistsError(f"{path}: exists (an earlier run); pass --overwrite to "
                                  "replace it")
        aside = [p for p, kind, _ in _siblings(pathlib.Path(path)) if kind == "old"]
        if aside:
            raise FileExistsError(f"{path}: an earlier run's, set aside as {aside[0].name} by "
                                  "an interrupted replacement; pass --overwrite to replace it")


def refuse_replacing(folder: str | os.PathLike, overwrite: bool,
                     protected: Sequence[pathlib.Path], what: str, advice: str) -> None:
    """`refuse_existing` for one folder, which is never replaced while it holds ``protected``.

    ``protected`` are files under ``folder`` that people made (annotations, reviews): not
    even ``--overwrite`` replaces them, since the new result would delete them.

    Raises:
      FileExistsError: one line naming the folder and the reason, e.g. ``F: holds 2
        LabelMe file(s) (e.g. frame_0001.json); move them out first``.
    """
    refuse_existing([folder], overwrite)
    if protected:
        example = pathlib.Path(protected[0]).relative_to(folder)
        raise FileExistsError(f"{folder}: holds {len(protected)} {what} (e.g. {example}); "
                              f"{advice}")


def check_writable(folder: str | os.PathLike) -> pathlib.Path:
    """Creates ``folder`` if needed and checks a file can be written there.

    Commands call it before long work whose result goes there, so an unwritable
    output folder is one line at the start, not a traceback at the end.

    Raises:
      OSError (e.g. PermissionError): one line naming the folder and the reason.
    """
    folder = pathlib.Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = _temp_sibling(folder / ".write-check")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise type(e)(f"{folder}: cannot write there ({e.strerror or e})") from None
    return folder
