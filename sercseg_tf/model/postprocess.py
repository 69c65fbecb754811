"""Post-processing of the class decision: one cell per frame, and the needle grown by hysteresis.

Both rules act on the logits of whole frames (`postprocess_logits` applies them in this
order), in evaluation and inside the exported SavedModel.

**One cell** (`keep_largest_oocyte`). An ICSI frame shows the one oocyte being
injected; the paper's labels have one oocyte region with its sERC inside. A model
trained on synthetic frames also paints stray oocyte patches on cumulus cells and
debris around real cells (the failure seen on real footage). The rule, nnU-Net's "keep
the largest connected component" post-processing (Isensee et al., Nature Methods 18,
2021) applied to the cell ``C = oocyte ∪ sERC``::

    pred      = argmax(logits)
    C         = {pred ∈ {oocyte, sERC}}
    blocks    = BLOCK x BLOCK tiles of the frame holding a pixel of C
    K_1..K_n  = 8-connected components of the blocks       (`component_ids`)
    K*        = argmax_k |C ∩ K_k|                          (most cell pixels)
    logits'   = logits with the oocyte and sERC logits of C - K* set to -1e9

so ``argmax(logits')`` labels those pixels background or needle (whichever scored
higher) and ``softmax(logits')`` gives them no oocyte or sERC probability. Components
are found on tiles so that two regions less than one tile apart count as one (a
needle can cut a thin gap through the cell); the pixels kept are exactly the cell
pixels inside the kept tiles.

**The needle by hysteresis** (`grow_needle`). On frames unlike its training frames the
model under-segments the needle: inside the ooplasm, where the real needle is two faint
lines, it gives the missed needle pixels p(needle) of a few per cent, against < 1e-4 on
ooplasm away from the needle. Canny's hysteresis (IEEE PAMI 8, 1986), with the weak
decision a prior shift of the needle class by a factor ``w`` (Saerens et al., Neural
Computation 14, 2002: ``q ∝ p`` with ``q_needle ∝ w p_needle``)::

    strong  = {argmax(logits) = needle}
    weak    = {argmax(logits + log(w) e_needle) = needle}     ⊇ strong
    K_1..K_n = 8-connected components of the BLOCK tiles holding a weak pixel
    grown   = weak pixels in a component that holds a strong pixel, minus strong
    logits' = logits + log(w) e_needle on grown, logits elsewhere

so a needle pixel needs ``w p_needle > p_k`` for every other class ``k`` *and* a chain
of such pixels to the needle the model found; nothing is added far from it, and only
the grown pixels' probabilities change (to the shifted ones).
"""

from __future__ import annotations

import math

import tensorflow as tf

from sercseg_tf import labels

# Tile side in pixels of the frame's label map: regions less than this apart are joined.
BLOCK = 4
# The logit given to a suppressed class (its softmax probability is 0 to float32).
SUPPRESSED_LOGIT = -1e9
# float32 holds integers exactly up to 2^24: the largest tile grid (batch included).
_MAX_TILES = 2**24


def component_ids(mask: tf.Tensor) -> tf.Tensor:
    """8-connected components of a boolean ``[B, h, w]`` mask, each frame on its own.

    Every pixel of the mask starts with its own id, ``1 + `` its flat index over the
    whole batch; repeatedly each takes the maximum id of its 3x3 neighbourhood on the
    mask, then the id that the pixel named by its id holds (pointer jumping: that
    pixel lies in the same component and holds an id at least as large), until nothing
    changes. Every component ends with the id of its last pixel.

    Args:
      mask: bool ``[B, h, w]``, ``B*h*w < 2^24``.

    Returns:
      float32 ``[B, h, w]``: the component's id on the mask (exact integers), 0 off it.
    """
    shape = tf.shape(mask)
    size = tf.reduce_prod(shape)
    tf.debugging.assert_less(size, _MAX_TILES, message="component_ids: mask too large")
    on = tf.cast(mask, tf.float32)
    ids = tf.reshape(tf.range(1, size + 1, dtype=tf.int32), shape)
    ids = tf.cast(ids, tf.float32) * on

    def grow(current):
        grown = tf.nn.max_pool2d(current[..., None], 3, 1, "SAME")[..., 0] * on
        flat = tf.reshape(grown, [-1])
        pointed = tf.gather(flat, tf.maximum(tf.cast(flat, tf.int32) - 1, 0))
        return tf.maximum(grown, tf.reshape(pointed, shape) * on)

    def body(current, _):
        new = grow(current)
        return new, tf.reduce_any(tf.not_equal(new, current))

    ids, _ = tf.while_loop(lambda _, changed: changed, body, (ids, tf.constant(True)))
    return ids


