"""Atomic file writes: a temporary file beside the target, renamed into place.

A reader (or a re-run that checks for a file to decide whether work is finished) never
sees a half-written file: `os.replace` is atomic on POSIX within one file system. Every
file the project writes goes through here: `atomic_write_text`, `atomic_write_bytes`, or
`atomic_path` for writers that need a file name (video encoders, PIL, matplotlib).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import threading
from collections.abc import Iterator


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
