"""Silencing what C libraries print on their own: FFmpeg's notes, TensorFlow's start-up.

TensorFlow 2.21's libraries print their start-up lines ("All log messages before
absl::InitializeLog() is called are written to STDERR", oneDNN, CUDA stubs) while they
load, before ``TF_CPP_MIN_LOG_LEVEL`` is read; FFmpeg (inside OpenCV) prints codec-tag
notes and complaints about corrupt files that the caller reports anyway. Both write to
file descriptor 2 directly, so `silenced_c_stderr` points that descriptor at /dev/null
for a block. `quiet_tensorflow` is what every command that uses TensorFlow calls first.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

# TF_CPP_MIN_LOG_LEVEL used unless --verbose: 3 hides TensorFlow's C++ INFO, WARNING and
# ERROR lines (CPU features, "failed call to cuInit" on a machine without GPU); errors
# that stop a command reach Python as exceptions and are reported there.
QUIET_TF_CPP_LOG_LEVEL = "3"


@contextlib.contextmanager
def silenced_c_stderr() -> Iterator[None]:
    """Points file descriptor 2 at /dev/null for the block (C libraries' own printing).

    Python's ``sys.stderr`` is flushed first and is silenced too for the block.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def quiet_tensorflow(verbose: bool, import_now: bool = False) -> None:
    """Sets ``TF_CPP_MIN_LOG_LEVEL``; optionally imports TensorFlow with stderr silenced.

    Without ``verbose`` a value the user exported is kept, else `QUIET_TF_CPP_LOG_LEVEL`;
    with ``verbose`` it is 0 (everything). No effect on a TensorFlow already imported,
    so the commands import it lazily, after this call.

    Args:
      verbose: show everything.
      import_now: import TensorFlow now, quietly unless ``verbose`` (commands that use
        it); an import error still raises, with its message.
    """
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_TF_CPP_LOG_LEVEL)
    if import_now and "tensorflow" not in sys.modules:
        with contextlib.nullcontext() if verbose else silenced_c_stderr():
            import tensorflow  # noqa: F401
