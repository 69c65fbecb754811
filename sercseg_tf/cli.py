"""Command-line plumbing shared by every command: absl flags, one spelling per concept.

Every command (``python -m sercseg_tf.train|evaluate|export|predict|report`` and the
scripts in ``tools/``) uses absl flags, so they all read ``--name=value`` or
``--name value``, list every flag with ``--helpfull`` and reject unknown flags in one
line. A flag that several commands share (``--output_dir``, ``--model_dir``, ``--folds``,
``--num_workers``, ``--predict_batch_size``) is defined once, through `define_flag`, so
importing two commands into one process (tests, notebooks) never defines it twice.

`run` calls a command's absl ``main(argv)`` in-process with a list of arguments and
returns its exit status (tests use it); ``python -m`` goes through `absl.app.run`.

Signals: `sigterm_as_interrupt` makes SIGTERM (a scheduler's stop) behave like Ctrl-C,
so the commands that train save and exit 130 on either; `deferred_interrupts` holds
Ctrl-C / SIGTERM back while a checkpoint is written, so a second Ctrl-C cannot cut a
save in half.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from absl import flags, logging

FLAGS = flags.FLAGS


def define_flag(kind: str, name: str, default: Any, help_text: str, **kwargs: Any) -> None:
    """Defines ``--name`` on the global flags unless a command already defined it.

    Args:
      kind: absl's DEFINE_ suffix: "string", "integer", "float", "boolean", "enum", "list".
      name: the flag name.
      default: its default value.
      help_text: one-line help shown by ``--helpfull``.
      **kwargs: passed on (e.g. ``enum_values``, ``lower_bound``).
    """
    if name in FLAGS:
        return
    define = getattr(flags, f"DEFINE_{kind}")
    if kind == "enum":
        define(name, default, kwargs.pop("enum_values"), help_text, **kwargs)
    else:
        define(name, default, help_text, **kwargs)


def run(main: Callable[[list[str]], int], argv: Sequence[str], prog: str = "sercseg") -> int:
    """Parses ``argv`` (without the program name) into the flags and calls ``main``.

    Returns:
      ``main``'s exit status, or 2 with a one-line message for an unknown or bad flag.
      The flags are reset to their defaults afterwards.
    """
    try:
        rest = FLAGS([prog, *argv])
    except flags.Error as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    try:
        return int(main(rest) or 0)
    finally:
        FLAGS.unparse_flags()


def _raise_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt(f"signal {signum}")


def sigterm_as_interrupt() -> None:
    """Makes SIGTERM raise KeyboardInterrupt, as Ctrl-C does (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


@contextlib.contextmanager
def deferred_interrupts(reraise: bool = True) -> Iterator[None]:
    """Holds SIGINT / SIGTERM back during the block (e.g. while a checkpoint is written).

    A signal that arrives is logged and, with ``reraise``, raised as KeyboardInterrupt
    once the block has finished; without ``reraise`` (the save that an interrupt
    itself started) it is dropped. Outside the main thread the block runs unguarded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def remember(signum, frame):  # noqa: ARG001
        received.append(signum)
        logging.warning("signal %d: a checkpoint is being written; stopping after it", signum)

    previous = {s: signal.signal(s, remember) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received and reraise:
        raise KeyboardInterrupt(f"signal {received[0]}")
