"""deeplab2-style augmentation of one image/label pair, with stateless random ops.

Follows ``deeplab2/data/preprocessing/input_preprocessing.py``: random scale picked
from ``linspace(min_scale, max_scale, (max - min) / step + 1)`` (uniform in the range
when ``step == 0``), bilinear resize of the image and nearest-neighbour resize of the
label, padding at the bottom/right up to the crop size (image with 0 = the ImageNet
mean after preprocessing, label with the ignore label), a random crop and a random
horizontal flip applied to image and label together.

Beyond deeplab2 (all off unless configured): photometric randomisation of the raw
crop (`Photometric`: brightness, contrast, gamma, hue, saturation, grey-scale, Gaussian
blur, noise, JPEG compression, resampling) and a random aspect-ratio change before the
random scale,
so a model trained on one camera's look also meets other clinics' footage. Photometric
ops never touch the label; the aspect change resizes image and label together.

Every random draw takes an explicit ``seed`` (int32/int64 tensor of shape [2]) and
uses ``tf.random.stateless_*`` ops, so the same seed gives the same result wherever
and in whatever order it runs (tf.data parallel map included). The new ops draw from
``stateless_fold_in(seed, 1)`` (photometric) and ``(seed, 2)`` (aspect), so the
deeplab2 draws are unchanged when they are off.
"""

from __future__ import annotations

import dataclasses
import math

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


@dataclasses.dataclass(frozen=True)
class Photometric:
    """Ranges of the photometric randomisation (0 = that op off).

    Attributes:
      brightness: add delta ~ U(-b, b) (fraction of full scale).
      contrast: scale the deviation from the mean by U(1 - c, 1 + c).
      gamma: x ** g with log g ~ U(-log(1 + gamma), log(1 + gamma)).
      hue: rotate hue by U(-h, h) (fraction of the circle, <= 0.5).
      saturation: scale saturation by U(1 - s, 1 + s).
      grayscale_prob: probability of replacing RGB by its luma in all three channels.
      blur_prob: probability of a Gaussian blur with sigma ~ U(0.2, blur_max_sigma) px.
      blur_max_sigma: largest blur sigma, px.
      noise_max_std: add N(0, std^2) noise, std ~ U(0, noise_max_std) grey levels (0-255).
      jpeg_prob: probability of JPEG compression at quality ~ U{jpeg_min_quality..100}.
      jpeg_min_quality: lowest JPEG quality.
      resample_prob: probability of `resample` (footage stored at a lower resolution and
        enlarged again) with factor ~ U(resample_min_factor, 1).
      resample_min_factor: smallest resampling factor, in (0, 1].
    """

    brightness: float = 0.0
    contrast: float = 0.0
    gamma: float = 0.0
    hue: float = 0.0
    saturation: float = 0.0
    grayscale_prob: float = 0.0
    blur_prob: float = 0.0
    blur_max_sigma: float = 1.5
    noise_max_std: float = 0.0
    jpeg_prob: float = 0.0
    jpeg_min_quality: int = 30
    resample_prob: float = 0.0
    resample_min_factor: float = 0.5

    @property
    def active(self) -> bool:
        """Whether any op is on."""
        return any(
            v > 0
            for v in (self.brightness, self.contrast, self.gamma, self.hue, self.saturation,
                      self.grayscale_prob, self.blur_prob, self.noise_max_std, self.jpeg_prob,
                      self.resample_prob)
        )  # fmt: skip


def gaussian_blur(image: tf.Tensor, sigma: tf.Tensor, max_sigma: float) -> tf.Tensor:
    """Separable Gaussian blur of ``[H, W, C]`` with a traced sigma (reflect padding).

    The kernel has the fixed size 2 ceil(3 max_sigma) + 1 and weights
    exp(-k^2 / (2 sigma^2)), normalised to sum 1.
    """
    radius = max(1, int(math.ceil(3.0 * max_sigma)))
    k = tf.range(-radius, radius + 1, dtype=tf.float32)
    weights = tf.exp(-tf.square(k) / (2.0 * tf.square(tf.cast(sigma, tf.float32))))
    weights = weights / tf.reduce_sum(weights)
    channels = tf.shape(image)[-1]
    x = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], "REFLECT")
    column = tf.tile(tf.reshape(weights, [-1, 1, 1, 1]), [1, 1, channels, 1])
    row = tf.tile(tf.reshape(weights, [1, -1, 1, 1]), [1, 1, channels, 1])
    x = tf.nn.depthwise_conv2d(x, column, [1, 1, 1, 1], "VALID")
    x = tf.nn.depthwise_conv2d(x, row, [1, 1, 1, 1], "VALID")
    return x[0]


