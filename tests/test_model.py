"""Tests of the DeepLabV3+ model: preprocessing, backbone, ASPP, decoder, ImageNet init."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from sercseg_tf.labels import NUM_CLASSES
from sercseg_tf.model import init
from sercseg_tf.model.aspp import ASPP, ConvBNReLU, atrous_rates_for_output_stride
from sercseg_tf.model.decoder import DeepLabV3PlusDecoder, ResizeLike
from sercseg_tf.model.deeplab import build_deeplab
from sercseg_tf.model.preprocessing import denormalize_images, preprocess_images
from sercseg_tf.model.resnet import (
    HIGH_LEVEL_FEATURES,
    LOW_LEVEL_FEATURES,
    build_resnet50_backbone,
    stage_strides_and_rates,
)

# Keras 3.15's TF backend calls np.array(variable) in get/set/save_weights, which NumPy 2.4
# flags (the variable's __array__ lacks the `copy` keyword); harmless, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# Small inputs: 65x97 = (16*4+1) x (16*6+1); 50x71 aligns with no stride.
ALIGNED = (65, 97)
ODD = (50, 71)
# conv1 + 16 blocks x 3 convs + 4 shortcut convs = 53 convolutions, each with a BatchNorm.
RESNET50_WEIGHTED_LAYERS = 106
# ResNet-50 53; ASPP 6 (1x1, three atrous, pooling, projection); decoder 1 + 2 x 2 separable.
DEEPLAB_BATCH_NORMS = 53 + 6 + 5


def _feature_size(n: int, stride: int) -> int:
    """Spatial size of a ResNet-50 feature map: the stem halves twice, then 1x1 strides."""
    n = (n + 6 - 7) // 2 + 1  # conv1: pad 3, 7x7, stride 2
    n = (n + 2 - 3) // 2 + 1  # pool1: pad 1, 3x3, stride 2
    s = 4
    while s < stride:
        n = (n - 1) // 2 + 1  # 1x1 convolution, stride 2, valid
        s *= 2
    return n


@pytest.fixture(scope="module")
def models() -> dict[int, keras.Model]:
    keras.utils.set_random_seed(0)
    return {os_: build_deeplab(num_classes=NUM_CLASSES, output_stride=os_) for os_ in (8, 16, 32)}


@pytest.fixture(scope="module")
def reference_resnet() -> keras.Model:
    """Keras Applications ResNet-50, random (not ImageNet) weights, no download."""
    keras.utils.set_random_seed(1)
    ref = keras.applications.ResNet50(weights=None, include_top=False)
    # Random BatchNorm statistics, so a loader that skips moving_mean/variance is caught.
    rng = np.random.default_rng(2)
    for layer in ref.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            for v in layer.weights:
                low = 0.5 if "variance" in v.name or "gamma" in v.name else -0.5
                v.assign(rng.uniform(low, low + 1.0, v.shape).astype("float32"))
    return ref


def _images(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _batch_norms(layer: keras.layers.Layer) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization inside ``layer``, nested custom layers included.

    Keras 3 has no public walk into the sublayers of a custom Layer (``model.layers``
    stops at ASPP and the decoder), hence the private ``_flatten_layers``, in tests only.
    """
    return [la for la in layer._flatten_layers(include_self=True, recursive=True)
            if isinstance(la, keras.layers.BatchNormalization)]


# --- preprocessing -------------------------------------------------------------------


def test_preprocess_matches_keras_applications_caffe_mode():
    images = _images((2, 7, 9, 3))
    ours = preprocess_images(images).numpy()
    theirs = keras.applications.resnet50.preprocess_input(images.astype(np.float32))
    np.testing.assert_array_equal(ours, theirs)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(denormalize_images(ours), images)
    # Inside a graph too (tf.data / tf.function).
    graph_fn = tf.function(preprocess_images)
    np.testing.assert_array_equal(graph_fn(tf.constant(images)).numpy(), theirs)


# --- architecture --------------------------------------------------------------------


