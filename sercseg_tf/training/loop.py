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

After the last step, with ``bn_recompute_batches > 0``, the BatchNorm moving statistics
are replaced by their mean over that many training batches (`precise_bn`).

`train_fold` adds the bookkeeping: `tf.train.CheckpointManager` (resume from the latest
checkpoint at the right step; a checkpoint every ``save_checkpoints_steps`` steps, at
the end and on Ctrl-C), TensorBoard summaries, history CSVs, progress logging and
periodic evaluation on the held-out case. It is split into `_setup` (a `_FoldRun`),
`_train_one_step`, `_log_progress`, `_run_eval`, `_save` and `_close`.

Faults: the chief holds the fold's lock (`sercseg_tf.run_lock`) for the whole run and,
under it, deletes ``ckpt-N_temp/`` folders a killed save left behind. Ctrl-C / SIGTERM
during a save are held back until the checkpoint is complete (`cli.deferred_interrupts`).
With several workers only the chief writes into the run folder: every worker restores
from the chief's checkpoints, and the others save (as MultiWorkerMirroredStrategy
requires of every worker) into a temporary folder outside it, deleted at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from sercseg_tf import atomic_io, cli, formats, layout, run_lock
from sercseg_tf.config import ExperimentConfig, check_run_config, save_config
from sercseg_tf.data import dataset as dataset_lib
from sercseg_tf.data import tfrecord
from sercseg_tf.fault_points import fault_point
from sercseg_tf.training import (
    checkpoints,
    distribute,
    evaluator,
    modeling,
    precise_bn,
    precision,
    summaries,
)
from sercseg_tf.training.losses import (
    boundary_weights,
    masked_cross_entropy_sums,
    needle_class_weights,
    selected_pixel_counts,
    soft_dice_sum,
)
from sercseg_tf.training.optimizer import make_optimizer
from sercseg_tf.training.summaries import HistoryCsv

TRAIN_HISTORY_COLUMNS = ("step", "loss")
EVAL_HISTORY_COLUMNS = ("step", "loss", "iou_oocyte", "iou_serc", "iou_needle", "miou")


def make_train_step(strategy: tf.distribute.Strategy, model: keras.Model,
                    optimizer: keras.optimizers.Optimizer, top_k_percent: float = 1.0,
                    class_weights: Sequence[float] | None = None, dice_weight: float = 0.0,
                    boundary: tuple[float, int] = (1.0, 0)):
    """Returns ``step(iterator) -> global loss``, one optimisation step (tf.function).

    ``iterator`` yields ``(images, labels)`` batches (`_train_iterator`: distributed
    with ``strategy.experimental_distribute_dataset``, or plain on one CPU replica); the
    loss returned is ``S_global / N_global`` (see the module docstring). With
    ``top_k_percent < 1`` only each image's hardest pixels count
    (`losses.masked_cross_entropy_sums`); the selection is per image, so the step is
    still the same on any number of replicas. ``class_weights`` (one per class id)
    multiply each pixel's cross-entropy, and so do the cell border band's weights
    (`losses.boundary_weights`) for ``boundary = (weight, radius)`` with a weight other
    than 1. With ``dice_weight`` ``w > 0`` the loss is
    ``S/N + w * D_global / B_global``, ``D`` the per-image soft Dice sum
    (`losses.soft_dice_sum`) and ``B`` the batch size.
    """

    def replica_step(images: tf.Tensor, label: tf.Tensor) -> tf.Tensor:
        local_count = tf.reduce_sum(selected_pixel_counts(label, top_k_percent))
        ctx = tf.distribute.get_replica_context()
        global_count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local_count)
        # Reduced even without the Dice term: the same collectives in the same order in
        # every step function (a conditional one broke the two-replica test with a
        # collective shape mismatch).
        global_batch = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                                      tf.cast(tf.shape(label)[0], tf.float32))
        band = boundary_weights(label, *boundary) if boundary[0] != 1.0 else None
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            ce_sum, _ = masked_cross_entropy_sums(label, logits, top_k_percent=top_k_percent,
                                                  class_weights=class_weights,
                                                  pixel_weights=band)
            loss = ce_sum / tf.maximum(global_count, 1.0)
            if dice_weight:
                loss += dice_weight * soft_dice_sum(label, logits) / global_batch
            scaled_loss = optimizer.scale_loss(loss)  # loss scaling (float16); else identity
        variables = model.trainable_variables
        grads = tape.gradient(scaled_loss, variables)
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