def keep_largest_oocyte(logits: tf.Tensor) -> tf.Tensor:
    """Suppresses oocyte and sERC outside the frame's largest cell region (module rule).

    Args:
      logits: float32 ``[B, H, W, num_classes]`` (logits or log-probabilities).

    Returns:
      the logits with the oocyte and sERC entries of stray cell pixels set to
      `SUPPRESSED_LOGIT`; every other entry unchanged.
    """
    pred = tf.argmax(logits, axis=-1, output_type=tf.int32)
    cell = tf.logical_or(tf.equal(pred, labels.OOCYTE), tf.equal(pred, labels.SERC))
    shape = tf.shape(pred)
    batch, height, width = shape[0], shape[1], shape[2]
    counts = _tiles(cell)
    ids = component_ids(counts > 0)
    tiles = tf.shape(ids)[1] * tf.shape(ids)[2]
    sizes = _per_component(tf.math.unsorted_segment_sum, counts, ids)
    best = tf.argmax(tf.reshape(sizes[1:], [batch, tiles]), axis=1, output_type=tf.int32)
    best_id = tf.cast(best + 1 + tf.range(batch) * tiles, tf.float32)
    keep = tf.equal(ids, best_id[:, None, None])
    keep = _pixels(keep, height, width)
    stray = tf.logical_and(cell, tf.logical_not(keep))
    cell_class = tf.reduce_any(tf.equal(tf.range(tf.shape(logits)[-1])[:, None],
                                        [labels.OOCYTE, labels.SERC]), axis=-1)
    suppress = tf.logical_and(stray[..., None], cell_class)
    return tf.where(suppress, tf.constant(SUPPRESSED_LOGIT, logits.dtype), logits)


def grow_needle(logits: tf.Tensor, weight: float) -> tf.Tensor:
    """Grows the predicted needle into weakly needle-like pixels joined to it (module rule).

    Args:
      logits: float32 ``[B, H, W, num_classes]`` (logits or log-probabilities).
      weight: the needle's prior factor ``w`` of the weak decision; 1 changes nothing.

    Returns:
      the logits with ``log(w)`` added to the needle logit of the grown pixels; every
      other entry unchanged.
    """
    logits = tf.convert_to_tensor(logits)
    if weight == 1.0:
        return logits
    num_classes = tf.shape(logits)[-1]
    shift = tf.cast(math.log(weight), logits.dtype) * tf.one_hot(labels.NEEDLE, num_classes,
                                                                dtype=logits.dtype)
    shifted = logits + shift
    strong = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels.NEEDLE)
    # Raising the needle logit keeps every strong pixel's argmax: weak ⊇ strong.
    weak = tf.equal(tf.argmax(shifted, axis=-1, output_type=tf.int32), labels.NEEDLE)
    ids = tf.cast(component_ids(_tiles(weak) > 0), tf.int32)
    touches = _per_component(tf.math.unsorted_segment_max, _tiles(strong), ids)
    joined = tf.logical_and(tf.gather(touches, ids) > 0, ids > 0)
    joined = _pixels(joined, tf.shape(strong)[1], tf.shape(strong)[2])
    grown = tf.logical_and(tf.logical_and(weak, joined), tf.logical_not(strong))
    return tf.where(grown[..., None], shifted, logits)


def _per_component(segment_reduce, tile_values: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
    """``segment_reduce`` (a ``tf.math.unsorted_segment_*``) of tile values per component.

    Index ``k`` of the result reduces the tiles whose id in ``ids`` (`component_ids`) is
    ``k``; index 0 the tiles off the mask.
    """
    flat_ids = tf.reshape(tf.cast(ids, tf.int32), [-1])
    return segment_reduce(tf.reshape(tile_values, [-1]), flat_ids, tf.size(flat_ids) + 1)


def _tiles(mask: tf.Tensor) -> tf.Tensor:
    """Pixel count of a boolean ``[B, H, W]`` mask in each BLOCK x BLOCK tile (zero-padded)."""
    shape = tf.shape(mask)
    pad_h, pad_w = -shape[1] % BLOCK, -shape[2] % BLOCK
    padded = tf.pad(tf.cast(mask, tf.float32), [[0, 0], [0, pad_h], [0, pad_w]])
    return tf.nn.avg_pool2d(padded[..., None], BLOCK, BLOCK, "VALID")[..., 0] * BLOCK**2


def _pixels(tile_mask: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """A ``[B, h, w]`` tile mask spread over its BLOCK x BLOCK pixels, cropped to the frame."""
    pixels = tf.repeat(tf.repeat(tile_mask, BLOCK, axis=1), BLOCK, axis=2)
    return pixels[:, :height, :width]


def postprocess_logits(logits: tf.Tensor, keep_largest: bool,
                       needle_weight: float) -> tf.Tensor:
    """Applies the module's rules in order: `keep_largest_oocyte`, then `grow_needle`.

    Args:
      logits: float32 ``[B, H, W, num_classes]``.
      keep_largest: apply `keep_largest_oocyte` (config ``keep_largest_oocyte``).
      needle_weight: `grow_needle`'s ``w`` (config ``needle_hysteresis_weight``; 1 = off).
    """
    if keep_largest:
        logits = keep_largest_oocyte(logits)
    return grow_needle(logits, needle_weight)
