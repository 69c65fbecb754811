r"""`tf.distribute` strategy factory.

Strategies (``--strategy``):

- ``auto``: ``mirrored`` when more than one GPU is visible, else ``one_device``.
- ``one_device``: `tf.distribute.OneDeviceStrategy` on the first GPU, else the CPU.
- ``mirrored``: `tf.distribute.MirroredStrategy` over all local GPUs (or all logical
  CPUs when there is no GPU; used by the tests with two logical CPU devices).
- ``multi_worker``: `tf.distribute.MultiWorkerMirroredStrategy`, cluster from the
  ``TF_CONFIG`` environment variable, or inside a Slurm job without ``TF_CONFIG`` from
  `SlurmClusterResolver` (one task per node, ports from ``SERCSEG_SLURM_PORT``, default
  8888). It must be created before TensorFlow's context is initialised (the train
  command creates it first thing). To train on several machines, start the *same*
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
  machines. Only the chief (worker 0) writes into the run folder; the other workers
  restore from the chief's checkpoints and save theirs (MultiWorkerMirroredStrategy
  makes every worker save) into a temporary folder outside it, deleted at the end. If a
  worker dies, the others stop with one line (exit 1); starting every worker again
  resumes from the chief's last checkpoint. On one machine (the tested recipe), the
  same two commands with ``127.0.0.1:PORT0`` and ``127.0.0.1:PORT1``.
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
    if name == "multi_worker":  # before anything initialises TensorFlow's context
        return _multi_worker_strategy()
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
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=os.environ.get("TPU_NAME", ""))
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    """MultiWorkerMirroredStrategy from ``TF_CONFIG`` (or Slurm's environment).

    Must run before anything initialises TensorFlow's context (listing devices,
    creating a tensor): collective ops can only be configured at program start.

    Raises:
      ValueError: neither ``TF_CONFIG`` nor a Slurm job, or ``TF_CONFIG`` not valid JSON.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw and "SLURM_JOB_NODELIST" in os.environ and "SLURM_PROCID" in os.environ:
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
            port_base=int(os.environ.get("SERCSEG_SLURM_PORT", "8888")))
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    if not raw:
        raise ValueError("strategy multi_worker needs the TF_CONFIG environment variable "
                         "(cluster and task) or a Slurm job; see "
                         "sercseg_tf/training/distribute.py")
    try:
        json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from e
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes summaries, histories and the real checkpoints."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type is None or task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs)