@dataclasses.dataclass
class _Progress:
    """Step counters and timers of a run; the first step (tracing) is not timed."""

    step: int
    loss: float = math.nan
    window_loss: float = 0.0  # summed since the last progress line
    window_steps: int = 0
    timed_steps: int = 0
    timed_seconds: float = 0.0
    t_window: float = dataclasses.field(default_factory=time.perf_counter)
    t_start: float = dataclasses.field(default_factory=time.perf_counter)

    def restart_window(self) -> None:
        """Starts a new logging window (after a progress line or an evaluation)."""
        self.window_loss, self.window_steps = 0.0, 0
        self.t_window = time.perf_counter()

    def timed_rate(self) -> float:
        """Steps per second over the timed steps (NaN before any)."""
        return self.timed_steps / self.timed_seconds if self.timed_seconds > 0 else math.nan


@dataclasses.dataclass
class _FoldRun:
    """Everything one fold's training holds between steps; built by `_setup`."""

    config: ExperimentConfig
    fold: int
    strategy: tf.distribute.Strategy
    strategy_name: str
    chief: bool
    train_cases: list[int]
    held_out: int | None  # None: fold 0 trains on every case, nothing is evaluated
    ckpt_dir: pathlib.Path
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    manager: tf.train.CheckpointManager
    start_step: int
    num_params: int
    iterator: Any
    train_step: Callable[[Any], tf.Tensor]
    train_writer: Any  # tf.summary writers (no-op writers on non-chief workers)
    eval_writer: Any
    train_history: HistoryCsv | None
    eval_history: HistoryCsv | None
    eval_ds: tf.data.Dataset | None
    predict_step: Callable
    last_saved: int  # step of the newest checkpoint, -1 for none
    progress: _Progress
    last_eval: dict[str, float] = dataclasses.field(default_factory=dict)


def _resolve_strategy(strategy: str | tf.distribute.Strategy
                      ) -> tuple[tf.distribute.Strategy, str]:
    """Returns ``(strategy, its name)`` for a strategy name or instance."""
    if isinstance(strategy, str):
        return distribute.create_strategy(strategy), strategy
    return strategy, type(strategy).__name__


def _build_and_restore(config: ExperimentConfig, strategy: tf.distribute.Strategy,
                       ckpt_dir: pathlib.Path, restore_dir: pathlib.Path
                       ) -> tuple[keras.Model, keras.optimizers.Optimizer,
                                  tf.train.CheckpointManager, bool]:
    """Builds model and optimizer under ``strategy`` and restores the newest checkpoint.

    A fresh run whose ``init_checkpoint`` is a checkpoint of this project starts from
    every weight of that model (`checkpoints.fine_tune_source`); a resumed run from its
    own checkpoint, whatever ``init_checkpoint`` says.

    Args:
      config: the run's config (model and optimizer settings).
      strategy: the distribution strategy whose scope holds the variables.
      ckpt_dir: where this worker saves (its CheckpointManager's folder).
      restore_dir: the chief's checkpoint folder, which every worker resumes from.

    Returns:
      ``(model, optimizer, manager, restored)``; ``optimizer.iterations`` is the step
      to resume at.
    """
    fine_tune = checkpoints.fine_tune_source(config.init_checkpoint_path)
    with strategy.scope():
        model = modeling.build_model(config, load_init_weights=fine_tune is None)
        optimizer = make_optimizer(config, loss_scaling=precision.uses_float16(model))
        optimizer.build(model.trainable_variables)
    ckpt = checkpoints.make_checkpoint(model, optimizer)
    manager = tf.train.CheckpointManager(ckpt, str(ckpt_dir),
                                         max_to_keep=config.keep_checkpoint_max)
    latest = tf.train.latest_checkpoint(str(restore_dir))
    if latest:
        checkpoints.restore_or_explain(ckpt, latest)
        logging.info("Resuming from %s", latest)
    elif fine_tune:
        checkpoints.restore_or_explain(checkpoints.make_checkpoint(model), fine_tune,
                                       partial=True)
        logging.info("Fine-tuning: every model weight from %s", fine_tune)
    return model, optimizer, manager, latest is not None


