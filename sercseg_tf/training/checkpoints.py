"""Checkpoints of a fold: `tf.train.Checkpoint` of the Keras 3 model and optimizer.

Keras 3 on the TensorFlow backend: ``tf.train.Checkpoint(model=model)`` does *not*
reliably reach every model variable. Keras 3 layers track their weights for Keras, not
for TF's object graph; the trainable weights end up in a checkpoint only through the
optimizer's variable list, and non-trainable weights of sublayers kept in Python lists
(e.g. the BatchNorm moving statistics inside the ASPP and decoder blocks) are silently
left out (verified with Keras 3.15 / TF 2.21). So the checkpoint here tracks the model
explicitly as ``{variable.path: variable}`` for every weight (`model_variables`), plus
the optimizer (Adam slots and ``optimizer.iterations``, the global step of a run).
A restore then fails loudly if a weight is missing, instead of silently keeping its
initial value, and `restore_or_explain` turns that failure into one line naming the
checkpoint. Before a model is built for a run, its config is checked against the run's
saved ``config.yaml`` (`sercseg_tf.config.check_run_config`).
"""

from __future__ import annotations

import os
import pathlib
import shutil

import keras
import tensorflow as tf
from absl import logging

from sercseg_tf import layout
from sercseg_tf.config import ExperimentConfig, check_run_config
from sercseg_tf.training import modeling


def model_variables(model: keras.Model) -> dict[str, tf.Variable]:
    """Every weight of ``model`` by its unique Keras path (RNG seed states left out).

    Raises:
      ValueError: two weights share a path (the checkpoint would be ambiguous).
    """
    out: dict[str, tf.Variable] = {}
    for v in model.variables:
        if "seed_generator" in v.path:  # dropout RNG state, not a weight
            continue
        if v.path in out:
            raise ValueError(f"model {model.name}: two weights share the path {v.path!r}")
        out[v.path] = v
    return out


def make_checkpoint(model: keras.Model,
                    optimizer: keras.optimizers.Optimizer | None = None) -> tf.train.Checkpoint:
    """``tf.train.Checkpoint`` of all model weights (by path) and, if given, the optimizer.

    A ``LossScaleOptimizer`` (float16 training) is saved as its inner optimizer, so a
    checkpoint has the same structure in every precision and a run can resume in
    another one; the dynamic loss scale is not saved (it restarts at its initial value
    and re-adapts within a few steps).
    """
    if optimizer is None:
        return tf.train.Checkpoint(model=model_variables(model))
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return tf.train.Checkpoint(model=model_variables(model), optimizer=optimizer)


def restore_or_explain(checkpoint: tf.train.Checkpoint, path: str, partial: bool = False
                       ) -> None:
    """Restores ``path`` into ``checkpoint``; a structure mismatch is one clear ValueError.

    Args:
      checkpoint: from `make_checkpoint`.
      path: checkpoint prefix.
      partial: only the model is restored (optimizer slots in the file are skipped).

    Raises:
      ValueError: the checkpoint's weights do not fit the model built from the config
        (another architecture), naming the checkpoint.
    """
    status = checkpoint.restore(path)
    if partial:
        status.expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"{path}: the checkpoint does not fit the model built from the "
                         f"config (another architecture?): {first}") from None


def remove_temp_dirs(ckpt_dir: str | os.PathLike) -> list[pathlib.Path]:
    """Deletes ``ckpt-N_temp/`` folders that a save killed halfway left in ``ckpt_dir``.

    TensorFlow writes a checkpoint's shards into ``<prefix>_temp/`` and merges them into
    ``<prefix>.index`` / ``.data-*`` at the end; a kill in between leaves the folder
    (up to the checkpoint's size) and never a damaged ``ckpt-N`` the manager lists.
    Call only while holding the fold's lock (no save is running).

    Returns:
      The folders removed (each also logged).
    """
    removed = []
    for path in sorted(pathlib.Path(ckpt_dir).glob("*_temp")):
        if path.is_dir():
            shutil.rmtree(path)
            logging.warning("%s: removed (left by an interrupted checkpoint save)", path)
            removed.append(path)
    return removed


def fine_tune_source(path: str | os.PathLike | None) -> str | None:
    """The checkpoint prefix ``init_checkpoint`` names if it is one of this project's.

    A checkpoint of an earlier run (e.g. the synthetic demo model) initialises *every*
    weight of the model, backbone, ASPP, decoder and classifier, so training fine-tunes
    it (on a clinic's own annotated frames, say); only the optimizer starts afresh.
    Accepted: a prefix (``runs/demo/fold_05/checkpoints/ckpt-2``, whose ``.index`` file
    exists), a folder of checkpoints or a fold folder (``runs/demo/fold_05``), whose
    newest checkpoint is taken.

    Args:
      path: the expanded ``init_checkpoint`` (`ExperimentConfig.init_checkpoint_path`);
        None for random initialisation.

    Returns:
      The prefix, or None where ``path`` is not a checkpoint of this project (None, or
      an ImageNet ``.h5`` file or its folder: `sercseg_tf.model.init`).

    Raises:
      FileNotFoundError: ``path`` is a run's fold folder without a checkpoint, or an
        exported SavedModel (which holds no training checkpoint), naming the folder to
        give instead.
    """
    if path is None:
        return None
    path = pathlib.Path(path)
    if pathlib.Path(f"{path}.index").is_file():
        return str(path)
    if not path.is_dir():
        return None
    for folder in (path, path / layout.CHECKPOINTS_SUBDIR):
        newest = tf.train.latest_checkpoint(str(folder))
        if newest is not None:
            return newest
    if (path / layout.SAVED_MODEL_PB).is_file():
        raise FileNotFoundError(
            f"{path}: an exported SavedModel, not a training checkpoint; give the fold "
            f"folder beside it ({path.parent}), whose checkpoints/ it was exported from")
    if (path / layout.CHECKPOINTS_SUBDIR).is_dir() or (path / layout.CONFIG_YAML).is_file():
        raise FileNotFoundError(f"{path}: a run folder with no checkpoint to fine-tune from")
    return None


def latest_checkpoint(model_dir: str | os.PathLike, fold: int) -> str:
    """Path prefix of the newest checkpoint of a fold.

    Raises:
      FileNotFoundError: the fold has no checkpoint yet (train it first).
    """
    directory = layout.checkpoint_dir(model_dir, fold)
    path = tf.train.latest_checkpoint(str(directory))
    if path is None:
        raise FileNotFoundError(
            f"{directory}: no checkpoint; train the fold first "
            f"(python -m sercseg_tf.train --fold={int(fold)} --model_dir={model_dir})"
        )
    return path


def restore_model(config: ExperimentConfig, model_dir: str | os.PathLike, fold: int
                  ) -> tuple[keras.Model, str]:
    """Builds the config's model and restores the fold's latest checkpoint into it.

    Only model variables are read (the optimizer slots are skipped). Used by
    `sercseg_tf.evaluate` and `sercseg_tf.export`.

    Returns:
      ``(model, checkpoint_path)``.

    Raises:
      FileNotFoundError: no checkpoint for the fold.
      ConfigError: ``config`` contradicts the run's saved architecture.
      ValueError: the checkpoint does not fit the model (`restore_or_explain`).
    """
    check_run_config(config, layout.config_path(model_dir, fold))
    path = latest_checkpoint(model_dir, fold)
    model = modeling.build_model(config, load_init_weights=False)
    restore_or_explain(make_checkpoint(model), path, partial=True)
    logging.info("Restored %s", path)
    return model, path
