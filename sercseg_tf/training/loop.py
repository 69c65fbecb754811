"""The custom training loop of one leave-one-case-out fold.

One step (`make_train_step`), run by ``strategy.run`` on every replica::

    n_global = all_reduce_sum(#valid pixels of the replica's slice)
    loss_r   = sum_{valid pixels i of replica r} CE(logits_i, y_i) / n_global
    grads_r  = d loss_r / d theta          (tf.GradientTape, BatchNorm in train mode)
    optimizer.apply_gradients(...)         (Keras 3 all-reduces grads_r with SUM)

so the applied gradient is that of ``sum_i CE_i / n_global`` over the *global* batch:
the same global batch gives the same loss and update with 1, 2 or N replicas (the
test runs MirroredStrategy over two logical CPUs against one device). Pixels with the
ignore label (255) are excluded from the sum and the count.

`train_fold` adds the bookkeeping: `tf.train.CheckpointManager` (resume from the latest
checkpoint at the right step; a checkpoint every ``save_checkpoints_steps`` steps, at
the end and on Ctrl-C), TensorBoard summaries, history CSVs, progress logging and
periodic evaluation on the held-out case.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from sercseg_tf import formats, labels, layout
from sercseg_tf.config import ExperimentConfig, save_config
from sercseg_tf.training.losses import masked_cross_entropy_sums

TRAIN_HISTORY_COLUMNS = ("step", "loss")
EVAL_HISTORY_COLUMNS = ("step", "loss", "iou_oocyte", "iou_serc", "iou_needle", "miou")


def make_train_step(strategy: tf.distribute.Strategy, model: keras.Model,
                    optimizer: keras.optimizers.Optimizer):
    """Returns ``step(iterator) -> global loss``, one optimisation step (tf.function).

    ``iterator`` yields ``(images, labels)`` of a dataset distributed with
    ``strategy.experimental_distribute_dataset``; the loss returned is
    ``S_global / N_global`` (see the module docstring).
    """

    def replica_step(images: tf.Tensor, label: tf.Tensor) -> tf.Tensor:
        local_count = tf.reduce_sum(tf.cast(tf.not_equal(label, labels.IGNORE_LABEL),
                                            tf.float32))
        ctx = tf.distribute.get_replica_context()
        global_count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local_count)
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            ce_sum, _ = masked_cross_entropy_sums(label, logits)
            loss = ce_sum / tf.maximum(global_count, 1.0)
        variables = model.trainable_variables
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    @tf.function
    def step(iterator):
        images, label = next(iterator)
        per_replica = strategy.run(replica_step, args=(images, label))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return step


def _on_step_end(step: int) -> None:
    """Called after every completed step; a no-op (tests inject a Ctrl-C here)."""
    del step


def _learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def _format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train_fold(config: ExperimentConfig, tfrecord_dir: str | os.PathLike,
               model_dir: str | os.PathLike, fold: int,
               strategy: str | tf.distribute.Strategy = "auto") -> dict[str, Any]:
    """Trains (or resumes) fold ``fold`` to ``config.num_steps``; see `sercseg_tf.train`.

    Returns:
      Summary dict: fold, held_out, train_cases, start_step, final_step, final_loss,
      steps_per_sec, images_per_sec, train_seconds, checkpoint, num_params, strategy,
      num_replicas and (if run) the last evaluation (eval_loss, iou_* and miou).

    Raises:
      KeyboardInterrupt: after saving a checkpoint at the current step.
      FloatingPointError: the loss became NaN/inf (no checkpoint is written then).
    """
    from sercseg_tf.data import dataset as dataset_lib
    from sercseg_tf.data import tfrecord
    from sercseg_tf.training import checkpoints, distribute, evaluator, modeling, summaries
    from sercseg_tf.training.summaries import HistoryCsv

    if isinstance(strategy, str):
        strategy_name = strategy
        strategy = distribute.create_strategy(strategy)
    else:
        strategy_name = type(strategy).__name__
    chief = distribute.is_chief(strategy)
    keras.utils.set_random_seed(config.seed)

    train_cases, held_out = dataset_lib.fold_cases(tfrecord_dir, fold)
    if not train_cases:
        raise ValueError(f"{tfrecord_dir}: fold {fold} leaves no case to train on")
    ckpt_dir = layout.checkpoint_dir(model_dir, fold)
    if not chief:  # MultiWorkerMirrored: other workers save to a throw-away folder.
        ckpt_dir = ckpt_dir / f"worker_tmp_{strategy.cluster_resolver.task_id}"

    with strategy.scope():
        model = modeling.build_model(config)
        optimizer = checkpoints.make_optimizer(config)
        optimizer.build(model.trainable_variables)
    ckpt = checkpoints.make_checkpoint(model, optimizer)
    manager = tf.train.CheckpointManager(ckpt, str(ckpt_dir),
                                         max_to_keep=config.keep_checkpoint_max)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logging.info("Resuming from %s", manager.latest_checkpoint)
    start_step = int(optimizer.iterations.numpy())
    num_params = modeling.count_params(model)
    logging.info("Fold %d: train cases %s, held-out case %d, %d replica(s) (%s), "
                 "%d parameters, steps %d -> %d", fold, train_cases, held_out,
                 strategy.num_replicas_in_sync, strategy_name, num_params["total"],
                 start_step, config.num_steps)

    # Input: a resumed run reseeds the stream so it does not replay the first batches.
    train_ds = dataset_lib.build_dataset(
        [tfrecord.case_file_pattern(tfrecord_dir, c) for c in train_cases],
        is_training=True, batch_size=config.batch_size, crop_size=config.crop_size,
        image_scale=config.image_scale, min_scale=config.min_scale,
        max_scale=config.max_scale, scale_step=config.scale_step, flip=config.flip,
        seed=config.seed + start_step, shuffle_buffer=config.shuffle_buffer)
    train_ds = train_ds.map(lambda s: (s[formats.SAMPLE_IMAGE], s[formats.SAMPLE_LABEL]))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_ds = train_ds.with_options(options)
    iterator = iter(strategy.experimental_distribute_dataset(train_ds))
    train_step = make_train_step(strategy, model, optimizer)

    if chief:
        save_config(config, layout.config_path(model_dir, fold))
        train_writer = tf.summary.create_file_writer(str(layout.train_dir(model_dir, fold)))
        eval_writer = tf.summary.create_file_writer(str(layout.eval_dir(model_dir, fold)))
        train_history = HistoryCsv(layout.train_dir(model_dir, fold) / layout.HISTORY_CSV,
                                   TRAIN_HISTORY_COLUMNS, resume_step=start_step)
        eval_history = HistoryCsv(layout.eval_dir(model_dir, fold) / layout.HISTORY_CSV,
                                  EVAL_HISTORY_COLUMNS, resume_step=start_step)
    else:
        train_writer = eval_writer = tf.summary.create_noop_writer()
        train_history = eval_history = None

    eval_ds = evaluator.heldout_dataset(tfrecord_dir, held_out, config.eval_max_images)
    predict_step = evaluator.make_predict_step(model, config)
    last_eval: dict[str, float] = {}

    def run_eval(step: int) -> None:
        if not chief:
            return
        t0 = time.perf_counter()
        result = evaluator.evaluate_heldout(model, config, eval_ds,
                                          num_panels=config.num_summary_images,
                                          predict_step=predict_step)
        means = result.class_means()
        values = {"loss": result.loss, **{f"iou_{k}": v for k, v in means.items()
                                           if k != "miou"}, "miou": means["miou"]}
        with eval_writer.as_default():
            for key, value in values.items():
                summaries.write_scalar(f"eval/{key}", value, step)
            if result.panels:
                summaries.write_images("eval/overlays", np.stack(result.panels), step,
                                       description="input | ground truth | prediction")
        eval_writer.flush()
        eval_history.write({"step": step, **values})
        eval_history.flush()
        last_eval.clear()
        last_eval.update({"eval_loss": values["loss"],
                          **{k: v for k, v in values.items() if k != "loss"}})
        logging.info("eval step %d (%d frames, %.1fs): loss %.4f  IoU oocyte %.3f  sERC %.3f"
                     "  needle %.3f  mean %.3f", step, len(result.rows),
                     time.perf_counter() - t0, values["loss"], values["iou_oocyte"],
                     values["iou_serc"], values["iou_needle"], values["miou"])

    def save(step: int) -> str:
        path = manager.save(checkpoint_number=step)
        if train_history is not None:
            train_history.flush()
        return path

    step = start_step
    loss = math.nan
    window_loss, window_steps = 0.0, 0
    timed_steps, timed_seconds = 0, 0.0
    t_window = time.perf_counter()
    t_start = time.perf_counter()
    last_saved = start_step if manager.latest_checkpoint else -1
    try:
        while step < config.num_steps:
            t_step = time.perf_counter()
            loss = float(train_step(iterator))
            step = int(optimizer.iterations.numpy())
            if not math.isfinite(loss):
                raise FloatingPointError(f"fold {fold}: loss is {loss} at step {step}")
            if step > start_step + 1:  # the first step includes tracing: not timed.
                timed_steps += 1
                timed_seconds += time.perf_counter() - t_step
            window_loss += loss
            window_steps += 1
            if train_history is not None:
                train_history.write({"step": step, "loss": loss})
            with train_writer.as_default():
                summaries.write_scalar("train/loss", loss, step)
            if step % config.log_every_steps == 0 or step == config.num_steps:
                elapsed = time.perf_counter() - t_window
                steps_per_sec = window_steps / elapsed if elapsed > 0 else math.nan
                rate = timed_steps / timed_seconds if timed_seconds > 0 else steps_per_sec
                with train_writer.as_default():
                    summaries.write_scalar("train/learning_rate", _learning_rate(optimizer),
                                           step)
                    summaries.write_scalar("train/steps_per_sec", steps_per_sec, step)
                train_writer.flush()
                if train_history is not None:
                    train_history.flush()
                logging.info("step %d/%d  loss %.4f  %.2f images/s  ETA %s", step,
                             config.num_steps, window_loss / window_steps,
                             steps_per_sec * config.batch_size,
                             _format_eta((config.num_steps - step) / rate))
                window_loss, window_steps = 0.0, 0
                t_window = time.perf_counter()
            if step % config.save_checkpoints_steps == 0:
                save(step)
                last_saved = step
            if (config.eval_every_steps and step % config.eval_every_steps == 0
                    and step < config.num_steps):
                run_eval(step)
                t_window = time.perf_counter()
                window_loss, window_steps = 0.0, 0
            _on_step_end(step)
        if last_saved != step:
            save(step)
            last_saved = step
        if step > start_step or not last_eval:
            run_eval(step)
    except KeyboardInterrupt:
        step = int(optimizer.iterations.numpy())
        path = manager.latest_checkpoint if last_saved == step else save(step)
        logging.warning("Interrupted: checkpoint saved at step %d (%s); run the same "
                        "command again to resume", step, path)
        raise
    finally:
        for history in (train_history, eval_history):
            if history is not None:
                history.close()
        train_writer.close()
        eval_writer.close()
        if not chief:
            shutil.rmtree(ckpt_dir, ignore_errors=True)

    train_seconds = time.perf_counter() - t_start
    rate = timed_steps / timed_seconds if timed_seconds > 0 else math.nan
    return {
        "fold": int(fold),
        "held_out": held_out,
        "train_cases": train_cases,
        "start_step": start_step,
        "final_step": step,
        "final_loss": loss,
        "steps_per_sec": rate,
        "images_per_sec": rate * config.batch_size,
        "train_seconds": train_seconds,
        "checkpoint": manager.latest_checkpoint,
        "num_params": num_params["total"],
        "strategy": strategy_name,
        "num_replicas": strategy.num_replicas_in_sync,
        **last_eval,
    }