def _worker_checkpoint_dir(model_dir: str | os.PathLike, fold: int, chief: bool
                           ) -> pathlib.Path:
    """The chief's ``fold_NN/checkpoints``; a temporary folder outside the run for others."""
    if chief:
        return layout.checkpoint_dir(model_dir, fold)
    return atomic_io.owned_temp_dir(tempfile.gettempdir(), f"sercseg-worker-fold{int(fold):02d}")


def train_batches(config: ExperimentConfig, tfrecord_dir: str | os.PathLike,
                  train_cases: list[int], seed: int) -> tf.data.Dataset:
    """The training stream as ``(images, labels)`` batches, as the train step takes them."""
    train_ds = dataset_lib.build_train_dataset(tfrecord_dir, train_cases, config, seed=seed)
    return train_ds.map(lambda s: (s[formats.SAMPLE_IMAGE], s[formats.SAMPLE_LABEL]))


def _on_cpu_only(strategy: tf.distribute.Strategy) -> bool:
    """True for a `OneDeviceStrategy` on the CPU: one replica, the batches already there."""
    return (isinstance(strategy, tf.distribute.OneDeviceStrategy)
            and tf.DeviceSpec.from_string(strategy.extended.worker_devices[0]).device_type
            == "CPU")


def _train_iterator(config: ExperimentConfig, tfrecord_dir: str | os.PathLike,
                    train_cases: list[int], start_step: int,
                    strategy: tf.distribute.Strategy) -> Iterator:
    """Iterator over the (distributed) ``(images, labels)`` training batches.

    A resumed run reseeds the stream so it does not replay the first batches. One
    replica on the CPU iterates the stream itself: `experimental_distribute_dataset`
    would wrap it in a MultiDeviceIterator whose per-device stage runs tf.data's
    autotuning thread (options do not reach it), and deleting that iterator at the
    end of training waited up to 47 s for the thread. Same batches either way.
    """
    train_ds = train_batches(config, tfrecord_dir, train_cases, config.seed + start_step)
    if _on_cpu_only(strategy):
        return iter(train_ds)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_ds = train_ds.with_options(options)
    return iter(strategy.experimental_distribute_dataset(train_ds))


def _open_outputs(config: ExperimentConfig, model_dir: str | os.PathLike, fold: int,
                  chief: bool, start_step: int
                  ) -> tuple[Any, Any, HistoryCsv | None, HistoryCsv | None]:
    """Writes the run's config; opens TensorBoard writers and history CSVs (chief only).

    Returns:
      ``(train_writer, eval_writer, train_history, eval_history)``; no-op writers and
      no histories on a non-chief worker.
    """
    if not chief:
        noop = tf.summary.create_noop_writer()
        return noop, noop, None, None
    save_config(config, layout.config_path(model_dir, fold))
    train_dir, eval_dir = layout.train_dir(model_dir, fold), layout.eval_dir(model_dir, fold)
    return (tf.summary.create_file_writer(str(train_dir)),
            tf.summary.create_file_writer(str(eval_dir)),
            HistoryCsv(train_dir / layout.HISTORY_CSV, TRAIN_HISTORY_COLUMNS,
                       resume_step=start_step),
            HistoryCsv(eval_dir / layout.HISTORY_CSV, EVAL_HISTORY_COLUMNS,
                       resume_step=start_step))


