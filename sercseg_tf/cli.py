"""Command-line plumbing shared by every command: absl flags, one spelling per concept.

Every command (``python -m sercseg_tf.train|evaluate|export|predict|report`` and the
scripts in ``tools/``) uses absl flags, so they all read ``--name=value`` or
``--name value``, list every flag with ``--helpfull`` and reject unknown flags in one
line. A flag that several commands share (``--output_dir``, ``--model_dir``, ``--folds``,
``--num_workers``, ``--predict_batch_size``) is defined once, through `define_flag`, so
importing two commands into one process (tests, notebooks) never defines it twice.

`run` calls a command's absl ``main(argv)`` in-process with a list of arguments and
returns its exit status (tests use it); ``python -m`` goes through `absl.app.run`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags

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
