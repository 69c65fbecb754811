"""The classes: ids, names, colours, the ignore label and LabelMe label names.

0 background, 1 oocyte, 2 sERC, 3 needle, 255 ignore (excluded from loss and IoU), as
in deeplab2's semantic-segmentation convention. Data-format keys (TFRecord, tf.data,
SavedModel) live in `sercseg_tf.formats`; the paper's numbers in `sercseg_tf.paper_values`.
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
# The label each class gets in the LabelMe files predict writes, as in the README's
# ``labelme --labels oocyte,sERC,needle`` (any spelling is read, see DEFAULT_LABEL_MAP).
LABELME_LABELS: dict[int, str] = {OOCYTE: "oocyte", SERC: "sERC", NEEDLE: "needle"}


def normalize_label_name(name: str) -> str:
    """Returns the matching key of a LabelMe label: lower case, inner whitespace removed.

    "SERC", "serc " and "sERC" all map to "serc"; "Needle Tip" maps to "needletip".
    """
    return "".join(str(name).split()).lower()


def case_name(case_id: int) -> str:
    """Returns the folder / shard prefix of a case, e.g. ``case05`` for 5."""
    return f"case{int(case_id):02d}"