def _setup(config: ExperimentConfig, tfrecord_dir: str | os.PathLike,
           model_dir: str | os.PathLike, fold: int,
           strategy: tf.distribute.Strategy, strategy_name: str) -> _FoldRun:
    """Model, optimizer (resumed), input, writers and evaluator of a fold.

    Raises:
      FileNotFoundError: no manifest in ``tfrecord_dir`` or the rehearsal folder.
      ValueError: the fold leaves no case to train on, a shard (of the fold or of the
        rehearsal set) disagrees with its manifest, or ``config`` contradicts the run's
        saved architecture.
    """
    chief = distribute.is_chief(strategy)
    keras.utils.set_random_seed(config.seed)
    check_run_config(config, layout.config_path(model_dir, fold))
    train_cases, held_out = dataset_lib.fold_cases(tfrecord_dir, fold)
    if not train_cases:
        raise ValueError(f"{tfrecord_dir}: fold {fold} leaves no case to train on")
    tfrecord.verify_shards(tfrecord_dir, [*train_cases, *([] if held_out is None else [held_out])])
    if config.rehearsal_tfrecord_dir:  # before the model is built, as the fold's own
        tfrecord.verify_shards(config.rehearsal_tfrecord_dir,
                               tfrecord.case_ids(config.rehearsal_tfrecord_dir))
        logging.info("Rehearsal: every case of %s, drawn for %.0f %% of the examples",
                     config.rehearsal_tfrecord_dir, 100 * config.rehearsal_share)
    ckpt_dir = _worker_checkpoint_dir(model_dir, fold, chief)
    model, optimizer, manager, restored = _build_and_restore(
        config, strategy, ckpt_dir, layout.checkpoint_dir(model_dir, fold))
    start_step = int(optimizer.iterations.numpy())
    num_params = modeling.count_params(model)["total"]
    logging.info("Fold %d: train cases %s, held-out case %s, %d replica(s) (%s), "
                 "%d parameters, steps %d -> %d", fold, train_cases, held_out,
                 strategy.num_replicas_in_sync, strategy_name, num_params,
                 start_step, config.num_steps)
    iterator = _train_iterator(config, tfrecord_dir, train_cases, start_step, strategy)
    train_step = make_train_step(strategy, model, optimizer, config.loss_top_k_percent,
                                 needle_class_weights(config.loss_needle_weight),
                                 config.loss_dice_weight,
                                 (config.loss_boundary_weight, config.loss_boundary_radius))
    train_writer, eval_writer, train_history, eval_history = _open_outputs(
        config, model_dir, fold, chief, start_step)
    if held_out is None:
        logging.info("Fold 0 trains on every case: no held-out case, evaluation skipped")
        eval_ds = None
    else:
        eval_ds = evaluator.heldout_dataset(tfrecord_dir, held_out, config.eval_max_images)
    predict_step = evaluator.make_predict_step(model, config)
    return _FoldRun(
        config=config, fold=fold, strategy=strategy, strategy_name=strategy_name,
        chief=chief, train_cases=train_cases, held_out=held_out, ckpt_dir=ckpt_dir,
        model=model, optimizer=optimizer, manager=manager, start_step=start_step,
        num_params=num_params, iterator=iterator, train_step=train_step,
        train_writer=train_writer, eval_writer=eval_writer, train_history=train_history,
        eval_history=eval_history, eval_ds=eval_ds, predict_step=predict_step,
        last_saved=start_step if restored else -1,
        progress=_Progress(step=start_step))


def _train_one_step(run: _FoldRun) -> None:
    """Runs one step; records its loss (history, TensorBoard) and timing.

    Raises:
      FloatingPointError: the loss is NaN or infinite.
    """
    progress = run.progress
    t_step = time.perf_counter()
    loss = float(run.train_step(run.iterator))
    step = int(run.optimizer.iterations.numpy())
    progress.step, progress.loss = step, loss
    if not math.isfinite(loss):
        raise FloatingPointError(f"fold {run.fold}: loss is {loss} at step {step}")
    if step > run.start_step + 1:  # the first step includes tracing: not timed.
        progress.timed_steps += 1
        progress.timed_seconds += time.perf_counter() - t_step
    progress.window_loss += loss
    progress.window_steps += 1
    if run.train_history is not None:
        run.train_history.write({"step": step, "loss": loss})
    with run.train_writer.as_default():
        summaries.write_scalar("train/loss", loss, step)


