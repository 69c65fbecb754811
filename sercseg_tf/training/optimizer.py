"""The optimizer of a training run (the paper: Adam at a constant learning rate)."""

from __future__ import annotations

import keras

from sercseg_tf.config import ExperimentConfig


def make_optimizer(config: ExperimentConfig) -> keras.optimizers.Optimizer:
    """Adam (the paper) or SGD with momentum 0.9, constant ``config.learning_rate``."""
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=config.learning_rate)
    return keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=0.9)
