"""The optimizer of a training run (the paper: Adam at a constant learning rate)."""

from __future__ import annotations

import keras

from sercseg_tf.config import ExperimentConfig

# deeplab2's poly policy (SolverOptions): power 0.9, end learning rate 0.
POLY_POWER = 0.9
POLY_END_LEARNING_RATE = 0.0


def learning_rate(config: ExperimentConfig
                  ) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """``config.learning_rate`` as given, or deeplab2's polynomial decay over the run.

    ``poly``: ``lr(step) = (lr0 - lr_end) * (1 - min(step, T) / T)^0.9 + lr_end`` with
    ``T = num_steps`` and ``lr_end = 0`` (deeplab2 ``learning_policy: 'poly'``). The
    schedule reads ``optimizer.iterations``, so a resumed run continues on the curve.
    """
    if config.lr_schedule == "poly":
        return keras.optimizers.schedules.PolynomialDecay(
            initial_learning_rate=config.learning_rate,
            decay_steps=max(config.num_steps, 1),
            end_learning_rate=POLY_END_LEARNING_RATE,
            power=POLY_POWER,
        )
    return config.learning_rate


def make_optimizer(config: ExperimentConfig, loss_scaling: bool = False
                   ) -> keras.optimizers.Optimizer:
    """Adam (the paper) or SGD with momentum 0.9 at `learning_rate`.

    Args:
      config: gives optimizer, learning_rate, lr_schedule and num_steps.
      loss_scaling: wrap in ``keras.optimizers.LossScaleOptimizer`` (dynamic loss
        scale), needed when the model computes in float16 (`precision.uses_float16`).
        The train step calls ``optimizer.scale_loss`` (identity without scaling).
    """
    lr = learning_rate(config)
    if config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate=lr)
    else:
        optimizer = keras.optimizers.SGD(learning_rate=lr, momentum=0.9)
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