def _log_progress(run: _FoldRun) -> None:
    """Logs the window's mean loss, rate and ETA; writes learning rate and steps/s."""
    progress, config, step = run.progress, run.config, run.progress.step
    elapsed = time.perf_counter() - progress.t_window
    steps_per_sec = progress.window_steps / elapsed if elapsed > 0 else math.nan
    rate = progress.timed_rate() if progress.timed_seconds > 0 else steps_per_sec
    with run.train_writer.as_default():
        summaries.write_scalar("train/learning_rate", _learning_rate(run.optimizer), step)
        summaries.write_scalar("train/steps_per_sec", steps_per_sec, step)
    run.train_writer.flush()
    if run.train_history is not None:
        run.train_history.flush()
    logging.info("step %d/%d  loss %.4f  %.2f images/s  ETA %s", step,
                 config.num_steps, progress.window_loss / progress.window_steps,
                 steps_per_sec * config.batch_size,
                 _format_eta((config.num_steps - step) / rate))
    progress.restart_window()


def _run_eval(run: _FoldRun, step: int) -> None:
    """Evaluates the held-out case (chief only): TensorBoard, eval history, log line."""
    if not run.chief or run.eval_ds is None:
        return
    t0 = time.perf_counter()
    result = evaluator.evaluate_heldout(run.model, run.config, run.eval_ds,
                                        num_panels=run.config.num_summary_images,
                                        predict_step=run.predict_step)
    means = result.class_means()
    values = {"loss": result.loss, **{f"iou_{k}": v for k, v in means.items()
                                       if k != "miou"}, "miou": means["miou"]}
    with run.eval_writer.as_default():
        for key, value in values.items():
            summaries.write_scalar(f"eval/{key}", value, step)
        if result.panels:
            summaries.write_images("eval/overlays", np.stack(result.panels), step,
                                   description="input | ground truth | prediction")
    run.eval_writer.flush()
    run.eval_history.write({"step": step, **values})
    run.eval_history.flush()
    run.last_eval = {"eval_loss": values["loss"],
                     **{k: v for k, v in values.items() if k != "loss"}}
    logging.info("eval step %d (%d frames, %.1fs): loss %.4f  IoU oocyte %.3f  sERC %.3f"
                 "  needle %.3f  mean %.3f", step, len(result.rows),
                 time.perf_counter() - t0, values["loss"], values["iou_oocyte"],
                 values["iou_serc"], values["iou_needle"], values["miou"])


def _save(run: _FoldRun, step: int, reraise_interrupt: bool = True) -> str:
    """Saves checkpoint ``ckpt-<step>`` and flushes the train history; returns its path.

    Ctrl-C / SIGTERM are held back until the checkpoint is complete; afterwards they
    interrupt as usual (``reraise_interrupt``) or are dropped (the save on interrupt).
    """
    with cli.deferred_interrupts(reraise=reraise_interrupt):
        path = run.manager.save(checkpoint_number=step)
        if run.train_history is not None:
            run.train_history.flush()
        run.last_saved = step
    fault_point("train.checkpoint_saved")
    return path


def _save_on_interrupt(run: _FoldRun) -> None:
    """Ctrl-C: saves the current step unless its checkpoint exists already."""
    step = int(run.optimizer.iterations.numpy())
    path = (run.manager.latest_checkpoint if run.last_saved == step
            else _save(run, step, reraise_interrupt=False))
    logging.warning("Interrupted: checkpoint saved at step %d (%s); run the same "
                    "command again to resume", step, path)


def _close(run: _FoldRun) -> None:
    """Closes histories and writers; a non-chief worker deletes its throw-away folder."""
    for history in (run.train_history, run.eval_history):
        if history is not None:
            history.close()
    run.train_writer.close()
    run.eval_writer.close()
    if not run.chief:
        shutil.rmtree(run.ckpt_dir, ignore_errors=True)


