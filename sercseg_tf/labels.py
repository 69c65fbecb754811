"""Class ids, names, colours, the ignore label and every string key, in one place.

Conventions follow DESIGN.md: 0 background, 1 oocyte, 2 sERC, 3 needle, 255 ignore.
TFRecord feature keys are deeplab2's (``deeplab2/data/data_utils.py``) plus the video
keys used for per-case sharding.
"""

from __future__ import annotations

BACKGROUND = 0
OOCYTE = 1
SERC = 2
NEEDLE = 3
IGNORE_LABEL = 255
NUM_CLASSES = 4

CLASS_NAMES: tuple[str, ...] = ("background", "oocyte", "serc", "needle")
# Display names as the paper writes them.
CLASS_DISPLAY_NAMES: tuple[str, ...] = ("Background", "Oocyte", "sERC", "Needle")
# The foreground classes the paper reports IoU for (Table 2).
EVAL_CLASSES: tuple[int, ...] = (OOCYTE, SERC, NEEDLE)

# RGB overlay colours, indexed by class id.
CLASS_COLOURS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (0, 160, 255),
    (255, 200, 0),
    (255, 40, 80),
)
IGNORE_COLOUR: tuple[int, int, int] = (255, 255, 255)

# Exclusive-map paint order for the ICSI classes: needle ends on top of sERC, sERC on
# top of oocyte, whatever the order of shapes in a LabelMe file.
ICSI_PAINT_ORDER: tuple[int, ...] = (OOCYTE, SERC, NEEDLE)

# Default LabelMe label names -> class ids. Matching is case- and whitespace-insensitive
# (see `normalize_label_name`).
DEFAULT_LABEL_MAP: dict[str, int] = {
    "background": BACKGROUND,
    "_background_": BACKGROUND,
    "oocyte": OOCYTE,
    "serc": SERC,
    "needle": NEEDLE,
}

# The paper's Table 1: frames per case (one frame per second of video).
PAPER_FRAMES_PER_CASE: tuple[int, ...] = (49, 50, 65, 45, 43, 49, 89, 38, 48, 50, 53)

# deeplab2 TFRecord keys.
KEY_ENCODED_IMAGE = "image/encoded"
KEY_IMAGE_FILENAME = "image/filename"
KEY_IMAGE_FORMAT = "image/format"
KEY_IMAGE_HEIGHT = "image/height"
KEY_IMAGE_WIDTH = "image/width"
KEY_IMAGE_CHANNELS = "image/channels"
KEY_ENCODED_LABEL = "image/segmentation/class/encoded"
KEY_LABEL_FORMAT = "image/segmentation/class/format"
KEY_SEQUENCE_ID = "video/sequence_id"
KEY_FRAME_ID = "video/frame_id"

# Keys of the decoded-sample dictionaries that flow through tf.data and the model.
SAMPLE_IMAGE = "image"
SAMPLE_LABEL = "label"
SAMPLE_FILENAME = "filename"
SAMPLE_CASE_ID = "case_id"
SAMPLE_FRAME_ID = "frame_id"

# Exported SavedModel signature names.
SERVING_INPUT = "images"
SERVING_PRED = "semantic_pred"
SERVING_PROBS = "semantic_probs"


def normalize_label_name(name: str) -> str:
    """Returns the matching key of a LabelMe label: lower case, inner whitespace removed.

    "SERC", "serc " and "sERC" all map to "serc"; "Needle Tip" maps to "needletip".
    """
    return "".join(str(name).split()).lower()


def case_name(case_id: int) -> str:
    """Returns the folder / shard prefix of a case, e.g. ``case05`` for 5."""
    return f"case{int(case_id):02d}"
