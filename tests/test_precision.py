"""Mixed precision, the faster layers and the learning-rate schedule.

The faster layers (`sercseg_tf.model.fast_layers`) are checked against the Keras layers
they replace; bfloat16 against float32 on the same checkpoint; checkpoints across
precisions both ways (model and optimizer); and the exported interface in bfloat16.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from sercseg_tf.config import ConfigError, ExperimentConfig
from sercseg_tf.training import precision

TINY = ExperimentConfig().replace(output_stride=32, init_checkpoint="none", batch_size=2)


@pytest.mark.parametrize("requested, flags, gpus, expected", [
    ("auto", {"avx512f", "amx_bf16", "amx_tile"}, [], "mixed_bfloat16"),
    ("auto", {"avx512f", "avx512_bf16"}, [], "mixed_bfloat16"),  # AMD EPYC (Zen 4)
    ("auto", {"avx2", "avx512f"}, [], "float32"),
    ("auto", set(), [(8, 0)], "mixed_bfloat16"),
    ("auto", {"amx_bf16"}, [(7, 5)], "float32"),  # the GPU computes, not the CPU
    ("auto", set(), [(9, 0), (7, 0)], "float32"),  # the slowest GPU decides
    ("float32", {"amx_bf16"}, [], "float32"),
    ("mixed_float16", set(), [], "mixed_float16"),
])
def test_choose_policy(requested, flags, gpus, expected):
    policy, reason = precision.choose_policy(requested, flags, gpus)
    assert policy == expected
    assert reason  # the log line says why


def test_unknown_precision_and_schedule_are_errors(tmp_path):
    with pytest.raises(ValueError, match="precision"):
        precision.choose_policy("bfloat16", set(), [])
    path = tmp_path / "bad.yaml"
    for text, key in (("precision: half\n", "precision"), ("lr_schedule: cosine\n",
                                                            "lr_schedule")):
        path.write_text(text)
        from sercseg_tf.config import load_config

        with pytest.raises(ConfigError, match=f"bad.yaml: key '{key}'"):
            load_config(path)


def test_paper_config_keeps_float32_and_constant_rate_demo_uses_auto():
    import pathlib

    from sercseg_tf.config import load_config

    configs = pathlib.Path(__file__).resolve().parents[1] / "configs"
    paper, demo = (load_config(configs / name) for name in ("paper.yaml", "demo.yaml"))
    assert (paper.precision, paper.lr_schedule) == ("float32", "constant")
    assert demo.precision == "auto"
    assert ExperimentConfig().precision == "float32"  # the defaults are the paper's


def test_cpu_flags_reads_the_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx512f amx_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu avx512f amx_bf16\n")
    assert precision.cpu_flags(cpuinfo) == {"fpu", "avx512f", "amx_bf16"}
    assert precision.cpu_flags(tmp_path / "missing") == frozenset()


def test_poly_schedule_is_deeplab2s_formula():
    from sercseg_tf.training.optimizer import learning_rate, make_optimizer

    config = TINY.replace(learning_rate=1e-3, num_steps=200, lr_schedule="poly")
    schedule = learning_rate(config)
    for step in (0, 1, 50, 100, 199, 200, 300):
        expected = 1e-3 * (1 - min(step, 200) / 200) ** 0.9
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-12)
    assert learning_rate(config.replace(lr_schedule="constant")) == 1e-3
    optimizer = make_optimizer(config)
    optimizer.iterations.assign(100)
    assert float(optimizer.learning_rate) == pytest.approx(1e-3 * 0.5 ** 0.9, rel=1e-5)


def test_fused_adam_equals_keras_adam():
    from sercseg_tf.training.optimizer import Adam, make_optimizer

    assert isinstance(make_optimizer(TINY), Adam)
    rng = np.random.default_rng(0)
    init = [rng.normal(size=s).astype("float32") for s in ((3, 3, 4, 5), (5,))]
    grads = [[tf.constant(rng.normal(size=w.shape).astype("float32") + step) for w in init]
             for step in range(3)]
    results = []
    for cls in (Adam, keras.optimizers.Adam):
        variables = [tf.Variable(w) for w in init]
        optimizer = cls(learning_rate=keras.optimizers.schedules.PolynomialDecay(1e-2, 10))
        for step_grads in grads:
            optimizer.apply_gradients(zip(step_grads, variables, strict=True))
        results.append([v.numpy() for v in [*variables, *optimizer.variables]])
    for a, b in zip(*results, strict=True):  # weights, iterations, m and v slots
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("rate, strides", [(1, 1), (1, 2), (2, 1), (3, 1), (5, 1), (15, 1)])
def test_fast_conv_equals_keras_conv_with_gradients(rate, strides):
    from sercseg_tf.model import fast_layers

    x = tf.constant(np.random.default_rng(0).normal(size=(2, 13, 17, 8)).astype("float32"))
    ours = fast_layers.Conv2D(6, 3, strides=strides, padding="same", dilation_rate=rate)
    ref = keras.layers.Conv2D(6, 3, strides=strides, padding="same", dilation_rate=rate)
    ours.build(x.shape)
    ref.build(x.shape)
    ref.set_weights(ours.get_weights())
    results = []
    for layer in (ours, ref):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        results.append((y, *tape.gradient(loss, [x, layer.kernel])))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    # Unknown spatial size at trace time (the exported graph): no tap can be skipped.
    dynamic = tf.function(ours, input_signature=[tf.TensorSpec([None, None, None, 8])])
    np.testing.assert_allclose(dynamic(x).numpy(), results[1][0].numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("strides, size", [(1, (13, 17)), (2, (13, 17)), (2, (12, 9))])
def test_pointwise_gemm_conv_equals_keras_conv_with_gradients(monkeypatch, strides, size):
    """The 1x1 conv whose gradients are matrix products (`pointwise_conv`) against Keras."""
    from sercseg_tf.model import fast_layers

    monkeypatch.setattr(fast_layers, "GEMM_MIN_POINTWISE_CHANNELS", 4)
    x = tf.constant(np.random.default_rng(1).normal(size=(2, *size, 8)).astype("float32"))
    ours = fast_layers.Conv2D(6, 1, strides=strides)
    ref = keras.layers.Conv2D(6, 1, strides=strides)
    ours.build(x.shape)
    ref.build(x.shape)
    ref.set_weights(ours.get_weights())
    assert ours._pointwise_gemm(x, ours.kernel)
    results = []
    for layer in (ours, ref):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * y * tf.range(6, dtype=tf.float32))
        results.append((y, *tape.gradient(loss, [x, layer.kernel, layer.bias])))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
    dynamic = tf.function(ours, input_signature=[tf.TensorSpec([None, None, None, 8])])
    np.testing.assert_allclose(dynamic(x).numpy(), results[1][0].numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_size, size", [(3, (7, 9)), (3, (2, 5)), (5, (6, 4))])
def test_conv_tap_grad_equals_conv_with_gradients(kernel_size, size):
    """`conv_tap_grad` (kernel gradient per tap) against TensorFlow's own conv gradients,
    on maps as small as the kernel (taps that see padding only)."""
    from sercseg_tf.model import fast_layers

    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(2, *size, 8)).astype("float32"))
    kernel = tf.constant(rng.normal(size=(kernel_size, kernel_size, 8, 6)).astype("float32"))
    weights = tf.range(6, dtype=tf.float32)
    results = []
    for conv in (fast_layers.conv_tap_grad,
                 lambda x, k: tf.nn.conv2d(x, k, strides=1, padding="SAME")):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = conv(x, kernel)
            loss = tf.reduce_sum(y * y * weights)
        results.append((y, *tape.gradient(loss, [x, kernel])))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


def test_tap_grad_only_for_bfloat16_convs_on_many_channels(monkeypatch):
    from sercseg_tf.model import fast_layers

    monkeypatch.setattr(fast_layers, "TAP_GRAD_MIN_CHANNELS", 8)
    layer = fast_layers.Conv2D(8, 3, padding="same")
    layer.build((None, 7, 9, 8))
    for dtype, expected in ((tf.bfloat16, True), (tf.float32, False)):
        x = tf.zeros([1, 7, 9, 8], dtype)
        assert layer._tap_grad(x, tf.cast(layer.kernel, dtype)) is expected
    narrow = tf.zeros([1, 7, 9, 4], tf.bfloat16)
    assert not layer._tap_grad(narrow, tf.zeros([3, 3, 4, 8], tf.bfloat16))


@pytest.mark.parametrize("training", [False, True])
def test_fast_batch_norm_equals_keras_batch_norm(training):
    from sercseg_tf.model import fast_layers

    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(3.0, 2.0, (2, 5, 7, 4)).astype("float32"))
    ours = fast_layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    ref = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    ours.build(x.shape)
    ref.build(x.shape)
    weights = [rng.uniform(0.5, 1.5, 4), rng.normal(size=4), rng.normal(size=4),
               rng.uniform(0.5, 2.0, 4)]  # gamma, beta, moving mean, moving variance
    for layer in (ours, ref):
        layer.set_weights([w.astype("float32") for w in weights])
    grads = []
    for layer in (ours, ref):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * y * tf.range(4, dtype=tf.float32))
        grads.append([y, *tape.gradient(loss, [x, layer.gamma, layer.beta])])
    for a, b in zip(*grads, strict=True):  # output and gradients
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    # Moving statistics: unchanged in inference, Keras' biased-variance update in training.
    for a, b in zip(ours.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    if training:
        batch_var = x.numpy().reshape(-1, 4).var(axis=0)  # biased
        np.testing.assert_allclose(ours.moving_variance.numpy(),
                                   0.9 * weights[3] + 0.1 * batch_var, rtol=1e-5)


def _probe_fitted_model(output_stride: int):
    """A random-init DeepLab whose classifier is a least-squares probe of a 4-class map.

    Random-init logits are near ties everywhere, so argmax agreement would measure the
    ties; fitting the (linear) classifier on the float32 decoder features to a smooth
    4-class target gives every class real margins. Returns ``(model, images, target)``.
    """
    import scipy.ndimage as ndi

    from sercseg_tf.model.decoder import resize_bilinear
    from sercseg_tf.training import modeling

    keras.utils.set_random_seed(0)
    model = modeling.build_model(TINY.replace(output_stride=output_stride))
    rng = np.random.default_rng(0)
    field = ndi.gaussian_filter(rng.normal(size=(2, 97, 129)), (0, 8, 8))
    target = np.digitize(field, np.quantile(field, [0.25, 0.5, 0.75]))
    images = (np.clip(field / field.std() * 50, -100, 100)[..., None]
              + rng.normal(0, 5, (2, 97, 129, 3))).astype("float32")
    decoder = model.get_layer("decoder")
    low, aspp = keras.Model(model.inputs, [model.get_layer("conv2_block3_out").output,
                                           model.get_layer("aspp").output])([images])
    low = decoder.low_level_projection(low, training=False)
    x = tf.concat([low, resize_bilinear(aspp, tf.shape(low)[1:3])], axis=-1)
    features = decoder.fuse2(decoder.fuse1(x, training=False), training=False).numpy()
    onehot = tf.image.resize(np.eye(4, dtype="float32")[target], features.shape[1:3]).numpy()
    design = np.concatenate([features.reshape(-1, 256), np.ones((onehot[..., 0].size, 1))], 1)
    coef, *_ = np.linalg.lstsq(design, onehot.reshape(-1, 4), rcond=None)
    decoder.classifier.kernel.assign(10 * coef[:256].reshape(1, 1, 256, 4).astype("float32"))
    decoder.classifier.bias.assign(10 * coef[256].astype("float32"))
    return model, images, target


@pytest.mark.parametrize("output_stride", [16, 32])
def test_bfloat16_and_float32_logits_agree_in_argmax(output_stride, tmp_path):
    from sercseg_tf.training import checkpoints, modeling

    model32, images, target = _probe_fitted_model(output_stride)
    path = checkpoints.make_checkpoint(model32).save(str(tmp_path / "ckpt"))
    model16 = modeling.build_model(TINY.replace(output_stride=output_stride,
                                                precision="mixed_bfloat16"))
    checkpoints.make_checkpoint(model16).restore(path).assert_existing_objects_matched()
    assert keras.mixed_precision.global_policy().name == "float32"  # scope restored
    conv = model16.get_layer("conv4_block1_2_conv")
    assert (conv.compute_dtype, conv.kernel.dtype) == ("bfloat16", "float32")
    assert model16.get_layer("decoder").classifier.compute_dtype == "float32"
    logits32 = model32(images, training=False).numpy()
    logits16 = model16(images, training=False)
    assert logits16.dtype == tf.float32
    pred32, pred16 = logits32.argmax(-1), logits16.numpy().argmax(-1)
    assert (pred32 == target).mean() > 0.8  # the probe works: four real classes
    assert np.bincount(pred32.ravel(), minlength=4).min() > 0.15 * pred32.size
    assert (pred16 == pred32).mean() >= 0.99


def _one_train_step(config: ExperimentConfig):
    """Builds model + optimizer of ``config`` and runs one train step on a tiny batch."""
    from sercseg_tf.training import loop, modeling
    from sercseg_tf.training.optimizer import make_optimizer

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = modeling.build_model(config)
        optimizer = make_optimizer(config, loss_scaling=precision.uses_float16(model))
        optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    batch = (rng.normal(0, 50, (2, 33, 33, 3)).astype("float32"),
             rng.integers(0, 4, (2, 33, 33)).astype("int32"))
    iterator = iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(batch).repeat()))
    loss = float(loop.make_train_step(strategy, model, optimizer)(iterator))
    return model, optimizer, loss


def test_checkpoint_of_a_bfloat16_run_resumes_in_float32(tmp_path):
    from sercseg_tf.training import checkpoints, modeling
    from sercseg_tf.training.optimizer import make_optimizer

    config = TINY.replace(precision="mixed_bfloat16", learning_rate=1e-3)
    model16, optimizer16, loss = _one_train_step(config)
    assert math.isfinite(loss) and int(optimizer16.iterations) == 1
    assert {v.dtype for v in model16.variables if "seed" not in v.path} == {"float32"}
    assert {v.dtype for v in optimizer16.variables} <= {"float32", "int64"}
    path = checkpoints.make_checkpoint(model16, optimizer16).save(str(tmp_path / "ckpt"))
    config32 = config.replace(precision="float32")
    model32 = modeling.build_model(config32)
    optimizer32 = make_optimizer(config32)
    optimizer32.build(model32.trainable_variables)
    checkpoints.make_checkpoint(model32, optimizer32).restore(
        path).assert_existing_objects_matched()
    assert int(optimizer32.iterations) == 1
    weights16, weights32 = (checkpoints.model_variables(m) for m in (model16, model32))
    assert weights16.keys() == weights32.keys()
    for key, value in weights16.items():
        np.testing.assert_array_equal(value.numpy(), weights32[key].numpy())
    for a, b in zip(optimizer16.variables, optimizer32.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_float16_uses_loss_scaling_and_saves_a_plain_optimizer(tmp_path):
    from sercseg_tf.training import checkpoints, modeling
    from sercseg_tf.training.optimizer import make_optimizer

    config = TINY.replace(precision="mixed_float16")
    model16 = modeling.build_model(config)
    assert precision.uses_float16(model16)
    optimizer16 = make_optimizer(config, loss_scaling=True)
    assert isinstance(optimizer16, keras.optimizers.LossScaleOptimizer)
    assert float(optimizer16.scale_loss(tf.constant(1.0))) > 1.0
    optimizer16.build(model16.trainable_variables)
    path = checkpoints.make_checkpoint(model16, optimizer16).save(str(tmp_path / "ckpt"))
    model32 = modeling.build_model(TINY)
    optimizer32 = make_optimizer(TINY)
    optimizer32.build(model32.trainable_variables)
    checkpoints.make_checkpoint(model32, optimizer32).restore(
        path).assert_existing_objects_matched()


def test_float32_checkpoint_evaluates_and_exports_in_bfloat16(tiny_tfrecord_dir, tmp_path):
    from sercseg_tf import evaluate, export, formats, layout
    from sercseg_tf.model import inference
    from sercseg_tf.training import checkpoints, modeling

    config = TINY.replace(image_scale=0.125)
    keras.utils.set_random_seed(0)
    model = modeling.build_model(config)
    tf.train.CheckpointManager(checkpoints.make_checkpoint(model),
                               str(layout.checkpoint_dir(tmp_path, 2)), 1).save(1)
    config16 = config.replace(precision="mixed_bfloat16")
    per_image = evaluate.run_evaluation(config16, tiny_tfrecord_dir, tmp_path, 2)
    assert len(per_image) == 2
    serving16 = inference.load_serving_fn(export.run_export(config16, tmp_path, 2))
    frame = np.random.default_rng(0).integers(0, 256, (1, 60, 81, 3), dtype=np.uint8)
    out16 = serving16(frame)
    assert out16[formats.SERVING_PRED].dtype == tf.int32
    assert out16[formats.SERVING_PROBS].dtype == tf.float32
    assert tuple(out16[formats.SERVING_PROBS].shape) == (1, 60, 81, 4)
    signature = serving16.loaded.signatures[formats.SERVING_SIGNATURE]
    assert signature.structured_input_signature[1][formats.SERVING_INPUT].dtype == tf.uint8
    probs32 = tf.nn.softmax(inference.predict_logits(model, frame, 0.125, 32)).numpy()
    np.testing.assert_allclose(out16[formats.SERVING_PROBS].numpy(), probs32, atol=0.05)
