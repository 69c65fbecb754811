"""The model card: what an exported model was trained on, for the people who use it.

`sercseg_tf.export` writes ``EXPORT/assets/model_card.json`` inside the SavedModel
folder; `sercseg_tf.predict` reads it to bring new frames to the scale the model
learned. Its keys::

  format            "sercseg_tf.model_card/1"
  package_version   sercseg_tf's version;  created: ISO 8601 date-time (UTC)
  classes           [{id, name, display_name, labelme_label, colour [r, g, b]}, ...]
  config            the flat experiment config (`sercseg_tf.config.ExperimentConfig`)
  training          fold (0 = every case, for new patients), all_cases, train_cases,
                    held_out_case, held_out_iou {oocyte, serc, needle, mean} or null,
                    frame_size [height, width] of the training frames (most frames),
                    image_scale, min_scale, max_scale, data_source ("synthetic" or
                    "user", from the TFRecord manifest), tfrecord_dir, frames
  um_per_px         micrometres per pixel of the training frames, or null

The ``training`` part is written by `sercseg_tf.train` beside the fold's config
(``layout.training_data_json``) when training starts, so an export made later, by
``tools/run_loocv.py`` as well, knows the data without being told where it was.
No TensorFlow here.
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from sercseg_tf import __version__, atomic_io, labels

FORMAT = "sercseg_tf.model_card/1"
ASSETS_SUBDIR = "assets"
MODEL_CARD_JSON = "model_card.json"
# Manifest "data_source" values (`sercseg_tf.data.tfrecord.build_tfrecords`).
SYNTHETIC = "synthetic"
USER_DATA = "user"


class ModelCardError(ValueError):
    """A model card or training record that cannot be read; names the file."""


def card_path(export_dir: str | os.PathLike) -> pathlib.Path:
    """Returns ``EXPORT/assets/model_card.json``."""
    return pathlib.Path(export_dir) / ASSETS_SUBDIR / MODEL_CARD_JSON


def class_table() -> list[dict[str, Any]]:
    """The classes as the card lists them: id, names, LabelMe label and RGB colour."""
    return [{"id": c, "name": labels.CLASS_NAMES[c],
             "display_name": labels.CLASS_DISPLAY_NAMES[c],
             "labelme_label": labels.LABELME_LABELS.get(c, labels.CLASS_NAMES[c]),
             "colour": list(labels.CLASS_COLOURS[c])} for c in range(labels.NUM_CLASSES)]


def frame_size(manifest: Mapping[str, Any], case_ids: Sequence[int]) -> list[int] | None:
    """The frame size ``[height, width]`` most of the given cases' frames have.

    Uses each case's ``image_size`` in the manifest (None for a case of mixed sizes,
    which is then not counted), weighted by its frame count; None when unknown.
    """
    counts: collections.Counter[tuple[int, int]] = collections.Counter()
    wanted = {int(c) for c in case_ids}
    for entry in manifest.get("cases", {}).values():
        size = entry.get("image_size")
        if int(entry.get("case_id", -1)) in wanted and size:
            counts[(int(size[0]), int(size[1]))] += int(entry.get("frames", 1))
    if not counts:
        return None
    return list(counts.most_common(1)[0][0])


def training_record(manifest: Mapping[str, Any], tfrecord_dir: str | os.PathLike,
                    fold: int, train_cases: Sequence[int], held_out: int | None
                    ) -> dict[str, Any]:
    """What a fold trains on, from the TFRecord manifest (the card's ``training`` part).

    Args:
      manifest: ``manifest.json`` of ``tfrecord_dir``.
      tfrecord_dir: the TFRecord folder (stored absolute).
      fold: the fold; 0 trains on every case.
      train_cases: the training case ids.
      held_out: the held-out case id, None for fold 0.
    """
    frames = sum(int(e.get("frames", 0)) for e in manifest.get("cases", {}).values()
                 if int(e.get("case_id", -1)) in set(train_cases))
    return {"fold": int(fold), "all_cases": held_out is None,
            "train_cases": [int(c) for c in train_cases], "held_out_case": held_out,
            "frame_size": frame_size(manifest, train_cases),
            "data_source": manifest.get("data_source"),
            "tfrecord_dir": str(pathlib.Path(tfrecord_dir).resolve()), "frames": frames}


def write_json(path: str | os.PathLike, data: Mapping[str, Any]) -> pathlib.Path:
    """Writes a card or training record as indented JSON, atomically."""
    return atomic_io.atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """Reads a card or training record; None when the file does not exist.

    Raises:
      ModelCardError: the file is not a JSON object (names the file).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelCardError(f"{path}: unreadable model card ({e})") from e
    if not isinstance(data, dict):
        raise ModelCardError(f"{path}: a model card must be a JSON object")
    return data


def read_card(export_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The card of an exported model, or None (exported before cards existed)."""
    return read_json(card_path(export_dir))


def build_card(config: Mapping[str, Any], record: Mapping[str, Any] | None, fold: int,
               held_out_iou: Mapping[str, float] | None = None,
               um_per_px: float | None = None) -> dict[str, Any]:
    """Assembles the card (see the module docstring).

    Args:
      config: the flat config (``ExperimentConfig.to_dict()``).
      record: the fold's `training_record`, None when unknown (then frame size, data
        source and cases are null).
      fold: the exported fold.
      held_out_iou: mean IoU per class on the held-out case (``evaluate``), if any.
      um_per_px: calibration of the training frames, if known.
    """
    training = {"fold": int(fold), "all_cases": int(fold) == 0, "train_cases": None,
                "held_out_case": None if int(fold) == 0 else int(fold), "frame_size": None,
                "data_source": None, "tfrecord_dir": None, "frames": None}
    training.update(dict(record or {}))
    training.update({"held_out_iou": dict(held_out_iou) if held_out_iou else None,
                     **{k: float(config[k]) for k in ("image_scale", "min_scale", "max_scale")}})
    return {"format": FORMAT, "package_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "classes": class_table(), "config": dict(config), "training": training,
            "um_per_px": um_per_px}
