"""Builds the DeepLabV3+ model of a config (architecture, sync batch norm, ImageNet init)."""

from __future__ import annotations

import keras
import numpy as np
from absl import logging

from sercseg_tf import labels
from sercseg_tf.config import ExperimentConfig
from sercseg_tf.model import deeplab, init
from sercseg_tf.training import precision


def build_model(config: ExperimentConfig, load_init_weights: bool = True) -> keras.Model:
    """Builds `deeplab.build_deeplab` for ``config`` and applies its initialisation.

    Call inside ``strategy.scope()`` when training. With ``config.sync_batchnorm`` every
    BatchNormalization layer computes its training-mode statistics over the *global*
    batch (Keras 3 ``synchronized=True``: an all-reduce of sums across replicas, as
    deeplab2's SyncBatchNormalization), so a global batch of 4 normalises the same way on
    one device or on four; on one replica it is plain batch norm. Every BatchNorm's
    moving-average momentum is ``config.bn_momentum``: with 0.99 the inference-mode
    statistics of a randomly initialised network still lag the training statistics after
    a few hundred steps (the held-out prediction is then all background), so short CPU
    runs use 0.9. The layers compute in ``config.precision`` (`precision.resolve`; the
    weights are float32 in every precision, so any checkpoint loads into any precision).

    Args:
      config: the experiment config (output_stride, aspp_dropout, decoder_separable,
        sync_batchnorm, bn_momentum, init_checkpoint, precision).
      load_init_weights: load ``config.init_checkpoint`` into the backbone (training);
        False when the weights come from a checkpoint anyway (evaluation, export).

    Returns:
      The Keras model (logits at input size).

    Raises:
      FileNotFoundError: ``init_checkpoint`` names a file that does not exist.
    """
    with precision.policy_scope(precision.resolve(config.precision)):
        model = deeplab.build_deeplab(
            num_classes=labels.NUM_CLASSES,
            output_stride=config.output_stride,
            aspp_dropout=config.aspp_dropout,
            decoder_separable=config.decoder_separable,
            bn_momentum=float(config.bn_momentum),
            sync_batchnorm=bool(config.sync_batchnorm),
        )
    if load_init_weights:
        path = config.init_checkpoint_path
        loaded = init.load_imagenet_weights(model, path)
        if path:
            logging.info("ImageNet init: %d layers loaded from %s", loaded, path)
        else:
            logging.info("Random initialisation (init_checkpoint=%r)", config.init_checkpoint)
    return model


def count_params(model: keras.Model) -> dict[str, int]:
    """Trainable / non-trainable (BN statistics) / total weight counts (RNG states left out)."""
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    non_trainable = int(sum(np.prod(v.shape) for v in model.non_trainable_variables
                            if "seed_generator" not in v.path))
    return {"trainable": trainable, "non_trainable": non_trainable,
            "total": trainable + non_trainable}