@pytest.mark.parametrize(
    "output_stride, plan, rates",
    [
        (8, {"conv2": (1, 1), "conv3": (2, 1), "conv4": (1, 2), "conv5": (1, 4)}, (12, 24, 36)),
        (16, {"conv2": (1, 1), "conv3": (2, 1), "conv4": (2, 1), "conv5": (1, 2)}, (6, 12, 18)),
        (32, {"conv2": (1, 1), "conv3": (2, 1), "conv4": (2, 1), "conv5": (2, 1)}, (3, 6, 9)),
    ],
)
def test_stride_plan_and_aspp_rates(models, output_stride, plan, rates):
    assert stage_strides_and_rates(output_stride) == plan
    assert atrous_rates_for_output_stride(output_stride) == rates
    model = models[output_stride]
    aspp = model.get_layer("aspp")
    assert aspp.atrous_rates == rates
    assert [b.steps[0].dilation_rate for b in aspp.atrous_branches] == [(r, r) for r in rates]
    for stage, (stride, rate) in plan.items():
        assert model.get_layer(f"{stage}_block1_1_conv").strides == (stride, stride)
        assert model.get_layer(f"{stage}_block1_0_conv").strides == (stride, stride)
        assert model.get_layer(f"{stage}_block2_2_conv").dilation_rate == (rate, rate)


def test_unsupported_output_stride_is_an_error():
    with pytest.raises(ValueError, match="output_stride"):
        build_deeplab(output_stride=4)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("size", [ALIGNED, ODD])
def test_output_shapes(models, output_stride, size):
    model = models[output_stride]
    probe = keras.Model(
        model.input,
        [
            model.get_layer(LOW_LEVEL_FEATURES).output,
            model.get_layer(HIGH_LEVEL_FEATURES).output,
            model.get_layer("decoder").output,
            model.output,
        ],
    )
    x = preprocess_images(_images((2, *size, 3)))
    low, high, logits4, logits = probe(x, training=False)
    h, w = size
    assert tuple(low.shape) == (2, _feature_size(h, 4), _feature_size(w, 4), 256)
    assert tuple(high.shape) == (
        2,
        _feature_size(h, output_stride),
        _feature_size(w, output_stride),
        2048,
    )
    assert tuple(logits4.shape) == (2, _feature_size(h, 4), _feature_size(w, 4), NUM_CLASSES)
    assert tuple(logits.shape) == (2, h, w, NUM_CLASSES)
    assert logits.dtype == tf.float32
    if size == ALIGNED:  # OS*k+1 inputs give k+1 feature rows/columns.
        assert high.shape[1] == (h - 1) // output_stride + 1


def test_model_accepts_any_size_with_dynamic_shapes(models):
    model = models[16]
    assert tuple(model.input.shape) == (None, None, None, 3)
    fn = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
    )
    for size in ((33, 41), (47, 29)):
        assert tuple(fn(tf.zeros((1, *size, 3))).shape) == (1, *size, NUM_CLASSES)


def test_backbone_layer_names_are_keras_applications_names(models, reference_resnet):
    ref_names = {layer.name for layer in reference_resnet.layers[1:]}  # minus the input
    ours = {layer.name for layer in models[16].layers}
    assert ref_names <= ours
    for name in ("conv1_pad", "conv1_conv", "conv1_bn", "conv1_relu", "pool1_pool"):
        assert name in ours


def test_decoder_projects_stride4_features_to_48_channels(models):
    decoder = models[16].get_layer("decoder")
    projection = decoder.low_level_projection.steps[0]
    assert tuple(projection.kernel.shape) == (1, 1, 256, 48)
    # Separable by default: depthwise 3x3 then pointwise 1x1 to 256 over 48 + 256 inputs.
    assert tuple(decoder.fuse1.steps[0].kernel.shape) == (3, 3, 304, 1)
    assert tuple(decoder.fuse1.steps[3].kernel.shape) == (1, 1, 304, 256)
    assert tuple(decoder.classifier.kernel.shape) == (1, 1, 256, NUM_CLASSES)


@pytest.mark.parametrize("momentum, sync", [(0.9, True), (0.97, False), (0.99, False)])
def test_build_model_passes_bn_settings_to_every_batch_norm(momentum, sync):
    from sercseg_tf.config import ExperimentConfig
    from sercseg_tf.training import modeling

    config = ExperimentConfig().replace(output_stride=32, init_checkpoint="none",
                                        bn_momentum=momentum, sync_batchnorm=sync)
    model = modeling.build_model(config)
    bns = _batch_norms(model)
    assert len(bns) == DEEPLAB_BATCH_NORMS
    assert {(la.momentum, la.synchronized) for la in bns} == {(momentum, sync)}
    # The nested ones (inside ASPP and the decoder) too, and they survive get/from_config.
    for name in ("aspp", "decoder"):
        layer = model.get_layer(name)
        clone = type(layer).from_config(layer.get_config())
        assert {(la.momentum, la.synchronized) for la in _batch_norms(clone)} == {
            (momentum, sync)}


