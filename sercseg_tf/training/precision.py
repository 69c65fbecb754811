"""Numeric precision of a run: the config key ``precision`` -> a Keras dtype policy.

``float32`` is the paper's setting. ``mixed_bfloat16`` / ``mixed_float16`` are Keras
mixed-precision policies: convolutions compute in 16 bits on float32 master weights;
BatchNorm statistics (`sercseg_tf.model.fast_layers`), the classifier and logits
(`sercseg_tf.model.decoder`), softmax, loss and IoU stay float32, and the optimizer
updates the float32 weights. ``mixed_float16`` adds loss scaling
(``keras.optimizers.LossScaleOptimizer``, `sercseg_tf.training.optimizer`); it is for
GPUs. ``auto`` picks ``mixed_bfloat16`` where the hardware computes bfloat16 natively —
a GPU of compute capability >= 8.0, or (no GPU) a CPU whose ``/proc/cpuinfo`` flags
include ``avx512_bf16`` or ``amx_bf16`` — and ``float32`` elsewhere (bfloat16 emulated
in software is slower than float32).

Variables are float32 under every policy, so checkpoints are interchangeable: a model
trained in one precision restores, evaluates and exports in another.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterable, Iterator, Sequence

from absl import logging

from sercseg_tf.config import PRECISIONS

CPUINFO = pathlib.Path("/proc/cpuinfo")
# CPU flags (Linux /proc/cpuinfo names) that mean native bfloat16 arithmetic.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# Lowest CUDA compute capability with fast bfloat16 (Ampere).
BF16_GPU_CAPABILITY = (8, 0)


def _cpuinfo_field(name: str, path: str | pathlib.Path) -> str | None:
    """The value of field ``name`` of the first processor in ``/proc/cpuinfo``, or None."""
    try:
        text = pathlib.Path(path).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_flags(path: str | pathlib.Path = CPUINFO) -> frozenset[str]:
    """The ``flags`` of the first processor in ``/proc/cpuinfo``; empty if unreadable."""
    return frozenset((_cpuinfo_field("flags", path) or "").split())


def cpu_model(path: str | pathlib.Path = CPUINFO) -> str:
    """The ``model name`` of the first processor in ``/proc/cpuinfo``, or ``unknown``."""
    return _cpuinfo_field("model name", path) or "unknown"


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """``(major, minor)`` of every visible GPU (empty on a CPU-only machine)."""
    import tensorflow as tf

    capabilities = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    return capabilities


def choose_policy(requested: str, flags: Iterable[str],
                  gpu_capabilities: Sequence[tuple[int, int]]) -> tuple[str, str]:
    """Resolves a ``precision`` value to a Keras policy name and the reason.

    Args:
      requested: one of `sercseg_tf.config.PRECISIONS`.
      flags: the CPU's flags (`cpu_flags`).
      gpu_capabilities: compute capabilities of the visible GPUs.

    Returns:
      ``(policy, reason)`` with policy ``float32``, ``mixed_bfloat16`` or
      ``mixed_float16``.

    Raises:
      ValueError: unknown ``requested``.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return requested, "set in the config"
    if gpu_capabilities:
        low = min(gpu_capabilities)
        if low >= BF16_GPU_CAPABILITY:
            return "mixed_bfloat16", f"auto: GPU compute capability {low[0]}.{low[1]} >= 8.0"
        return "float32", f"auto: GPU compute capability {low[0]}.{low[1]} < 8.0"
    found = sorted(set(flags) & set(BF16_CPU_FLAGS))
    if found:
        return "mixed_bfloat16", f"auto: CPU flags {', '.join(found)}"
    return "float32", "auto: no GPU and no avx512_bf16/amx_bf16 CPU flag"


def resolve(requested: str) -> str:
    """`choose_policy` on this machine; logs the choice and why. Returns the policy name."""
    policy, reason = choose_policy(requested, cpu_flags(), gpu_compute_capabilities())
    logging.info("Precision %s -> %s (%s)", requested, policy, reason)
    return policy


@contextlib.contextmanager
def policy_scope(policy: str) -> Iterator[None]:
    """Sets the global Keras dtype policy for the block and restores the previous one.

    Layers take the policy when they are created, so building a model inside the block
    is enough; the process-wide default is left as it was.
    """
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def uses_float16(model) -> bool:
    """True if ``model`` computes in float16 (its optimizer then needs loss scaling)."""
    return model.dtype_policy.compute_dtype == "float16"
