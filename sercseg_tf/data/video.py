"""Video reading and writing with OpenCV (bundled FFmpeg): WMV, AVI and MP4.

`iter_frames` picks frames by timestamp as the paper did (one frame per second): the
k-th extracted frame is at t_k = k * every_seconds and is video frame
n_k = floor(t_k * fps + 0.5) (round half up). Frames are read sequentially with
grab/retrieve, because seeking (CAP_PROP_POS_FRAMES) is unreliable in WMV/ASF files.
Files reporting an implausible rate (> MAX_PLAUSIBLE_FPS, e.g. an ASF 1000 fps time
base) fall back to frame timestamps: the first frame with pts >= t_k.

A truncated file (a copy that stopped, a recorder that crashed) decodes up to where
its data ends. After the last decodable frame `iter_frames` compares the seconds read
with the duration the file declares (`declared_seconds`: the container's frame count,
or for WMV/ASF the play duration in its header, since FFmpeg reports no usable count
for a cut ASF file) and raises `VideoTruncatedError` with both, so no caller accepts
13 of 43 seconds silently.
"""

from __future__ import annotations

import math
import os
import re
import struct
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from sercseg_tf import atomic_io, labels
from sercseg_tf.fault_points import fault_point

# Container extension -> FourCC used by write_video.
FOURCC_BY_EXTENSION: dict[str, str] = {
    ".wmv": "WMV2",
    ".avi": "MJPG",
    ".mp4": "mp4v",
}
VIDEO_EXTENSIONS: tuple[str, ...] = (".wmv", ".avi", ".mp4")
# Above this reported rate (e.g. ASF's 1000 fps time base) frames are picked by timestamp.
MAX_PLAUSIBLE_FPS = 240.0
_CASE_DIR = re.compile(r"^case(\d+)$", re.IGNORECASE)
# A video counts as truncated when more than this many frames of its declared length
# could not be decoded.
TRUNCATION_TOLERANCE_FRAMES = 2
# ASF (WMV) header object and file-properties object GUIDs (ASF specification 3.1, 3.2).
_ASF_HEADER = uuid.UUID("75B22630-668E-11CF-A6D9-00AA0062CE6C").bytes_le
_ASF_FILE_PROPERTIES = uuid.UUID("8CABDCA1-A947-11CF-8EE4-00C00C205365").bytes_le