def test_model_level_bn_defaults_are_keras_defaults(models):
    bns = _batch_norms(models[16])
    assert len(bns) == DEEPLAB_BATCH_NORMS
    assert {(la.momentum, la.synchronized) for la in bns} == {(0.99, False)}


def test_plain_decoder_option():
    decoder = DeepLabV3PlusDecoder(num_classes=3, separable=False)
    out = decoder([tf.zeros((1, 9, 11, 256)), tf.zeros((1, 3, 3, 256))])
    assert tuple(out.shape) == (1, 9, 11, 3)
    assert tuple(decoder.fuse1.steps[0].kernel.shape) == (3, 3, 304, 256)


def _expected_parameter_count(num_classes: int) -> int:
    bn = 4  # gamma, beta, moving mean, moving variance
    aspp = (2048 * 256 + bn * 256) * 2  # 1x1 branch and image pooling branch
    aspp += 3 * (9 * 2048 * 256 + bn * 256)  # atrous branches
    aspp += 5 * 256 * 256 + bn * 256  # projection
    decoder = 256 * 48 + bn * 48  # stride-4 projection
    decoder += 9 * 304 + bn * 304 + 304 * 256 + bn * 256  # separable fuse1
    decoder += 9 * 256 + bn * 256 + 256 * 256 + bn * 256  # separable fuse2
    decoder += 256 * num_classes + num_classes  # classifier
    return aspp + decoder


def test_parameter_count(models, reference_resnet):
    model = models[16]
    backbone = reference_resnet.count_params()
    assert backbone == 23_587_712
    assert model.count_params() == backbone + _expected_parameter_count(NUM_CLASSES)
    assert model.count_params() == 39_292_084
    # Dilation changes no parameter: all output strides have the same count.
    assert models[8].count_params() == models[32].count_params() == model.count_params()


def test_every_trainable_variable_gets_a_gradient(models):
    model = models[32]
    x = preprocess_images(_images((2, 33, 33, 3)))
    labels = tf.constant(np.random.default_rng(0).integers(0, NUM_CLASSES, (2, 33, 33)))
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        )
    grads = tape.gradient(loss, model.trainable_variables)
    assert len(grads) == len(model.trainable_variables) > 0
    missing = [v.path for v, g in zip(model.trainable_variables, grads, strict=True) if g is None]
    assert missing == []


# --- serialization -------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer, inputs",
    [
        (ConvBNReLU(8, 3, dilation_rate=2, name="cbr"), [(1, 9, 9, 5)]),
        (ConvBNReLU(8, 3, separable=True, name="sep"), [(1, 9, 9, 5)]),
        (ConvBNReLU(8, 1, bn_momentum=0.9, sync_batchnorm=True, name="cbr_bn"), [(1, 5, 5, 3)]),
        (ASPP(16, atrous_rates=(1, 2, 3), dropout_rate=0.2, name="aspp"), [(1, 7, 9, 12)]),
        (ASPP(8, atrous_rates=(1, 2, 3), bn_momentum=0.5, sync_batchnorm=True, name="aspp_bn"),
         [(1, 7, 9, 12)]),
        (DeepLabV3PlusDecoder(3, 8, 16, separable=False, name="dec"), [(1, 9, 9, 6), (1, 3, 3, 7)]),
        (DeepLabV3PlusDecoder(3, 8, 16, bn_momentum=0.8, sync_batchnorm=True, name="dec_bn"),
         [(1, 9, 9, 6), (1, 3, 3, 7)]),
        (ResizeLike(align_corners=False, name="rs"), [(1, 3, 4, 2), (1, 7, 9, 1)]),
    ],
)
def test_custom_layer_config_round_trip(layer, inputs):
    rng = np.random.default_rng(0)
    tensors = [tf.constant(rng.normal(size=s).astype("float32")) for s in inputs]
    args = tensors if len(tensors) > 1 else tensors[0]
    expected = layer(args, training=False) if not isinstance(layer, ResizeLike) else layer(args)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    bn_settings = {(la.momentum, la.synchronized) for la in _batch_norms(layer)}
    assert {(la.momentum, la.synchronized) for la in _batch_norms(clone)} == bn_settings
    # Registered for Keras serialization (needed by .keras files).
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config
    # Same config + same weights = same function.
    clone.build([tuple(s) for s in inputs] if len(inputs) > 1 else inputs[0])
    clone.set_weights(layer.get_weights())
    actual = clone(args, training=False) if not isinstance(layer, ResizeLike) else clone(args)
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


