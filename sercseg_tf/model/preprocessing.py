"""Image normalisation matching the ImageNet weights the backbone starts from.

Keras Applications' ResNet-50 weights were trained with the "caffe" convention
(``keras.applications.resnet50.preprocess_input``): channels reversed RGB -> BGR, the
ImageNet per-channel BGR mean subtracted, no scaling to [0, 1] and no division by a
standard deviation. Padding a preprocessed image with 0 is therefore padding with the
ImageNet mean colour.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# ImageNet mean in BGR order, as in keras.applications.imagenet_utils (mode="caffe").
IMAGENET_MEAN_BGR: tuple[float, float, float] = (103.939, 116.779, 123.68)
# The same mean in RGB order: the colour an all-zero preprocessed pixel stands for.
IMAGENET_MEAN_RGB: tuple[float, float, float] = tuple(reversed(IMAGENET_MEAN_BGR))


def preprocess_images(images: tf.Tensor | np.ndarray) -> tf.Tensor:
    """Normalises RGB images for the ImageNet-initialised ResNet-50 ("caffe" mode).

    Implements ``x_bgr = x[..., ::-1] - mean_bgr`` with
    ``mean_bgr = (103.939, 116.779, 123.68)``, identical to
    ``keras.applications.resnet50.preprocess_input`` on channels-last input.

    Args:
      images: RGB images with values in [0, 255], shape ``[..., H, W, 3]``, any real or
        integer dtype (uint8 frames or float crops). TF-graph friendly (usable inside
        ``tf.data`` and ``tf.function``).

    Returns:
      float32 tensor of the same shape, BGR channel order, mean-subtracted.
    """
    x = tf.cast(images, tf.float32)
    x = tf.reverse(x, axis=[-1])
    return x - tf.constant(IMAGENET_MEAN_BGR, dtype=tf.float32)


def denormalize_images(images: tf.Tensor | np.ndarray) -> np.ndarray:
    """Inverts `preprocess_images`: BGR mean-subtracted float -> RGB uint8.

    Implements ``x_rgb = round(clip((x + mean_bgr)[..., ::-1], 0, 255))``.

    Args:
      images: preprocessed images ``[..., H, W, 3]`` (tensor or array).

    Returns:
      uint8 NumPy array of the same shape in RGB order (for overlays and summaries).
    """
    x = np.asarray(images, dtype=np.float32) + np.asarray(IMAGENET_MEAN_BGR, np.float32)
    x = x[..., ::-1]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
