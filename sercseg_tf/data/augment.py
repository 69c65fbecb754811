"""deeplab2-style augmentation of one image/label pair, with stateless random ops.

Follows ``deeplab2/data/preprocessing/input_preprocessing.py``: random scale picked
from ``linspace(min_scale, max_scale, (max - min) / step + 1)`` (uniform in the range
when ``step == 0``), bilinear resize of the image and nearest-neighbour resize of the
label, padding at the bottom/right up to the crop size (image with 0 = the ImageNet
mean after preprocessing, label with the ignore label), a random crop and a random
horizontal flip applied to image and label together.

Every random draw takes an explicit ``seed`` (int32/int64 tensor of shape [2]) and
uses ``tf.random.stateless_*`` ops, so the same seed gives the same result wherever
and in whatever order it runs (tf.data parallel map included).
"""

from __future__ import annotations

import tensorflow as tf

from sercseg_tf import labels


def scaled_size(size: tf.Tensor, scale: float | tf.Tensor) -> tf.Tensor:
    """``floor([H, W] * scale)`` as int32 (deeplab2's ``randomly_scale_image_and_label``)."""
    scaled = tf.cast(tf.cast(size, tf.float32) * tf.cast(scale, tf.float32), tf.int32)
    return tf.maximum(scaled, 1)


def resize_image_and_label(
    image: tf.Tensor, label: tf.Tensor, size: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Resizes a float image bilinearly and a label ``[H, W, 1]`` by nearest neighbour."""
    image = tf.image.resize(image, size, method=tf.image.ResizeMethod.BILINEAR)
    label = tf.image.resize(label, size, method=tf.image.ResizeMethod.NEAREST_NEIGHBOR)
    return image, label


def random_scale(
    seed: tf.Tensor, min_scale: float, max_scale: float, scale_step: float
) -> tf.Tensor:
    """Draws a scale factor as deeplab2's ``get_random_scale`` does.

    Returns ``min_scale`` if ``min_scale == max_scale``; a uniform draw from
    ``[min_scale, max_scale)`` if ``scale_step == 0``; otherwise one of the
    ``int((max_scale - min_scale) / scale_step + 1)`` evenly spaced values
    ``linspace(min_scale, max_scale, n)``, each with probability ``1 / n``.
    """
    if min_scale > max_scale:
        raise ValueError(f"min_scale {min_scale} > max_scale {max_scale}")
    if min_scale == max_scale:
        return tf.constant(min_scale, tf.float32)
    if scale_step == 0:
        return tf.random.stateless_uniform([], seed, min_scale, max_scale, tf.float32)
    num_steps = int((max_scale - min_scale) / scale_step + 1)
    factors = tf.linspace(float(min_scale), float(max_scale), num_steps)
    index = tf.random.stateless_uniform([], seed, 0, num_steps, tf.int32)
    return tf.cast(factors[index], tf.float32)


def pad_to_size(
    image: tf.Tensor, label: tf.Tensor, height: int, width: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """Pads bottom/right to at least ``height x width``: image with 0, label with 255."""
    shape = tf.shape(image)
    pad_h = tf.maximum(height - shape[0], 0)
    pad_w = tf.maximum(width - shape[1], 0)
    paddings = [[0, pad_h], [0, pad_w], [0, 0]]
    image = tf.pad(image, paddings, constant_values=0)
    label = tf.pad(label, paddings, constant_values=labels.IGNORE_LABEL)
    return image, label


def random_crop(
    image: tf.Tensor, label: tf.Tensor, height: int, width: int, seed: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Crops the same uniformly placed ``height x width`` window from image and label."""
    shape = tf.shape(image)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    top = tf.random.stateless_uniform([], seeds[0], 0, shape[0] - height + 1, tf.int32)
    left = tf.random.stateless_uniform([], seeds[1], 0, shape[1] - width + 1, tf.int32)
    image = tf.slice(image, [top, left, 0], [height, width, -1])
    label = tf.slice(label, [top, left, 0], [height, width, -1])
    return image, label


def random_flip(
    image: tf.Tensor, label: tf.Tensor, seed: tf.Tensor, probability: float = 0.5
) -> tuple[tf.Tensor, tf.Tensor]:
    """Mirrors image and label left-right together with the given probability."""
    flip = tf.random.stateless_uniform([], seed) < probability
    image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    label = tf.cond(flip, lambda: tf.reverse(label, [1]), lambda: label)
    return image, label


def augment(
    image: tf.Tensor,
    label: tf.Tensor,
    seed: tf.Tensor,
    *,
    crop_size: tuple[int, int],
    min_scale: float,
    max_scale: float,
    scale_step: float,
    flip: bool,
    normalize=None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Random scale -> normalise -> pad -> random crop -> random flip.

    Args:
      image: float32 RGB ``[H, W, 3]`` in [0, 255].
      label: uint8 ``[H, W, 1]``.
      seed: int tensor of shape [2]; the whole augmentation is a function of it.
      crop_size: ``(height, width)`` of the output, e.g. (481, 641) = OS·k+1.
      min_scale: smallest random scale.
      max_scale: largest random scale.
      scale_step: spacing of the allowed scales (0 = continuous).
      flip: whether to apply the random horizontal flip.
      normalize: function applied to the scaled image before padding (so padding
        with 0 is padding with the mean colour); identity when None.

    Returns:
      ``(image float32 [crop_h, crop_w, 3], label uint8 [crop_h, crop_w, 1])``.
    """
    crop_h, crop_w = (int(v) for v in crop_size)
    seeds = tf.random.experimental.stateless_split(seed, 3)
    scale = random_scale(seeds[0], min_scale, max_scale, scale_step)
    if not (min_scale == max_scale == 1.0):
        image, label = resize_image_and_label(
            image, label, scaled_size(tf.shape(image)[:2], scale)
        )
    if normalize is not None:
        image = normalize(image)
    image, label = pad_to_size(image, label, crop_h, crop_w)
    image, label = random_crop(image, label, crop_h, crop_w, seeds[1])
    if flip:
        image, label = random_flip(image, label, seeds[2])
    image = tf.ensure_shape(image, [crop_h, crop_w, 3])
    label = tf.ensure_shape(label, [crop_h, crop_w, 1])
    return image, label
