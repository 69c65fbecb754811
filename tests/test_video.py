"""Tests of video writing/reading, timestamp frame picking and frame extraction."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from sercseg_tf.data import video
from sercseg_tf.synthetic import generator as synthetic

ROOT = Path(__file__).resolve().parents[1]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Zero-mean normalised cross-correlation: blind to the codec's small brightness shift."""
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _counter_frames(n: int, h: int = 96, w: int = 128):
    """Frame j: flat grey level 8 * j + 20 with a bright square (codecs keep flat areas)."""
    for j in range(n):
        frame = np.full((h, w, 3), 8 * j + 20, np.uint8)
        frame[10:30, 10:30] = 250
        yield frame


@pytest.mark.parametrize(
    "name,fourcc", [("a.wmv", None), ("a.avi", None), ("b.avi", "XVID"), ("a.mp4", None)]
)
def test_write_video_round_trips(tmp_path: Path, name: str, fourcc: str | None):
    path = tmp_path / name
    frames = list(_counter_frames(24))
    assert video.write_video(path, iter(frames), fps=12, size_hw=(96, 128), fourcc=fourcc) == 24
    assert not list(tmp_path.glob(".*partial*"))
    got = list(video.iter_frames(path, every_seconds=1 / 12))
    assert len(got) == 24
    for (k, t, rgb), ref in zip(got, frames, strict=True):
        assert rgb.shape == (96, 128, 3) and rgb.dtype == np.uint8
        assert t == pytest.approx(k / 12)
        assert _psnr(rgb, ref) > 30


@pytest.mark.parametrize("max_fps", [240.0, 5.0])  # 5.0: the pts fallback path
def test_iter_frames_picks_by_timestamp(tmp_path: Path, monkeypatch, max_fps: float):
    monkeypatch.setattr(video, "MAX_PLAUSIBLE_FPS", max_fps)
    path = tmp_path / "count.avi"
    video.write_video(path, _counter_frames(25), fps=10, size_hw=(96, 128))
    got = list(video.iter_frames(path, every_seconds=0.25))
    # t_k = 0.25 k -> frame floor(2.5 k + 0.5): 0, 3, 5, 8, 10, 13, 15, 18, 20, 23.
    expected = [0, 3, 5, 8, 10, 13, 15, 18, 20, 23]
    assert [k for k, _, _ in got] == list(range(len(expected)))
    assert [t for _, t, _ in got] == pytest.approx([0.25 * k for k in range(len(expected))])
    decoded = [int(round((rgb[50:90, 50:120].mean() - 20) / 8)) for _, _, rgb in got]
    assert decoded == expected


def test_write_video_rejects_bad_input(tmp_path: Path):
    with pytest.raises(video.VideoError, match="unsupported extension"):
        video.write_video(tmp_path / "a.mkv2", [], fps=24, size_hw=(96, 128))
    bad = [np.zeros((96, 128, 3), np.uint8), np.zeros((90, 128, 3), np.uint8)]
    with pytest.raises(video.VideoError, match="frame 1"):
        video.write_video(tmp_path / "a.avi", bad, fps=24, size_hw=(96, 128))
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_unreadable_video_errors(tmp_path: Path, capsys):
    bad = tmp_path / "case03" / "video.wmv"
    bad.parent.mkdir()
    bad.write_bytes(b"this is not a video")
    with pytest.raises(video.VideoError) as err:
        list(video.iter_frames(bad))
    assert str(bad) in str(err.value)
    with pytest.raises(video.VideoError, match="no such file"):
        list(video.iter_frames(tmp_path / "missing.mp4"))
    tool = _load_tool("extract_frames")
    assert tool.run([str(bad), "--output_dir", str(tmp_path / "out")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    # One line naming the video, then the summary; no case folder, no temporary folder.
    assert len(lines) == 2 and str(bad) in lines[0] and "0 of 1 videos" in lines[1]
    assert not any((tmp_path / "out").glob("*"))  # pathlib's glob lists hidden names too


def test_case_names():
    assert video.video_case_name("/data/case5/video.wmv") == "case05"
    assert video.video_case_name("/data/case11/video.wmv") == "case11"
    assert video.video_case_name("/data/clips/op_12.mp4") == "op_12"


def test_extracted_frames_match_synthetic_pngs(tmp_path: Path):
    """Frames extracted from a case's WMV match its annotated PNGs, same index (no off-by-one)."""
    (case_dir,) = synthetic.generate_dataset(
        tmp_path / "syn", num_cases=1, frames_per_case=3, seed=7
    )
    tool = _load_tool("extract_frames")
    assert tool.run([str(case_dir / "video.wmv"), "--output_dir", str(tmp_path / "out")]) == 0
    out = sorted((tmp_path / "out" / "case01").glob("*.png"))
    assert [p.name for p in out] == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]
    pngs = [cv2.imread(str(case_dir / p.name)) for p in out]
    for k, path in enumerate(out):
        frame = cv2.imread(str(path))
        assert _psnr(frame, pngs[k]) >= 30.0
        scores = [_ncc(frame, ref) for ref in pngs]
        assert int(np.argmax(scores)) == k, scores
    # Neighbouring video frames (1/24 s apart) differ from the annotated one (needle
    # motion, noise), so an off-by-one pick would correlate less.
    frames = [rgb for _, _, rgb in video.iter_frames(case_dir / "video.wmv", every_seconds=1 / 24)]
    assert len(frames) == 72
    ref = cv2.cvtColor(pngs[1], cv2.COLOR_BGR2RGB)
    assert _ncc(frames[24], ref) > max(_ncc(frames[23], ref), _ncc(frames[25], ref))
