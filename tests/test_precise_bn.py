"""PreciseBN: moving statistics = mean batch moments, on one device and two replicas."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
EPS = 1e-3  # Keras' BatchNormalization epsilon

# Runs in a fresh interpreter: logical CPU devices must be configured before TF starts.
_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from sercseg_tf.model import fast_layers
    from sercseg_tf.training import distribute, precise_bn

    rng = np.random.default_rng(0)
    batches = [rng.normal(k, 1 + k, (2, 5, 7, 3)).astype(np.float32) for k in range(3)]
    label = np.zeros((2, 5, 7), np.int32)

    def tiny_model():
        x = keras.Input((None, None, 3))
        y = fast_layers.BatchNormalization(momentum=0.9, synchronized=True, name="bn0")(x)
        y = keras.layers.Conv2D(4, 1, name="c1")(y)
        y = fast_layers.BatchNormalization(momentum=0.9, synchronized=True, name="bn1")(y)
        return keras.Model(x, y)

    def run(strategy_name, num_batches):
        strategy = distribute.create_strategy(strategy_name)
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = tiny_model()
        ds = tf.data.Dataset.from_tensor_slices(
            (np.stack(batches), np.stack([label] * 3)))
        it = iter(strategy.experimental_distribute_dataset(ds))
        try:
            precise_bn.recompute_statistics(strategy, model, it, num_batches)
            error = None
        except tf.errors.OutOfRangeError:
            error = "OutOfRangeError"
        layers = precise_bn.batch_norm_layers(model)
        return {"replicas": strategy.num_replicas_in_sync, "error": error,
                "momenta": [la.momentum for la in layers],
                "kernel": model.get_layer("c1").kernel.numpy().tolist(),
                "bias": model.get_layer("c1").bias.numpy().tolist(),
                "stats": [[la.moving_mean.numpy().tolist(), la.moving_variance.numpy().tolist()]
                          for la in layers]}

    out = {"one": run("one_device", 3), "mirrored": run("mirrored", 3),
           "short": run("one_device", 4),  # only 3 batches: the stream ends early
           "batches": [b.tolist() for b in batches]}
    json.dump(out, sys.stdout)
""")


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    return flat.mean(0), flat.var(0)  # biased variance, as BatchNormalization trains


def test_recomputed_statistics_are_the_mean_batch_moments_on_one_and_two_replicas():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    kernel = np.array(out["one"]["kernel"])[0, 0]  # [3, 4]
    bias = np.array(out["one"]["bias"])
    # Independent reference: training-mode forward in NumPy (gamma 1, beta 0 at init).
    expected = [[np.zeros(3), np.zeros(3)], [np.zeros(4), np.zeros(4)]]
    for batch in out["batches"]:
        x = np.array(batch)
        mean0, var0 = _moments(x)
        y = ((x - mean0) / np.sqrt(var0 + EPS)) @ kernel + bias
        mean1, var1 = _moments(y)
        for layer, moments in enumerate(((mean0, var0), (mean1, var1))):
            expected[layer][0] += moments[0] / 3
            expected[layer][1] += moments[1] / 3
    for name in ("one", "mirrored"):
        run = out[name]
        assert run["error"] is None and run["momenta"] == [0.9, 0.9]
        for (mean, var), (exp_mean, exp_var) in zip(run["stats"], expected, strict=True):
            np.testing.assert_allclose(mean, exp_mean, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(var, exp_var, rtol=1e-4, atol=1e-5)
        # Weights are frozen: the kernel is the one the seed drew.
        np.testing.assert_array_equal(run["kernel"], out["one"]["kernel"])
    assert out["mirrored"]["replicas"] == 2
    # A stream that ends early raises and leaves the statistics as they were (0 / 1).
    short = out["short"]
    assert short["error"] == "OutOfRangeError" and short["momenta"] == [0.9, 0.9]
    for mean, var in short["stats"]:
        np.testing.assert_array_equal(mean, np.zeros_like(mean))
        np.testing.assert_array_equal(var, np.ones_like(var))