class VideoError(RuntimeError):
    """A video cannot be opened, decoded or written; message is "<path>: <reason>"."""

    def __init__(self, path: os.PathLike | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class VideoTruncatedError(VideoError):
    """The video's data ends before its declared duration (raised after its last frame).

    Attributes:
      seconds_read: time of the end of the last decodable frame.
      seconds_declared: the duration the file's header declares.
      frames_yielded: sampled frames `iter_frames` yielded before raising.
    """

    def __init__(self, path: os.PathLike | str, seconds_read: float, seconds_declared: float,
                 frames_yielded: int):
        self.seconds_read = seconds_read
        self.seconds_declared = seconds_declared
        self.frames_yielded = frames_yielded
        super().__init__(path, f"truncated: readable up to {seconds_read:.1f} s of "
                               f"{seconds_declared:.1f} s ({frames_yielded} frames sampled)")


def write_video(
    path: os.PathLike | str,
    frames_rgb_iterable: Iterable[np.ndarray],
    fps: float,
    size_hw: tuple[int, int],
    fourcc: str | None = None,
) -> int:
    """Writes RGB uint8 frames to a video file atomically (temp name, then rename).

    The codec follows the extension (.wmv: WMV2, .avi: MJPG, .mp4: mp4v) unless `fourcc`
    is given (e.g. "XVID" for .avi).

    Args:
      path: output file (.wmv, .avi or .mp4).
      frames_rgb_iterable: frames of shape size_hw + (3,), uint8, RGB.
      fps: frames per second.
      size_hw: (height, width).
      fourcc: optional FourCC override.

    Returns:
      The number of frames written.

    Raises:
      VideoError: unknown extension, encoder unavailable, or a frame of the wrong shape.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if fourcc is None:
        if ext not in FOURCC_BY_EXTENSION:
            raise VideoError(path, f"unsupported extension {ext!r}; use one of {VIDEO_EXTENSIONS}")
        fourcc = FOURCC_BY_EXTENSION[ext]
    h, w = size_hw
    count = 0
    with atomic_io.atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h))
        if not writer.isOpened():
            raise VideoError(path, f"cannot open a {fourcc} encoder for this file")
        try:
            for frame in frames_rgb_iterable:
                if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
                    raise VideoError(path, f"frame {count} has shape {frame.shape} "
                                           f"{frame.dtype}, want {(h, w, 3)} uint8")
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                count += 1
        finally:
            writer.release()
    return count


def _asf_duration(path: Path) -> float | None:
    """Play duration minus preroll (seconds) from a WMV/ASF header, None if not ASF.

    File Properties Object layout (ASF spec 3.2): GUID, size (8), file id (16), file
    size (8), creation date (8), data packets (8), play duration (8, 100 ns units),
    send duration (8), preroll (8, ms).
    """
    with open(path, "rb") as f:
        head = f.read(256 * 1024)
    if not head.startswith(_ASF_HEADER):
        return None
    i = head.find(_ASF_FILE_PROPERTIES)
    if i < 0 or i + 88 > len(head):
        return None
    play, _, preroll = struct.unpack_from("<QQQ", head, i + 64)
    return max(play / 1e7 - preroll / 1e3, 0.0)


def declared_seconds(path: os.PathLike | str, cap: cv2.VideoCapture, fps: float
                     ) -> float | None:
    """The duration a video file declares: frame count / fps, or the ASF header's.

    Returns:
      Seconds, or None when the file declares nothing usable.
    """
    count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if math.isfinite(count) and 0 < count < 1e9 and 0 < fps <= MAX_PLAUSIBLE_FPS:
        return count / fps
    return _asf_duration(Path(path))


def _check_complete(path: Path, cap: cv2.VideoCapture, fps: float, frames_decoded: int,
                    seconds_read: float, yielded: int) -> None:
    """Raises `VideoTruncatedError` if frames are missing from the declared length."""
    declared = declared_seconds(path, cap, fps)
    if declared is None or yielded == 0:
        return
    declared_frames = declared * fps if fps <= MAX_PLAUSIBLE_FPS else declared
    read = frames_decoded if fps <= MAX_PLAUSIBLE_FPS else seconds_read
    tolerance = TRUNCATION_TOLERANCE_FRAMES if fps <= MAX_PLAUSIBLE_FPS else 0.5
    if declared_frames - read > tolerance:
        raise VideoTruncatedError(path, seconds_read, declared, yielded)


def frame_index_at(time_s: float, fps: float) -> int:
    """Returns the video frame shown at time t: floor(t * fps + 0.5)."""
    return int(math.floor(time_s * fps + 0.5 + 1e-9))


def iter_frames(
    video_path: os.PathLike | str, every_seconds: float = 1.0
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yields one frame every `every_seconds`, picked by timestamp.

    Args:
      video_path: a video OpenCV/FFmpeg can decode (WMV, AVI, MP4, ...).
      every_seconds: sampling period in seconds (> 0).

    Yields:
      (index, time_s, frame_rgb): index k = 0, 1, ... of the extracted frame, its time
      t_k = k * every_seconds, and the RGB uint8 H x W x 3 video frame round(t_k * fps).

    Raises:
      VideoError: missing/unreadable file, unknown frame rate, or no decodable frame.
      VideoTruncatedError: after the last decodable frame, when the file's data ends
        before its declared duration.
    """
    path = Path(video_path)
    if every_seconds <= 0:
        raise VideoError(path, f"every_seconds must be > 0, got {every_seconds}")
    if not path.is_file():
        raise VideoError(path, "no such file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(path, "cannot open as a video (unknown or corrupt format)")
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        if not math.isfinite(fps) or fps <= 0:
            raise VideoError(path, f"video reports no usable frame rate ({fps})")
        if fps > MAX_PLAUSIBLE_FPS:
            # Some ASF/WMV files report a 1000 fps time base: pick by frame timestamps.
            yield from _iter_by_timestamp(cap, path, every_seconds)
            return
        k = 0
        position = 0  # index of the next frame grab() returns
        while True:
            t = k * every_seconds
            wanted = frame_index_at(t, fps)
            while position < wanted and cap.grab():
                position += 1
            ok, bgr = cap.read() if position == wanted else (False, None)
            if not ok or bgr is None:
                _finish(path, k)
                _check_complete(path, cap, fps, position, position / fps, k)
                return
            position += 1
            yield k, float(t), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            k += 1
    finally:
        cap.release()


def _iter_by_timestamp(
    cap: cv2.VideoCapture, path: Path, every_seconds: float
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Fallback when the frame rate is implausible: the first frame with pts >= t_k."""
    k = 0
    ts = 0.0
    while cap.grab():
        ts = float(cap.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
        t = k * every_seconds
        if ts + 5e-4 >= t:
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                break
            yield k, float(t), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            k += 1
    _finish(path, k)
    _check_complete(path, cap, float(cap.get(cv2.CAP_PROP_FPS)), 0, ts, k)


def _finish(path: Path, count: int) -> None:
    if count == 0:
        raise VideoError(path, "no decodable frames")


def video_case_name(video_path: os.PathLike | str) -> str:
    """Returns the case name of a video: its folder if named caseNN, else the file stem.

    `.../case5/video.wmv` -> "case05"; `.../clip_a.mp4` -> "clip_a".
    """
    path = Path(video_path)
    match = _CASE_DIR.match(path.parent.name)
    if match:
        return labels.case_name(int(match.group(1)))
    return path.stem


def extract_frames(
    video_path: os.PathLike | str,
    output_dir: os.PathLike | str,
    every_seconds: float = 1.0,
    name: str | None = None,
    allow_truncated: bool = False,
) -> list[Path]:
    """Writes one PNG every `every_seconds` to OUTPUT_DIR/<name>/frame_NNNN.png.

    The case folder is written as a whole into a hidden sibling and swapped in when
    complete (`atomic_io.atomic_dir`): an existing folder is replaced, never mixed with
    older frames, and a failure or kill leaves it as it was.

    Args:
      video_path: input video.
      output_dir: root output folder.
      every_seconds: sampling period (the paper used 1 s).
      name: case folder name; default `video_case_name(video_path)`.
      allow_truncated: write the frames of a truncated video (its
        `VideoTruncatedError` is raised after they are in place) instead of nothing.

    Returns:
      The PNG paths written, in order.

    Raises:
      VideoError: as `iter_frames`, or a PNG cannot be written; nothing is written.
      VideoTruncatedError: the video is truncated; with ``allow_truncated`` after its
        frames were written, else with the case folder left as it was.
    """
    name = name or video_case_name(video_path)
    out_dir = Path(output_dir) / name
    names: list[str] = []
    truncated: VideoTruncatedError | None = None
    with atomic_io.atomic_dir(out_dir) as tmp:
        try:
            for k, _, rgb in iter_frames(video_path, every_seconds):
                names.append(f"frame_{k:04d}.png")
                write_png(tmp / names[-1], rgb)
                fault_point("extract_frames.frame_written")
        except VideoTruncatedError as err:
            if not allow_truncated:
                raise
            truncated = err
    if truncated is not None:
        raise truncated
    return [out_dir / n for n in names]


def write_png(path: os.PathLike | str, rgb: np.ndarray) -> None:
    """Writes an RGB (or grey) uint8 image as PNG atomically (temp name, then rename)."""
    path = Path(path)
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise VideoError(path, "PNG encoding failed")
    atomic_io.atomic_write_bytes(path, buf.tobytes())
