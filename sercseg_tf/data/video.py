"""Video reading and writing with OpenCV (bundled FFmpeg): WMV, AVI and MP4.

`iter_frames` picks frames by timestamp as the paper did (one frame per second): the
k-th extracted frame is at t_k = k * every_seconds and is video frame
n_k = floor(t_k * fps + 0.5) (round half up). Frames are read sequentially with
grab/retrieve, because seeking (CAP_PROP_POS_FRAMES) is unreliable in WMV/ASF files.
Files reporting an implausible rate (> MAX_PLAUSIBLE_FPS, e.g. an ASF 1000 fps time
base) fall back to frame timestamps: the first frame with pts >= t_k.

`probe` reads the declared frame rate, frame count and (WMV) header duration, so a
caller can tell a truncated file (a copy that stopped, a recorder that crashed: decoding
stops long before the declared end) from a complete one: `expected_samples` is how many
frames `iter_frames` yields on a complete file. `extract_frames` raises
`VideoTruncatedError` with the seconds actually read, so no caller accepts 13 of 43
seconds silently.
`browser_video_format` picks what a browser plays: H.264 MP4 when this OpenCV build can
encode it, else VP8 WebM.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from sercseg_tf import atomic_io, labels, quiet
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
# (extension, FourCC) a browser plays, in order of preference: H.264 in MP4 (needs an
# OpenCV built with an H.264 encoder; the PyPI wheels have none), VP8 in WebM.
BROWSER_FORMATS: tuple[tuple[str, str], ...] = ((".mp4", "avc1"), (".webm", "VP80"))
_CASE_DIR = re.compile(r"^case(\d+)$", re.IGNORECASE)


class VideoError(RuntimeError):
    """A video cannot be opened, decoded or written; message is "<path>: <reason>"."""

    def __init__(self, path: os.PathLike | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class VideoTruncatedError(VideoError):
    """The video's data ends before its declared duration (raised after its last frame).

    Attributes:
      seconds_read: seconds sampled before decoding stopped (frames_read * every).
      seconds_declared: the duration the file declares (`VideoInfo.duration_s`).
      frames_read: sampled frames read.
      frames_expected: sampled frames of a complete file (`expected_samples`).
    """

    def __init__(self, path: os.PathLike | str, seconds_read: float, seconds_declared: float,
                 frames_read: int, frames_expected: int):
        self.seconds_read = seconds_read
        self.seconds_declared = seconds_declared
        self.frames_read = frames_read
        self.frames_expected = frames_expected
        super().__init__(path, f"truncated: read {seconds_read:.1f} of "
                               f"{seconds_declared:.1f} s ({frames_read} of "
                               f"{frames_expected} frames)")


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
        with quiet.silenced_c_stderr():  # FFmpeg's notes on codec tags; failure is raised below
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), float(fps),
                                     (w, h))
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


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What a video file declares about itself (`probe`)."""

    fps: float
    frame_count: int  # 0 when the container does not say
    asf_duration_s: float | None = None  # WMV/ASF header's play duration minus preroll

    @property
    def duration_s(self) -> float | None:
        """Declared length: frame_count / fps, else the ASF header's; None when unknown."""
        if self.frame_count > 0 and 0 < self.fps <= MAX_PLAUSIBLE_FPS:
            return self.frame_count / self.fps
        return self.asf_duration_s


# ASF File Properties Object (WMV header): GUID, then after the 8-byte object size a
# file id GUID and the QWORDs file size, creation date, data packets, play duration
# (100 ns), send duration, preroll (ms), then DWORD flags (bit 0: broadcast, values
# unset). A WMV cut short keeps this header, so its declared length survives.
_ASF_FILE_PROPERTIES = bytes.fromhex("A1DCAB8C47A9CF118EE400C00C205365")


def asf_declared_duration(path: os.PathLike | str) -> float | None:
    """Play duration minus preroll (s) from a WMV/ASF header; None if absent or unset."""
    import struct

    with open(path, "rb") as f:
        head = f.read(1 << 16)
    at = head.find(_ASF_FILE_PROPERTIES)
    if at < 0 or len(head) < at + 84:
        return None
    play, _, preroll, flags = struct.unpack_from("<QQQI", head, at + 64)
    duration = play / 1e7 - preroll / 1e3
    return duration if not flags & 1 and duration > 0 else None


