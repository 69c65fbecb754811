"""Tests of the post-processing (one cell, needle hysteresis) against scipy and drawn shapes."""

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


# --- The needle by hysteresis -------------------------------------------------------------

def _grow_reference(logits: np.ndarray, weight: float) -> np.ndarray:
    """The module's hysteresis rule in NumPy, components by `scipy.ndimage.label`."""
    block = postprocess.BLOCK
    shifted = logits.copy()
    shifted[..., labels.NEEDLE] += np.float32(np.log(weight))
    out = logits.copy()
    for b in range(logits.shape[0]):
        strong = logits[b].argmax(-1) == labels.NEEDLE
        weak = (shifted[b].argmax(-1) == labels.NEEDLE) | strong
        h, w = strong.shape
        th, tw = -(-h // block), -(-w // block)

        def tiles(m, th=th, tw=tw, h=h, w=w):
            return np.pad(m, ((0, th * block - h), (0, tw * block - w))).reshape(
                th, block, tw, block).any(axis=(1, 3))

        comp, _ = ndimage.label(tiles(weak), EIGHT)
        joined_tiles = np.isin(comp, comp[tiles(strong)]) & (comp > 0)
        joined = np.kron(joined_tiles, np.ones((block, block), bool))[:h, :w]
        grown = weak & joined & ~strong
        out[b][grown] = shifted[b][grown]
    return out


@pytest.mark.parametrize("seed", range(4))
def test_grow_needle_matches_a_scipy_reference_on_random_fields(seed):
    rng = np.random.default_rng(seed)
    batch, h, w = rng.integers(1, 3), rng.integers(20, 90), rng.integers(20, 90)
    noise = rng.normal(size=(batch, h, w, labels.NUM_CLASSES))
    logits = ndimage.gaussian_filter(noise, (0, 3, 3, 0)) * 12
    logits[..., labels.NEEDLE] -= 2.0  # the needle rarer than the other classes
    logits = logits.astype(np.float32)
    weight = float(rng.uniform(2, 8))
    out = postprocess.grow_needle(logits, weight).numpy()
    np.testing.assert_array_equal(out, _grow_reference(logits, weight))
    # Not trivial: some pixels grow, and some weak pixels stay out (not joined).
    before, after = logits.argmax(-1), out.argmax(-1)
    shifted = logits.copy()
    shifted[..., labels.NEEDLE] += np.log(weight)
    weak = shifted.argmax(-1) == labels.NEEDLE
    assert ((after == labels.NEEDLE) & (before != labels.NEEDLE)).any()
    assert (weak & (after != labels.NEEDLE)).any()


def _faint_needle(shape=(48, 96)):
    """Logits of a needle found at the frame edge and faint (p_needle = p_best / 3) after it.

    Returns ``(logits, strong, faint, lone)``: the found part, its faint continuation
    and a faint patch far from both.
    """
    lab = np.zeros(shape, np.int32)
    lab[_disc(shape, 24, 35, 22)] = labels.OOCYTE
    logits = _logits(lab)
    strong = np.zeros(shape, bool)
    strong[22:26, 64:] = True  # enters at the right edge
    faint = np.zeros(shape, bool)
    faint[22:26, 30:64] = True  # goes on into the cell
    lone = _disc(shape, 8, 30, 3)  # far from the needle, inside the cell
    logits[strong, labels.NEEDLE] = 10.0
    for m in (faint, lone):
        logits[m, labels.NEEDLE] = logits[m].max(-1) - np.float32(np.log(3.0))
    return logits, strong, faint, lone


@pytest.mark.parametrize("weight, grows", [(1.0, False), (2.0, False), (4.0, True)])
def test_the_faint_needle_joined_to_the_found_one_grows_when_weight_times_p_wins(weight, grows):
    logits, strong, faint, lone = _faint_needle()
    out = postprocess.grow_needle(logits[None], weight).numpy()[0]
    expected = strong | faint if grows else strong
    np.testing.assert_array_equal(out.argmax(-1) == labels.NEEDLE, expected)
    assert (out.argmax(-1)[lone] == labels.OOCYTE).all()  # never far from the needle
    # Only the grown pixels change, and only their needle logit, by log(weight).
    changed = np.any(out != logits, axis=-1)
    np.testing.assert_array_equal(changed, faint if grows else np.zeros_like(faint))
    if grows:
        np.testing.assert_allclose(out[faint, labels.NEEDLE] - logits[faint, labels.NEEDLE],
                                   np.log(weight), rtol=1e-6)


def test_postprocess_logits_keeps_the_largest_cell_then_grows_the_needle():
    logits, strong, faint, _ = _faint_needle()
    stray = _disc(logits.shape[:2], 40, 85, 4)
    logits[stray] = _logits(np.full(logits.shape[:2], labels.OOCYTE))[stray]
    both = postprocess.postprocess_logits(logits[None], True, 4.0)
    expected = postprocess.grow_needle(postprocess.keep_largest_oocyte(logits[None]), 4.0)
    np.testing.assert_array_equal(both.numpy(), expected.numpy())
    out = both.numpy()[0].argmax(-1)
    assert (out[stray] == labels.BACKGROUND).all() and (out[faint] == labels.NEEDLE).all()
    np.testing.assert_array_equal(postprocess.postprocess_logits(logits[None], False, 1.0),
                                  logits[None])