def resample(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Shrinks ``[H, W, C]`` by ``factor`` (area-averaging) and enlarges it back (bilinear).

    What footage recorded or stored at a lower resolution looks like once resized to the
    frame size a model is fed: detail finer than ``1 / factor`` pixels, sensor noise
    and codec blocks included, is smoothed away, edges stay where they were.
    """
    size = tf.shape(image)[:2]
    small = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) * factor), tf.int32), 1)
    x = tf.image.resize(image, small, method=tf.image.ResizeMethod.AREA)
    return tf.image.resize(x, size, method=tf.image.ResizeMethod.BILINEAR)


def _maybe(seed: tf.Tensor, probability: float, fn, x: tf.Tensor) -> tf.Tensor:
    """Applies ``fn`` with the given probability (drawn from ``seed``)."""
    if probability <= 0:
        return x
    take = tf.random.stateless_uniform([], seed) < probability
    return tf.cond(take, lambda: fn(x), lambda: x)


def photometric(image: tf.Tensor, seed: tf.Tensor, params: Photometric) -> tf.Tensor:
    """Randomises the look of a float RGB image in [0, 255] (the label is not involved).

    Order: brightness, contrast, gamma, hue, saturation, grey-scale, blur, noise, JPEG,
    resampling (a camera's noise and codec come before a later resize); values are
    clipped to [0, 1] (on the 0-1 scale) after each op. Identity when ``params`` has
    every op off. Resampling draws from ``stateless_fold_in(seed, 1)``, so adding it left
    the other draws unchanged.
    """
    if not params.active:
        return image
    seeds = tf.random.experimental.stateless_split(seed, 12)
    x = tf.clip_by_value(image / 255.0, 0.0, 1.0)
    if params.brightness > 0:
        x = tf.image.stateless_random_brightness(x, params.brightness, seeds[0])
    if params.contrast > 0:
        lo, hi = 1.0 - params.contrast, 1.0 + params.contrast
        x = tf.image.stateless_random_contrast(x, lo, hi, seeds[1])
    x = tf.clip_by_value(x, 0.0, 1.0)
    if params.gamma > 0:
        log_g = math.log(1.0 + params.gamma)
        g = tf.exp(tf.random.stateless_uniform([], seeds[2], -log_g, log_g))
        x = tf.image.adjust_gamma(x, gamma=g)
    if params.hue > 0:
        x = tf.image.stateless_random_hue(x, params.hue, seeds[3])
    if params.saturation > 0:
        lo, hi = 1.0 - params.saturation, 1.0 + params.saturation
        x = tf.image.stateless_random_saturation(x, lo, hi, seeds[4])
    x = _maybe(seeds[5], params.grayscale_prob,
               lambda t: tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(t)), x)  # fmt: skip
    if params.blur_prob > 0:
        sigma = tf.random.stateless_uniform([], seeds[6], 0.2, params.blur_max_sigma)
        x = _maybe(seeds[7], params.blur_prob,
                   lambda t: gaussian_blur(t, sigma, params.blur_max_sigma), x)  # fmt: skip
    if params.noise_max_std > 0:
        std = tf.random.stateless_uniform([], seeds[8], 0.0, params.noise_max_std / 255.0)
        x = x + std * tf.random.stateless_normal(tf.shape(x), seeds[9])
    x = tf.clip_by_value(x, 0.0, 1.0)
    x = _maybe(seeds[10], params.jpeg_prob,
               lambda t: tf.image.stateless_random_jpeg_quality(
                   t, params.jpeg_min_quality, 100, seeds[11]), x)  # fmt: skip
    if params.resample_prob > 0:
        more = tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(seed, 1), 2)
        factor = tf.random.stateless_uniform([], more[0], params.resample_min_factor, 1.0)
        x = _maybe(more[1], params.resample_prob, lambda t: resample(t, factor), x)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def random_aspect(
    image: tf.Tensor, label: tf.Tensor, seed: tf.Tensor, max_change: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """Stretches image and label to a random aspect ratio (resized footage).

    The width/height factor f is log-uniform in [1 / (1 + max_change), 1 + max_change];
    the new size is ``[H / sqrt(f), W sqrt(f)]`` (area kept), the image resized bilinearly
    and the label by nearest neighbour. Identity for ``max_change == 0``.
    """
    if max_change <= 0:
        return image, label
    log_f = math.log(1.0 + max_change)
    half = 0.5 * tf.random.stateless_uniform([], seed, -log_f, log_f)
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    size = tf.maximum(tf.cast(tf.round(hw * tf.stack([tf.exp(-half), tf.exp(half)])), tf.int32), 1)
    return resize_image_and_label(image, label, size)


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
    photometric_params: Photometric | None = None,
    aspect_ratio: float = 0.0,
) -> tuple[tf.Tensor, tf.Tensor]:
    """[Aspect ->] random scale -> pad -> random crop [-> photometric] -> normalise -> flip.

    The photometric ops run on the crop only, the pixels the model is fed (2-3x fewer
    than the scaled frame at the demo's sizes): the padded area is tracked with a
    validity channel and set to 0 (the mean colour) after normalising, as deeplab2's
    normalise-then-pad order leaves it, so with photometric ops off the result is
    deeplab2's exactly.

    Args:
      image: float32 RGB ``[H, W, 3]`` in [0, 255].
      label: uint8 ``[H, W, 1]``.
      seed: int tensor of shape [2]; the whole augmentation is a function of it.
      crop_size: ``(height, width)`` of the output, e.g. (481, 641) = OS·k+1.
      min_scale: smallest random scale.
      max_scale: largest random scale.
      scale_step: spacing of the allowed scales (0 = continuous).
      flip: whether to apply the random horizontal flip.
      normalize: function applied to the crop (0 then marks the padding, i.e. the mean
        colour); identity when None.
      photometric_params: `Photometric` ranges applied to the crop; None = off.
      aspect_ratio: `random_aspect`'s max_change; 0 = off.

    Returns:
      ``(image float32 [crop_h, crop_w, 3], label uint8 [crop_h, crop_w, 1])``.
    """
    crop_h, crop_w = (int(v) for v in crop_size)
    seeds = tf.random.experimental.stateless_split(seed, 3)
    if aspect_ratio > 0:
        image, label = random_aspect(
            image, label, tf.random.experimental.stateless_fold_in(seed, 2), aspect_ratio
        )
    scale = random_scale(seeds[0], min_scale, max_scale, scale_step)
    if not (min_scale == max_scale == 1.0):
        image, label = resize_image_and_label(
            image, label, scaled_size(tf.shape(image)[:2], scale)
        )
    with_valid = tf.concat([image, tf.ones_like(image[..., :1])], axis=-1)
    with_valid, label = pad_to_size(with_valid, label, crop_h, crop_w)
    with_valid, label = random_crop(with_valid, label, crop_h, crop_w, seeds[1])
    image, valid = with_valid[..., :3], with_valid[..., 3:]
    if photometric_params is not None and photometric_params.active:
        image = photometric(image, tf.random.experimental.stateless_fold_in(seed, 1),
                            photometric_params)  # fmt: skip
    if normalize is not None:
        image = normalize(image)
    image = tf.where(valid > 0, image, tf.zeros_like(image))
    if flip:
        image, label = random_flip(image, label, seeds[2])
    image = tf.ensure_shape(image, [crop_h, crop_w, 3])
    label = tf.ensure_shape(label, [crop_h, crop_w, 1])
    return image, label
