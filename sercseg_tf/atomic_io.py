"""Atomic file writes: a temporary file beside the target, renamed into place.

A reader (or a re-run that checks for a file to decide whether work is finished) never
sees a half-written file: `os.replace` is atomic on POSIX within one file system.
"""

from __future__ import annotations

import os
import pathlib
import threading


def atomic_write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Writes ``text`` (UTF-8) to ``path`` via a temporary sibling and an atomic rename.

    The parent folder is created if needed; on any failure the temporary file is removed
    and ``path`` is left as it was.

    Returns:
      ``path`` as a Path.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
