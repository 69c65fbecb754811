"""Precise BatchNorm statistics after training (PreciseBN).

During training every BatchNormalization keeps an exponential moving average of its
batch moments, ``moving <- m * moving + (1 - m) * batch``. With a short schedule and a
low momentum (the demo's 0.9 weighs the last ~10 batches) the final averages rest on a
handful of augmented batches and swing from run to run. PreciseBN (Wu & Johnson 2021,
"Rethinking 'Batch' in BatchNorm", section 3) replaces them, with the weights frozen, by
the plain mean over ``K`` training batches::

    mu = 1/K * sum_k mu_k        sigma^2 = 1/K * sum_k sigma_k^2

where ``mu_k``, ``sigma_k^2`` are batch ``k``'s moments (biased variance, as in
training; the mean of the batch variances, as pycls and Detectron2 compute it). Batches
run through ``strategy.run`` in training mode, so synchronized BatchNorm sees the global
batch exactly as in a training step.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from absl import logging


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of ``model`` (nested layers included)."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization)]


def _forward_fn(strategy: tf.distribute.Strategy, model: keras.Model):
    """A tf.function running one training-mode forward pass of the next batch."""

    @tf.function
    def forward(iterator) -> None:
        images, _ = next(iterator)
        strategy.run(lambda x: model(x, training=True), args=(images,))

    return forward


def recompute_statistics(strategy: tf.distribute.Strategy, model: keras.Model,
                         iterator, num_batches: int) -> None:
    """Sets every BatchNormalization's moving mean/variance to its mean batch moments.

    Each layer's momentum is 0 while the ``num_batches`` batches run, so after a batch
    its moving statistics *are* that batch's moments; they are summed and their means
    assigned at the end. Other variables are untouched; on any error (Ctrl-C included)
    the layers get their previous statistics back.

    Args:
      strategy: the strategy the model was built under.
      model: the trained model.
      iterator: the training loop's iterator of ``(images, labels)`` batches
        (`loop._train_iterator`: distributed, or the stream's own on one CPU replica).
      num_batches: ``K`` above, > 0.
    """
    layers = batch_norm_layers(model)
    if not layers or num_batches <= 0:
        return
    momenta = [layer.momentum for layer in layers]
    saved = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in layers]
    sums = [(np.zeros_like(m), np.zeros_like(v)) for m, v in saved]
    for layer in layers:
        layer.momentum = 0.0
    try:
        forward = _forward_fn(strategy, model)  # traced with momentum 0
        for _ in range(num_batches):
            forward(iterator)
            for (sum_m, sum_v), layer in zip(sums, layers, strict=True):
                sum_m += layer.moving_mean.numpy()
                sum_v += layer.moving_variance.numpy()
        new = [(sum_m / num_batches, sum_v / num_batches) for sum_m, sum_v in sums]
    except BaseException:
        new = saved
        raise
    finally:
        for layer, momentum, (mean, variance) in zip(layers, momenta, new, strict=True):
            layer.momentum = momentum
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
    logging.info("PreciseBN: moving statistics of %d BatchNormalization layers set to "
                 "their mean over %d training batches", len(layers), num_batches)
