"""Command-line plumbing shared by every command: absl flags, one spelling per concept.

Every command (``python -m sercseg_tf.train|evaluate|export|predict|report|
build_tfrecords|extract_frames``, the ``sercseg-*`` console scripts of ``pyproject.toml``
and the scripts in ``tools/``) uses absl flags, so they all read ``--name=value`` or
``--name value`` and reject unknown flags in one line. A flag that several commands
share (``--output_dir``, ``--model_dir``, ``--folds``, ``--num_workers``,
``--predict_batch_size``, ``--verbose``) is defined once, through `define_flag`, so
importing two commands into one process (tests, notebooks) never defines it twice.

`app_run` starts a command (``python -m`` and the console scripts): ``--help`` then
lists every flag the package defines for that command with its help text (absl shows
only the main module's *key* flags, so they are registered as such), and TensorFlow's
C++ log lines are hidden unless ``--verbose`` (`sercseg_tf.quiet.quiet_tensorflow`:
``TF_CPP_MIN_LOG_LEVEL`` for what TensorFlow logs once running, and an import with the
C-level stderr silenced for the lines its libraries print while loading); a TensorFlow
command's process ends as soon as its ``main`` returns, without the interpreter's slow
teardown (`_exit_at_once`). `run` calls a command's ``main(argv)`` in-process with a
list of arguments and returns its exit status (tests use it).

Signals: `sigterm_as_interrupt` makes SIGTERM (a scheduler's stop) behave like Ctrl-C,
so the commands that train save and exit 130 on either; `deferred_interrupts` holds
Ctrl-C / SIGTERM back while a checkpoint is written, so a second Ctrl-C cannot cut a
save in half.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from absl import app, flags, logging

from sercseg_tf import quiet

FLAGS = flags.FLAGS
# Modules whose flags are a command's own (listed by --help); absl's are in --helpfull.
_OWN_FLAG_MODULES = ("sercseg_tf", "tools")


def define_flag(kind: str, name: str, default: Any, help_text: str, **kwargs: Any) -> None:
    """Defines ``--name`` on the global flags unless a command already defined it.

    Args:
      kind: absl's DEFINE_ suffix: "string", "integer", "float", "boolean", "enum", "list".
      name: the flag name.
      default: its default value.
      help_text: one-line help shown by ``--help``.
      **kwargs: passed on (e.g. ``enum_values``, ``lower_bound``).
    """
    if name in FLAGS:
        return
    define = getattr(flags, f"DEFINE_{kind}")
    if kind == "enum":
        define(name, default, kwargs.pop("enum_values"), help_text, **kwargs)
    else:
        define(name, default, help_text, **kwargs)


def define_overwrite_flag() -> None:
    """Defines ``--overwrite``: replace an earlier run's outputs.

    Without it a command refuses them (`sercseg_tf.atomic_io.refuse_existing`).
    """
    define_flag("boolean", "overwrite", False,
                "Replace the outputs of an earlier run (without it they are an error).")


def define_verbose_flag() -> None:
    """Defines ``--verbose`` (every command has it)."""
    define_flag("boolean", "verbose", False,
                "Show TensorFlow's C++ log lines (hidden by default).")


def _is_own_module(module: str) -> bool:
    if module == sys.argv[0]:
        return True
    name = module.replace(os.sep, ".")
    return any(name.startswith(p) or f".{p}." in name for p in _OWN_FLAG_MODULES)


def register_key_flags() -> None:
    """Makes every flag defined by this package a key flag of the running program.

    absl's ``--help`` lists the key flags of the main module (``sys.argv[0]``): the
    flags defined in it, plus those declared key for it (what
    ``flags.adopt_module_key_flags`` does for a module). Flags defined through
    `define_flag` or `sercseg_tf.config.define_flags` belong to those modules, and a
    console script's main module is a wrapper, so they are declared key here.
    """
    for module, flag_list in FLAGS.flags_by_module_dict().items():
        if _is_own_module(module):
            for flag in flag_list:
                FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def _with_logging(main: Callable[[list[str]], int],
                  tensorflow: bool) -> Callable[[list[str]], int]:
    def wrapped(argv: list[str]) -> int:
        quiet.quiet_tensorflow(bool(FLAGS.verbose), import_now=tensorflow)
        return main(argv)

    return wrapped


def _exit_at_once(main: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
    """Ends the process as soon as ``main`` returns, skipping the interpreter's teardown.

    A TensorFlow command's outputs are complete when its ``main`` returns (checkpoints,
    SavedModels, CSVs and TensorBoard writers are written and closed by then), but the
    interpreter's teardown afterwards (tf.data threads, the eager context, Python's final
    garbage collection of the model) took from 3 s to 44 s after the demo's training.
    The ``atexit`` handlers still run (they flush and close the log handlers and delete
    autograph's temporary files), the standard streams are flushed, then ``os._exit``
    ends the process with ``main``'s status. An exception from ``main`` takes absl's
    usual path.
    """
    def wrapped(argv: list[str]) -> int:
        status = int(main(argv) or 0)
        atexit._run_exitfuncs()  # what a normal exit runs before the teardown
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(status)

    return wrapped


def app_run(main: Callable[[list[str]], int], tensorflow: bool = False) -> None:
    """Runs a command with `absl.app.run` (``python -m`` and the console scripts).

    Defines ``--verbose``, registers the key flags for ``--help`` and hides
    TensorFlow's C++ logs unless ``--verbose``; exits with ``main``'s status.

    Args:
      main: the command's absl main.
      tensorflow: the command uses TensorFlow: import it quietly before ``main``, and
        exit as soon as it returns (`_exit_at_once`).
    """
    define_verbose_flag()
    register_key_flags()
    command = _with_logging(main, tensorflow)
    app.run(_exit_at_once(command) if tensorflow else command)


def run(main: Callable[[list[str]], int], argv: Sequence[str], prog: str = "sercseg",
        tensorflow: bool = False) -> int:
    """Parses ``argv`` (without the program name) into the flags and calls ``main``.

    Returns:
      ``main``'s exit status, or 2 with a one-line message for an unknown or bad flag.
      The flags are reset to their defaults afterwards.
    """
    define_verbose_flag()
    try:
        rest = FLAGS([prog, *argv])
    except flags.Error as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    try:
        return int(_with_logging(main, tensorflow)(rest) or 0)
    finally:
        FLAGS.unparse_flags()


def _raise_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt(f"signal {signum}")


def sigterm_as_interrupt() -> None:
    """Makes SIGTERM raise KeyboardInterrupt, as Ctrl-C does (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


@contextlib.contextmanager
def deferred_interrupts(reraise: bool = True,
                        doing: str = "a checkpoint is being written") -> Iterator[None]:
    """Holds SIGINT / SIGTERM back during the block (e.g. while a checkpoint is written).

    A signal that arrives is logged ("signal N: ``doing``; stopping after it") and, with
    ``reraise``, raised as KeyboardInterrupt once the block has finished; without
    ``reraise`` (the save that an interrupt itself started) it is dropped. Outside the
    main thread the block runs unguarded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def remember(signum, frame):  # noqa: ARG001
        received.append(signum)
        logging.warning("signal %d: %s; stopping after it", signum, doing)

    previous = {s: signal.signal(s, remember) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received and reraise:
        raise KeyboardInterrupt(f"signal {received[0]}")