def _summary(run: _FoldRun) -> dict[str, Any]:
    """The dict `train_fold` returns (see there)."""
    progress = run.progress
    rate = progress.timed_rate()
    return {
        "fold": int(run.fold),
        "held_out": run.held_out,
        "train_cases": run.train_cases,
        "start_step": run.start_step,
        "final_step": progress.step,
        "final_loss": progress.loss,
        "steps_per_sec": rate,
        "images_per_sec": rate * run.config.batch_size,
        "train_seconds": time.perf_counter() - progress.t_start,
        "checkpoint": run.manager.latest_checkpoint,
        "num_params": run.num_params,
        "strategy": run.strategy_name,
        "num_replicas": run.strategy.num_replicas_in_sync,
        **run.last_eval,
    }


def train_fold(config: ExperimentConfig, tfrecord_dir: str | os.PathLike,
               model_dir: str | os.PathLike, fold: int,
               strategy: str | tf.distribute.Strategy = "auto",
               on_start: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Trains (or resumes) fold ``fold`` to ``config.num_steps``; see `sercseg_tf.train`.

    ``on_start`` (e.g. writing the fold's training record) runs on the chief only, under
    the fold's lock, once the fold is set up and before the first step.

    Returns:
      Summary dict: fold, held_out, train_cases, start_step, final_step, final_loss,
      steps_per_sec, images_per_sec, train_seconds, checkpoint, num_params, strategy,
      num_replicas and (if run) the last evaluation (eval_loss, iou_* and miou).

    Raises:
      KeyboardInterrupt: after saving a checkpoint at the current step.
      FloatingPointError: the loss became NaN/inf (no checkpoint is written then).
      RunLockedError: another process is training this fold.
    """
    strategy, strategy_name = _resolve_strategy(strategy)
    with _chief_lock(model_dir, fold, distribute.is_chief(strategy)):
        run = _setup(config, tfrecord_dir, model_dir, fold, strategy, strategy_name)
        if run.chief and on_start is not None:
            try:
                on_start()
            except BaseException:
                _close(run)
                raise
        _train_loop(run)
    return _summary(run)


@contextlib.contextmanager
def _chief_lock(model_dir: str | os.PathLike, fold: int, chief: bool):
    """The chief holds the fold's lock and clears a killed save's litter under it."""
    if not chief:
        yield
        return
    with run_lock.hold(layout.lock_path(model_dir, fold), "train"):
        checkpoints.remove_temp_dirs(layout.checkpoint_dir(model_dir, fold))
        yield


def _train_loop(run: _FoldRun) -> None:
    """Steps to ``num_steps`` with logging, checkpoints and evaluations; closes the run."""
    config, progress = run.config, run.progress
    try:
        while progress.step < config.num_steps:
            _train_one_step(run)
            step = progress.step
            if step % config.log_every_steps == 0 or step == config.num_steps:
                _log_progress(run)
            if step == config.num_steps and config.bn_recompute_batches:
                # Before the final checkpoint, so every saved ckpt-<num_steps> has them.
                with cli.deferred_interrupts(
                        doing="the BatchNorm statistics are being recomputed"):
                    precise_bn.recompute_statistics(run.strategy, run.model, run.iterator,
                                                    config.bn_recompute_batches)
            if step % config.save_checkpoints_steps == 0:
                _save(run, step)
            if (config.eval_every_steps and step % config.eval_every_steps == 0
                    and step < config.num_steps):
                _run_eval(run, step)
                progress.restart_window()  # evaluation time is not training time
            _on_step_end(step)
            fault_point("train.step_end")
        if run.last_saved != progress.step:
            _save(run, progress.step)
        if progress.step > run.start_step or not run.last_eval:
            _run_eval(run, progress.step)
    except KeyboardInterrupt:
        _save_on_interrupt(run)
        raise
    finally:
        _close(run)
