"""Predict's inputs: videos, images and folders of images, as a stream of frames.

INPUT is a video (.wmv, .avi, .mp4), an image (.png, .jpg, .jpeg, .bmp, .tif, .tiff) or
a folder of images (not recursive, sorted by name). Videos are sampled one frame every
``every_seconds`` by timestamp (`sercseg_tf.data.video.iter_frames`).

Images are read the way the LabelMe reader reads training frames (EXIF orientation
applied; grey, palette and alpha converted to RGB; 16-bit, 32-bit and float images
min-max scaled to 0..255 by `sercseg_tf.data.labelme.image_to_rgb_uint8`), so a frame
looks the same to the model in training and in prediction.

A video that stops decoding before the end its container declares (a truncated file)
yields the frames it has, and its `Input.truncation` then says how many seconds were
read out of how many.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import PIL.Image

from sercseg_tf.data import labelme, video

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_EXTENSIONS: tuple[str, ...] = video.VIDEO_EXTENSIONS


class InputError(Exception):
    """An input cannot be read; str() is ``"<path>: <reason>"``."""


@dataclasses.dataclass
class Frame:
    """One frame to segment: where it came from and its RGB pixels."""

    index: int
    time_s: float
    source: str
    name: str  # file stem of its label PNG
    image: np.ndarray  # uint8 [H, W, 3]


@dataclasses.dataclass(frozen=True)
class Truncation:
    """A video that decoded only up to ``seconds_read`` of ``seconds_declared``."""

    seconds_read: float
    seconds_declared: float
    frames_read: int
    frames_expected: int

    def message(self, path: str | os.PathLike) -> str:
        """One line: ``PATH: truncated: read 13.0 of 43.2 s (13 of 44 frames)``."""
        return (f"{path}: truncated: read {self.seconds_read:.1f} of "
                f"{self.seconds_declared:.1f} s ({self.frames_read} of "
                f"{self.frames_expected} frames)")


@dataclasses.dataclass
class Input:
    """One INPUT: its kind, its frames and what was learnt while reading them."""

    path: str
    kind: str  # "video", "image" or "folder"
    frames: Iterator[Frame]
    expected_frames: int | None  # for the progress bar; None when unknown
    truncation: Truncation | None = None  # set once a video's frames are exhausted


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image as uint8 RGB (see the module docstring).

    Raises:
      InputError: unreadable or not an image.
    """
    try:
        with PIL.Image.open(path) as im:
            im.load()
            return labelme.image_to_rgb_uint8(labelme.apply_exif_orientation(im))
    except (PIL.UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read as an image ({type(e).__name__}: {e})") from e


def input_name(path: str | os.PathLike) -> str:
    """The output folder name of an input: folder name, image stem, or a video's case.

    ``.../case8/video.wmv`` -> ``case08`` (`video.video_case_name`), ``clip.mp4`` ->
    ``clip``, ``stills/`` -> ``stills``.
    """
    p = pathlib.Path(path)
    if p.is_dir():
        return p.resolve().name
    if p.suffix.lower() in VIDEO_EXTENSIONS:
        return video.video_case_name(p)
    return p.stem


def _image_frames(paths: Sequence[pathlib.Path],
                  on_skip: Callable[[str, str], None] | None) -> Iterator[Frame]:
    """Yields images as frames; with ``on_skip`` unreadable ones are reported and skipped."""
    for i, p in enumerate(paths):
        try:
            image = read_image(p)
        except InputError as e:
            if on_skip is None:
                raise
            on_skip(str(p), str(e))
            continue
        yield Frame(i, math.nan, str(p), p.stem, image)


def _video_frames(item: Input, every_seconds: float, info: video.VideoInfo) -> Iterator[Frame]:
    """Yields sampled frames of a video; at the end, records a truncation on ``item``."""
    count = 0
    try:
        for index, time_s, rgb in video.iter_frames(item.path, every_seconds):
            count += 1
            yield Frame(index, time_s, item.path, f"frame_{index:04d}", rgb)
    except video.VideoError as e:
        raise InputError(str(e)) from e
    if item.expected_frames is not None and count < item.expected_frames:
        item.truncation = Truncation(count * every_seconds, float(info.duration_s or 0.0),
                                     count, item.expected_frames)


def expand_input(path: str | os.PathLike, every_seconds: float,
                 on_skip: Callable[[str, str], None] | None = None) -> Input:
    """Opens one INPUT as an `Input` (frames are read lazily, as they are consumed).

    In a folder, an unreadable image is passed to ``on_skip(path, reason)`` and skipped
    (the rest of the folder is processed); without ``on_skip`` it raises.

    Raises:
      InputError: missing path, unsupported extension, a folder without images, or a
        file that cannot be opened as a video.
    """
    p = pathlib.Path(path)
    if p.is_dir():
        images = sorted(q for q in p.iterdir()
                        if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise InputError(f"{p}: folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
        return Input(str(path), "folder", _image_frames(images, on_skip), len(images))
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    ext = p.suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        try:
            info = video.probe(p)
        except video.VideoError as e:
            raise InputError(str(e)) from e
        item = Input(str(path), "video", iter(()),
                     video.expected_samples(info, every_seconds))
        item.frames = _video_frames(item, every_seconds, info)
        return item
    if ext in IMAGE_EXTENSIONS:
        return Input(str(path), "image", _image_frames([p], None), 1)
    raise InputError(f"{p}: unsupported file type {ext!r} (videos {VIDEO_EXTENSIONS}, "
                     f"images {IMAGE_EXTENSIONS})")