def probe(video_path: os.PathLike | str) -> VideoInfo:
    """Reads the declared frame rate, frame count and (WMV) duration, without decoding.

    Raises:
      VideoError: missing file or not openable as a video.
    """
    path = Path(video_path)
    if not path.is_file():
        raise VideoError(path, "no such file")
    with quiet.silenced_c_stderr():  # FFmpeg's complaints about a corrupt file
        cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(path, "cannot open as a video (unknown or corrupt format)")
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    fps = fps if math.isfinite(fps) else 0.0
    return VideoInfo(fps, int(count) if math.isfinite(count) and count > 0 else 0,
                     asf_declared_duration(path))


def expected_samples(info: VideoInfo, every_seconds: float) -> int | None:
    """Frames `iter_frames` yields from a complete file, None when the length is unknown.

    From a frame count: #{k : round(k * every * fps) < count}; from a duration D alone:
    #{k : k * every < D}.
    """
    duration = info.duration_s
    if duration is None:
        return None
    if not (info.frame_count > 0 and 0 < info.fps <= MAX_PLAUSIBLE_FPS):
        return int(math.ceil(duration / every_seconds - 1e-9))
    k = int(info.frame_count / (info.fps * every_seconds)) + 1
    while k > 0 and frame_index_at((k - 1) * every_seconds, info.fps) >= info.frame_count:
        k -= 1
    return k


@functools.cache
def browser_video_format() -> tuple[str, str]:
    """(extension, FourCC) of the first `BROWSER_FORMATS` entry this OpenCV can write.

    Probes each by writing two tiny frames to a temporary file (FFmpeg's complaints about
    a missing encoder are silenced); the answer is cached for the process.

    Raises:
      VideoError: none of them can be written.
    """
    with tempfile.TemporaryDirectory() as tmp:
        for ext, fourcc in BROWSER_FORMATS:
            target = Path(tmp) / f"probe{ext}"
            with quiet.silenced_c_stderr():
                writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*fourcc), 1.0,
                                         (16, 16))
                ok = writer.isOpened()
                if ok:
                    for _ in range(2):
                        writer.write(np.zeros((16, 16, 3), np.uint8))
                writer.release()
            if ok and target.is_file() and target.stat().st_size > 0:
                return ext, fourcc
    raise VideoError(Path(tmp), "OpenCV can write neither H.264 MP4 nor VP8 WebM here")


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
            while position < wanted:
                if not cap.grab():
                    return _finish(path, k)
                position += 1
            ok, bgr = cap.read()
            if not ok or bgr is None:
                return _finish(path, k)
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


def _finish(path: Path, count: int) -> None:
    if count == 0:
        raise VideoError(path, "no decodable frames")


def _truncation(path: os.PathLike | str, info: VideoInfo, frames_read: int,
                frames_expected: int | None, every_seconds: float
                ) -> VideoTruncatedError | None:
    """A `VideoTruncatedError` when fewer sampled frames came than declared, else None."""
    if frames_expected is None or frames_read >= frames_expected:
        return None
    return VideoTruncatedError(path, frames_read * every_seconds, float(info.duration_s or 0.0),
                               frames_read, frames_expected)


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
    progress: bool = False,
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
      progress: a tqdm bar (total from `expected_samples`) when writing to a terminal.
      allow_truncated: write the frames of a truncated video (its
        `VideoTruncatedError` is raised after they are in place); False leaves the
        case folder as it was.

    Returns:
      The PNG paths written, in order.

    Raises:
      VideoError: as `iter_frames`, or a PNG cannot be written; nothing is written.
      VideoTruncatedError: the video is truncated; with ``allow_truncated`` after its
        frames were written, else with the case folder left as it was.
    """
    from tqdm import tqdm

    name = name or video_case_name(video_path)
    out_dir = Path(output_dir) / name
    info = probe(video_path)
    total = expected_samples(info, every_seconds)
    names: list[str] = []
    with atomic_io.atomic_dir(out_dir) as tmp, tqdm(
            total=total, desc=name, unit="frame", disable=None if progress else True,
            leave=False) as bar:
        for k, _, rgb in iter_frames(video_path, every_seconds):
            names.append(f"frame_{k:04d}.png")
            write_png(tmp / names[-1], rgb)
            fault_point("extract_frames.frame_written")
            bar.update()
        truncated = _truncation(video_path, info, len(names), total, every_seconds)
        if truncated is not None and not allow_truncated:
            raise truncated
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
