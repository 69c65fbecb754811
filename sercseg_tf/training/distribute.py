r"""`tf.distribute` strategy factory.

Strategies (``--strategy``):

- ``auto``: ``mirrored`` when more than one GPU is visible, else ``one_device``.
- ``one_device``: `tf.distribute.OneDeviceStrategy` on the first GPU, else the CPU.
- ``mirrored``: `tf.distribute.MirroredStrategy` over all local GPUs (or all logical
  CPUs when there is no GPU; used by the tests with two logical CPU devices).
- ``multi_worker``: `tf.distribute.MultiWorkerMirroredStrategy`, cluster from the
  ``TF_CONFIG`` environment variable. To train on several machines, start the *same*
  command on every machine, each with its own ``TF_CONFIG``, e.g. for two workers::

      # machine A (chief, writes summaries and checkpoints)
      TF_CONFIG='{"cluster": {"worker": ["hostA:12345", "hostB:12345"]},
                  "task": {"type": "worker", "index": 0}}' \
        python -m sercseg_tf.train --fold=5 --strategy=multi_worker --model_dir=/shared/runs
      # machine B
      TF_CONFIG='{"cluster": {"worker": ["hostA:12345", "hostB:12345"]},
                  "task": {"type": "worker", "index": 1}}' \
        python -m sercseg_tf.train --fold=5 --strategy=multi_worker --model_dir=/shared/runs

  ``--tfrecord_dir`` must be readable on every worker (shared file system or a copy);
  ``--model_dir`` should be a shared path. The global batch (config ``batch_size``) is
  split over all replicas of all workers, so results do not depend on the number of
  machines. Non-chief workers write their checkpoints to a temporary folder that is
  deleted afterwards (the usual MultiWorkerMirroredStrategy recipe).
- ``tpu``: `tf.distribute.TPUStrategy` from `TPUClusterResolver` (TPU name or address
  via the ``TPU_NAME`` environment variable; empty = local TPU VM).
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from sercseg_tf.config import STRATEGIES


def create_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """Returns the distribution strategy called ``name`` (see the module docstring).

    Args:
      name: one of `STRATEGIES`.

    Raises:
      ValueError: unknown name, or ``multi_worker`` without a usable ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one_device"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    if name == "multi_worker":
        raw = os.environ.get("TF_CONFIG")
        if not raw:
            raise ValueError("strategy multi_worker needs the TF_CONFIG environment variable "
                             "(cluster and task); see sercseg_tf/training/distribute.py")
        try:
            json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from e
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=os.environ.get("TPU_NAME", ""))
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes summaries, histories and the real checkpoints."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type is None or task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs)
