"""Named kill points, so tests can SIGKILL a command at an exact moment.

A command calls ``fault_point("build_tfrecords.shard_written")`` at the moments worth
testing (a shard written, an old result moved aside, a checkpoint saved). Normally this
does nothing. With the environment variable ``SERCSEG_KILL_AT=NAME`` (or ``NAME:N``, the
N-th time the point is reached) the process sends itself SIGKILL there: the same as
``kill -9`` from outside at that instant, without sleeps or races. The fault tests
(``tests/test_faults.py``) use it to check that every command leaves either its old or
its new result, never neither, and that a re-run completes.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "SERCSEG_KILL_AT"
_hits: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    name, _, count = raw.partition(":")
    return name, int(count) if count else 1


def fault_point(name: str) -> None:
    """SIGKILLs this process if ``SERCSEG_KILL_AT`` names ``name`` (at its N-th hit)."""
    target = _target()
    if target is None or target[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
