"""Tests of the largest-oocyte post-processing against scipy's labelling and drawn shapes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sercseg_tf import labels
from sercseg_tf.model import postprocess

EIGHT = np.ones((3, 3), bool)


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _logits(label_map: np.ndarray, second: np.ndarray | None = None) -> np.ndarray:
    """One-hot logits (5 for the class, 0 elsewhere, 2 for an optional runner-up class)."""
    out = np.zeros(label_map.shape + (labels.NUM_CLASSES,), np.float32)
    if second is not None:
        np.put_along_axis(out, second[..., None], 2.0, axis=-1)
    np.put_along_axis(out, label_map[..., None].astype(np.int64), 5.0, axis=-1)
    return out


def _run(logits: np.ndarray) -> np.ndarray:
    return postprocess.keep_largest_oocyte(logits).numpy()


@pytest.mark.parametrize("seed", range(6))
def test_component_ids_partition_the_mask_as_scipy_does(seed):
    rng = np.random.default_rng(seed)
    batch, h, w = rng.integers(1, 4), rng.integers(1, 70), rng.integers(1, 70)
    mask = rng.random((batch, h, w)) < rng.uniform(0.3, 0.6)
    ids = postprocess.component_ids(mask).numpy()
    assert (ids[~mask] == 0).all()
    seen = set()
    for b in range(batch):
        ref, count = ndimage.label(mask[b], EIGHT)
        pairs = set(zip(ref[mask[b]].tolist(), ids[b][mask[b]].tolist(), strict=True))
        # one id per scipy component and one component per id
        assert len(pairs) == count == len({i for _, i in pairs})
        frame_ids = {i for _, i in pairs}
        assert not frame_ids & seen  # no id shared between frames of the batch
        seen |= frame_ids


def test_stray_oocyte_and_its_serc_become_background_the_rest_is_untouched():
    shape = (97, 131)  # not multiples of the tile
    lab = np.zeros(shape, np.int32)
    lab[_disc(shape, 48, 45, 30)] = labels.OOCYTE
    lab[_disc(shape, 40, 40, 6)] = labels.SERC
    lab[_disc(shape, 20, 110, 9)] = labels.OOCYTE  # a stray patch with an sERC spot
    lab[_disc(shape, 20, 110, 3)] = labels.SERC
    lab[46:50, 60:131] = labels.NEEDLE  # enters the big cell and crosses the frame edge
    logits = _logits(lab)
    out = _run(logits[None])[0]
    stray = _disc(shape, 20, 110, 9) & (lab != labels.NEEDLE)
    expected = np.where(stray, labels.BACKGROUND, lab)
    np.testing.assert_array_equal(out.argmax(-1), expected)
    # only the oocyte and sERC logits of stray pixels change, to the suppressed value
    changed = out != logits
    assert changed[..., [labels.BACKGROUND, labels.NEEDLE]].sum() == 0
    np.testing.assert_array_equal(changed[..., labels.OOCYTE], stray)
    np.testing.assert_array_equal(changed[..., labels.SERC], stray)
    assert (out[changed] == postprocess.SUPPRESSED_LOGIT).all()


def test_a_suppressed_pixel_takes_its_best_remaining_class():
    shape = (64, 64)
    lab = np.zeros(shape, np.int32)
    lab[_disc(shape, 32, 20, 15)] = labels.OOCYTE
    lab[_disc(shape, 32, 54, 5)] = labels.OOCYTE
    second = np.full(shape, labels.NEEDLE)  # needle the runner-up everywhere
    out = _run(_logits(lab, second)[None])[0].argmax(-1)
    assert (out[_disc(shape, 32, 54, 5)] == labels.NEEDLE).all()
    assert (out[_disc(shape, 32, 20, 15)] == labels.OOCYTE).all()


@pytest.mark.parametrize("offset", range(postprocess.BLOCK))
def test_regions_closer_than_a_tile_count_as_one(offset):
    """A 1-pixel gap (a needle cut) joins; a gap of two tiles always separates."""
    shape = (40, 80)
    for gap, joined in ((1, True), (2 * postprocess.BLOCK, False)):
        lab = np.zeros(shape, np.int32)
        left_end = 30 + offset
        lab[10:30, 2:left_end] = labels.OOCYTE  # the larger region
        lab[10:30, left_end + gap:left_end + gap + 10] = labels.OOCYTE
        out = _run(_logits(lab)[None])[0].argmax(-1)
        kept = (out == labels.OOCYTE).sum()
        assert kept == ((lab == labels.OOCYTE).sum() if joined else 20 * (left_end - 2))


def test_frames_of_a_batch_are_decided_each_on_their_own():
    shape = (48, 64)
    big, small, none = (np.zeros(shape, np.int32) for _ in range(3))
    big[_disc(shape, 24, 20, 15)] = labels.OOCYTE
    big[_disc(shape, 10, 55, 4)] = labels.OOCYTE
    small[_disc(shape, 30, 50, 5)] = labels.OOCYTE  # smaller than big's stray patch
    none[5:9, :] = labels.NEEDLE
    out = _run(np.stack([_logits(big), _logits(small), _logits(none)])).argmax(-1)
    np.testing.assert_array_equal(out[0], np.where(_disc(shape, 10, 55, 4), 0, big))
    np.testing.assert_array_equal(out[1], small)
    np.testing.assert_array_equal(out[2], none)
