"""One cell per frame: oocyte and sERC regions apart from the largest become background or needle.

An ICSI frame shows the one oocyte being injected; the paper's labels have one oocyte
region with its sERC inside. A model trained on synthetic frames also paints stray
oocyte patches on cumulus cells and debris around real cells (the failure seen on real
footage). The rule, nnU-Net's "keep the largest connected component" post-processing
(Isensee et al., Nature Methods 18, 2021) applied to the cell ``C = oocyte ∪ sERC``::

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
pixels inside the kept tiles. The needle is never touched: it may be seen in pieces.
"""

from __future__ import annotations

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
    pad_h, pad_w = -height % BLOCK, -width % BLOCK
    padded = tf.pad(tf.cast(cell, tf.float32), [[0, 0], [0, pad_h], [0, pad_w]])
    counts = tf.nn.avg_pool2d(padded[..., None], BLOCK, BLOCK, "VALID")[..., 0] * BLOCK**2
    ids = component_ids(counts > 0)
    tiles = tf.shape(ids)[1] * tf.shape(ids)[2]
    sizes = tf.math.unsorted_segment_sum(tf.reshape(counts, [-1]),
                                         tf.reshape(tf.cast(ids, tf.int32), [-1]),
                                         batch * tiles + 1)
    best = tf.argmax(tf.reshape(sizes[1:], [batch, tiles]), axis=1, output_type=tf.int32)
    best_id = tf.cast(best + 1 + tf.range(batch) * tiles, tf.float32)
    keep = tf.equal(ids, best_id[:, None, None])
    keep = tf.repeat(tf.repeat(keep, BLOCK, axis=1), BLOCK, axis=2)[:, :height, :width]
    stray = tf.logical_and(cell, tf.logical_not(keep))
    cell_class = tf.reduce_any(tf.equal(tf.range(tf.shape(logits)[-1])[:, None],
                                        [labels.OOCYTE, labels.SERC]), axis=-1)
    suppress = tf.logical_and(stray[..., None], cell_class)
    return tf.where(suppress, tf.constant(SUPPRESSED_LOGIT, logits.dtype), logits)
