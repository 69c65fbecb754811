"""Losses (deeplab2's ``model/loss/``): softmax cross-entropy with an ignore label."""

from __future__ import annotations

import tensorflow as tf

from sercseg_tf import labels


def masked_cross_entropy_sums(label: tf.Tensor, logits: tf.Tensor,
                              ignore_label: int = labels.IGNORE_LABEL
                              ) -> tuple[tf.Tensor, tf.Tensor]:
    """Softmax cross-entropy summed over non-ignore pixels, and their count.

    Implements ``S = sum_{i: y_i != ignore} -log softmax(z_i)[y_i]`` and
    ``N = |{i: y_i != ignore}|``; the mean loss is ``S / N``.

    Args:
      label: int ``[B, H, W]`` class ids (``ignore_label`` = excluded).
      logits: float ``[B, H, W, C]``.
      ignore_label: label value excluded from loss and count.

    Returns:
      ``(S, N)`` float32 scalars.
    """
    label = tf.cast(label, tf.int32)
    valid = tf.not_equal(label, ignore_label)
    safe_label = tf.where(valid, label, tf.zeros_like(label))
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=safe_label, logits=tf.cast(logits, tf.float32))
    ce = tf.where(valid, ce, tf.zeros_like(ce))
    return tf.reduce_sum(ce), tf.reduce_sum(tf.cast(valid, tf.float32))
