"""Finding the cases and frames of a LabelMe folder (no TensorFlow).

Layout rules (documented in ``tools/build_tfrecords.py``):

* A *case* is every folder under the root (the root included) that directly holds
  LabelMe ``*.json`` files; hidden files and folders (``.name``, e.g. temporary
  folders of an interrupted generator run) are ignored. A ``*.json`` file is a
  LabelMe annotation unless it parses to a JSON object with neither ``"shapes"``
  nor ``"imagePath"`` (so the synthetic generator's ``ground_truth.json`` and
  similar side files are ignored). A file that does not parse at all is kept, so
  that validation reports it.
* The case id is the last integer in the folder name (``case05`` -> 5,
  ``patient_3`` -> 3). A folder name without a number, or two folders with the same
  id, is an error: case ids define the leave-one-case-out folds, so they are never
  invented.
* The frame id is the last integer in the JSON file stem (``frame_0007.json`` -> 7).
  If a stem has no number, or two stems share one, the frames of that case are
  numbered by their sorted position (0, 1, ...) instead.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re

_NUMBER = re.compile(r"(\d+)(?!.*\d)")


@dataclasses.dataclass(frozen=True)
class Frame:
    """One annotated frame: its LabelMe file and its integer frame id."""

    json_path: pathlib.Path
    frame_id: int


@dataclasses.dataclass(frozen=True)
class Case:
    """One case folder and its frames, sorted by frame id."""

    case_id: int
    folder: pathlib.Path
    frames: tuple[Frame, ...]


def last_integer(text: str) -> int | None:
    """Returns the last run of decimal digits in ``text`` as an int, or None."""
    match = _NUMBER.search(text)
    return int(match.group(1)) if match else None


def is_labelme_json(path: pathlib.Path) -> bool:
    """Tells whether a ``*.json`` file should be treated as a LabelMe annotation.

    True for any object with ``shapes`` or ``imagePath`` and for files that cannot be
    parsed (validation reports those); False for other JSON documents.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return True
    return not isinstance(data, dict) or "shapes" in data or "imagePath" in data


def _frames_of(json_paths: list[pathlib.Path]) -> tuple[Frame, ...]:
    numbers = [last_integer(p.stem) for p in json_paths]
    if None not in numbers and len(set(numbers)) == len(numbers):
        pairs = sorted(zip(numbers, json_paths, strict=True), key=lambda t: (t[0], t[1].name))
        return tuple(Frame(p, int(n)) for n, p in pairs)
    return tuple(Frame(p, i) for i, p in enumerate(sorted(json_paths, key=lambda p: p.name)))


def discover_cases(root: str | pathlib.Path) -> tuple[list[Case], list[str]]:
    """Finds the case folders under ``root``.

    Args:
      root: the LabelMe folder (one sub-folder per case, or a single case folder).

    Returns:
      ``(cases sorted by case id, problems)``; each problem is one line naming the
      folder and the reason (no case number, duplicate case id, nothing found).
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        return [], [f"{root}: not a directory"]
    folders: dict[pathlib.Path, list[pathlib.Path]] = {}
    for path in sorted(root.rglob("*.json")):
        hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
        if not hidden and path.is_file() and is_labelme_json(path):
            folders.setdefault(path.parent, []).append(path)
    if not folders:
        return [], [f"{root}: no LabelMe *.json files found in it or its sub-folders"]
    cases: list[Case] = []
    problems: list[str] = []
    seen: dict[int, pathlib.Path] = {}
    for folder, json_paths in sorted(folders.items()):
        case_id = last_integer(folder.name)
        if case_id is None:
            problems.append(
                f"{folder}: case folder name has no case number (name it e.g. case05)"
            )
            continue
        if case_id in seen:
            problems.append(f"{folder}: case id {case_id} already used by {seen[case_id]}")
            continue
        seen[case_id] = folder
        cases.append(Case(case_id, folder, _frames_of(json_paths)))
    return sorted(cases, key=lambda c: c.case_id), problems