# --- ImageNet initialisation ---------------------------------------------------------


def _write_published_layout(path, model: keras.Model) -> None:
    """Writes ``model``'s weights the way the published Keras 2 notop file stores them.

    Root attrs ``layer_names`` / ``backend`` / ``keras_version`` (bytes), one group per
    layer with attr ``weight_names`` like ``b"conv1_conv/kernel:0"``, datasets at
    ``<layer>/<layer>/<weight>:0``.
    """
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([layer.name.encode() for layer in model.layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{v.name}:0".encode() for v in layer.weights]
            group.attrs["weight_names"] = np.array(names, dtype="S")
            for name, v in zip(names, layer.weights, strict=True):
                group.create_dataset(name.decode(), data=v.numpy())


def _write_legacy_keras_writer(path, model: keras.Model) -> None:
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def _write_keras3(path, model: keras.Model) -> None:
    model.save_weights(str(path))


@pytest.mark.parametrize(
    "writer, filename",
    [
        (_write_published_layout, init.IMAGENET_WEIGHTS_FILENAME),
        (_write_legacy_keras_writer, "legacy_writer.h5"),
        (_write_keras3, "keras3.weights.h5"),
    ],
)
def test_load_imagenet_weights_copies_every_backbone_weight(
    tmp_path, models, reference_resnet, writer, filename
):
    path = tmp_path / filename
    writer(path, reference_resnet)
    model = models[16]
    assert init.load_imagenet_weights(model, path) == RESNET50_WEIGHTED_LAYERS
    layers = variables = 0
    for ref_layer in reference_resnet.layers:
        if not ref_layer.weights:
            continue
        ours = model.get_layer(ref_layer.name)
        names = [v.name for v in ours.weights]
        assert names == [v.name for v in ref_layer.weights]
        for mine, theirs in zip(ours.weights, ref_layer.weights, strict=True):
            np.testing.assert_array_equal(
                mine.numpy(), theirs.numpy()
            )
            variables += 1
        layers += 1
    assert layers == RESNET50_WEIGHTED_LAYERS
    assert variables == 53 * 2 + 53 * 4  # conv kernel+bias, BN gamma/beta/mean/variance


def test_loaded_os32_backbone_reproduces_keras_applications(tmp_path, reference_resnet):
    path = tmp_path / init.IMAGENET_WEIGHTS_FILENAME
    _write_published_layout(path, reference_resnet)
    backbone = build_resnet50_backbone(output_stride=32)
    assert init.load_imagenet_weights(backbone, tmp_path) == RESNET50_WEIGHTED_LAYERS
    x = preprocess_images(_images((1, 64, 96, 3)))
    expected = reference_resnet(x, training=False).numpy()
    actual = backbone(x, training=False)["high_level"].numpy()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual / scale, expected / scale, atol=1e-5)


def test_missing_weights_file_names_the_keras_file(tmp_path):
    missing = tmp_path / "nowhere.h5"
    with pytest.raises(FileNotFoundError) as err:
        init.load_imagenet_weights(keras.Sequential(), missing)
    message = str(err.value)
    assert str(missing) in message
    assert init.IMAGENET_WEIGHTS_FILENAME in message
    assert init.IMAGENET_WEIGHTS_URL in message
    assert "~/.keras/models/" in message


@pytest.mark.parametrize("path", [None, "", "none", "None"])
def test_none_means_random_init(models, path):
    before = models[8].get_layer("conv1_conv").kernel.numpy()
    assert init.load_imagenet_weights(models[8], path) == 0
    np.testing.assert_array_equal(models[8].get_layer("conv1_conv").kernel.numpy(), before)


def test_incomplete_weights_file_is_an_error(tmp_path, models, reference_resnet):
    path = tmp_path / "partial.h5"
    stem = keras.Model(reference_resnet.input, reference_resnet.get_layer("conv1_relu").output)
    _write_published_layout(path, stem)
    before = models[8].get_layer("conv1_conv").kernel.numpy()
    with pytest.raises(ValueError, match="no weights for 104 backbone layers"):
        init.load_imagenet_weights(models[8], path)
    # Nothing half-loaded.
    np.testing.assert_array_equal(models[8].get_layer("conv1_conv").kernel.numpy(), before)
