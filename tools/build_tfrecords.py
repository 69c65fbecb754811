"""``python tools/build_tfrecords.py ...``: the same as ``sercseg-build-tfrecords``.

The command lives in `sercseg_tf.build_tfrecords` (see its docstring for the flags).
"""

import pathlib
import sys

# Run from a clone: the repository's package, installed or not.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from sercseg_tf.build_tfrecords import entry, main, run  # noqa: E402, F401 (tests load this file)

if __name__ == "__main__":
    entry()
