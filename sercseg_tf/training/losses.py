"""Losses (deeplab2's ``model/loss/``): softmax cross-entropy with an ignore label.

Optionally with deeplab2's hard-pixel mining (``top_k_percent``), per-class pixel
weights (``class_weights``; deeplab2 weighs pixels the same way, e.g. its
``small_instance_weight``, and still divides by the pixel count) and per-pixel weights
(``pixel_weights``, e.g. the cell border band of `boundary_weights`), plus a soft Dice term
(`soft_dice_sum`) that scores each image's overlap per class directly, whatever the
class's pixel share.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from sercseg_tf import labels


def selected_pixel_counts(label: tf.Tensor, top_k_percent: float = 1.0,
                          ignore_label: int = labels.IGNORE_LABEL) -> tf.Tensor:
    """Pixels each image contributes to the loss: ``k_b = round(p * n_b)``, ``n_b`` valid.

    With ``p = 1`` every non-ignore pixel counts (``k_b = n_b``); an image with valid
    pixels keeps at least one.

    Args:
      label: int ``[B, H, W]`` class ids.
      top_k_percent: fraction ``p`` in ``(0, 1]`` of each image's valid pixels kept.
      ignore_label: label value excluded from loss and count.

    Returns:
      float32 ``[B]``.
    """
    valid = tf.not_equal(tf.cast(label, tf.int32), ignore_label)
    n = tf.reduce_sum(tf.cast(valid, tf.float32), axis=[1, 2])
    if top_k_percent >= 1.0:
        return n
    return tf.minimum(n, tf.maximum(tf.round(top_k_percent * n), 1.0))


def needle_class_weights(needle_weight: float = 1.0) -> tuple[float, ...] | None:
    """Per-class pixel weights ``w[c]``: 1 for every class but the needle; None if all 1.

    The needle is the thin, rare class (a few hundred of 300k pixels): plain
    cross-entropy lets the model trade its edge pixels for background ones.
    """
    if needle_weight == 1.0:
        return None
    return tuple(needle_weight if c == labels.NEEDLE else 1.0 for c in range(labels.NUM_CLASSES))


def boundary_weights(label: tf.Tensor, weight: float, radius: int) -> tf.Tensor:
    """Pixel weights ``w_i = 1 + (weight - 1) * [i is in the cell border band]``.

    The band holds the pixels whose ``(2 radius + 1)``-square window holds both a cell
    pixel (oocyte or sERC) and a valid pixel of another class (background or needle):
    the cell's border on both sides, ``radius`` pixels deep (a morphological gradient,
    dilation minus erosion, as the border weights of U-Net, Ronneberger, Fischer & Brox
    2015, eq. 2, single out the borders between touching cells). Ignore-label pixels
    count as neither. The band is where a model leaks the oocyte into the zona, the
    perivitelline space or cumulus, and, around the needle inside the ooplasm, where
    it loses the faint needle to the cell.

    Args:
      label: int ``[B, H, W]`` class ids.
      weight: the band's weight (1 = every pixel weighs 1).
      radius: the band's depth on each side of the border, pixels.

    Returns:
      float32 ``[B, H, W]``.
    """
    label = tf.cast(label, tf.int32)
    cell = tf.cast((label == labels.OOCYTE) | (label == labels.SERC), tf.float32)
    other = tf.cast((label != labels.IGNORE_LABEL), tf.float32) * (1.0 - cell)
    size = 2 * int(radius) + 1
    # The square window's maximum as a column then a row maximum: the same values, at
    # 2 size instead of size^2 comparisons per pixel (23 -> 7 ms per demo batch).
    near = tf.nn.max_pool2d(tf.stack([cell, other], axis=-1), (size, 1), 1, "SAME")
    near = tf.nn.max_pool2d(near, (1, size), 1, "SAME")
    band = near[..., 0] * near[..., 1]
    return 1.0 + (float(weight) - 1.0) * band


def masked_cross_entropy_sums(label: tf.Tensor, logits: tf.Tensor,
                              ignore_label: int = labels.IGNORE_LABEL,
                              top_k_percent: float = 1.0,
                              class_weights: Sequence[float] | None = None,
                              pixel_weights: tf.Tensor | None = None,
                              ) -> tuple[tf.Tensor, tf.Tensor]:
    """Weighted softmax cross-entropy summed over the kept pixels, and their count.

    Implements ``S = sum_b sum_{i in K_b} u_i w[y_i] * -log softmax(z_i)[y_i]`` and
    ``N = sum_b k_b``, where ``w`` is ``class_weights`` and ``u`` is ``pixel_weights``
    (all 1 when None) and ``K_b`` is,
    per image, the ``k_b`` valid pixels (`selected_pixel_counts`) of largest weighted
    cross-entropy: all of them for ``top_k_percent = 1`` (plain cross-entropy),
    else the hardest fraction (deeplab2's ``top_k_percent``, from the online hard-pixel
    mining of Wu, Shen & van den Hengel 2016, "Bridging category-level and
    instance-level semantic image segmentation"). The mean loss is ``S / N``.

    Args:
      label: int ``[B, H, W]`` class ids (``ignore_label`` = excluded).
      logits: float ``[B, H, W, C]``.
      ignore_label: label value excluded from loss and count.
      top_k_percent: fraction of each image's valid pixels kept, in ``(0, 1]``.
      class_weights: one non-negative weight per class id, or None (all 1).
      pixel_weights: float ``[B, H, W]`` non-negative weights, or None (all 1).

    Returns:
      ``(S, N)`` float32 scalars.
    """
    if not 0.0 < top_k_percent <= 1.0:
        raise ValueError(f"top_k_percent must be in (0, 1], got {top_k_percent}")
    label = tf.cast(label, tf.int32)
    valid = tf.not_equal(label, ignore_label)
    safe_label = tf.where(valid, label, tf.zeros_like(label))
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=safe_label, logits=tf.cast(logits, tf.float32))
    if class_weights is not None:
        ce = ce * tf.gather(tf.constant(class_weights, tf.float32), safe_label)
    if pixel_weights is not None:
        ce = ce * tf.cast(pixel_weights, tf.float32)
    counts = selected_pixel_counts(label, top_k_percent, ignore_label)
    if top_k_percent >= 1.0:
        return tf.reduce_sum(tf.where(valid, ce, tf.zeros_like(ce))), tf.reduce_sum(counts)
    # Ignored pixels sort below every valid one (cross-entropy >= 0), so each image's
    # first k_b sorted values are its k_b hardest valid pixels.
    flat = tf.reshape(tf.where(valid, ce, -tf.ones_like(ce)), [tf.shape(ce)[0], -1])
    k_max = tf.cast(tf.reduce_max(counts), tf.int32)
    hardest = tf.math.top_k(flat, k=k_max, sorted=True).values
    kept = tf.range(k_max)[None, :] < tf.cast(counts, tf.int32)[:, None]
    return tf.reduce_sum(tf.where(kept, hardest, tf.zeros_like(hardest))), tf.reduce_sum(counts)


def soft_dice_sum(label: tf.Tensor, logits: tf.Tensor,
                  ignore_label: int = labels.IGNORE_LABEL, smooth: float = 1.0) -> tf.Tensor:
    """Soft Dice loss summed over the images of a batch (divide by the global batch size).

    Implements ``sum_b (1/C) sum_c [1 - (2 sum_i p_ic y_ic + s) / (sum_i p_ic +
    sum_i y_ic + s)]`` over each image's valid pixels ``i``, with ``p`` the softmax, ``y``
    the one-hot label and ``s = smooth`` (Milletari, Navab & Ahmadi 2016, "V-Net";
    the per-class mean as in Sudre et al. 2017, "Generalised Dice overlap"). A thin
    class such as the needle weighs as much as the background, so missing half of its
    pixels costs what half of the oocyte would. Per image, so the sum over replicas
    divided by the global batch size is the same on any number of replicas.

    Args:
      label: int ``[B, H, W]`` class ids (``ignore_label`` = excluded).
      logits: float ``[B, H, W, C]``.
      ignore_label: label value excluded.
      smooth: ``s``; an absent class predicted absent scores 0 loss.

    Returns:
      float32 scalar: the sum over the batch of each image's mean-over-classes loss.
    """
    label = tf.cast(label, tf.int32)
    valid = tf.cast(tf.not_equal(label, ignore_label), tf.float32)[..., None]
    num_classes = logits.shape[-1]
    probs = tf.nn.softmax(tf.cast(logits, tf.float32)) * valid
    onehot = tf.one_hot(tf.where(valid[..., 0] > 0, label, 0), num_classes) * valid
    overlap = tf.reduce_sum(probs * onehot, axis=[1, 2])
    total = tf.reduce_sum(probs, axis=[1, 2]) + tf.reduce_sum(onehot, axis=[1, 2])
    dice = (2.0 * overlap + smooth) / (total + smooth)
    return tf.reduce_sum(tf.reduce_mean(1.0 - dice, axis=-1))
