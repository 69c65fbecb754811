"""``python tools/extract_frames.py ...``: the same as ``sercseg-extract-frames``.

The command lives in `sercseg_tf.extract_frames` (see its docstring for the flags).
"""

import pathlib
import sys

# Run from a clone: the repository's package, installed or not.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from sercseg_tf.extract_frames import entry, main, run  # noqa: E402, F401 (tests load this file)

if __name__ == "__main__":
    entry()
