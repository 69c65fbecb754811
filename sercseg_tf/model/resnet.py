"""Dilated ResNet-50 (v1) backbone with Keras Applications layer names.

The layer structure and names follow ``keras.applications.ResNet50`` exactly
(``conv1_pad``, ``conv1_conv``, ``conv1_bn``, ``conv1_relu``, ``pool1_pad``, ``pool1_pool``,
``convS_blockB_{0,1,2,3}_{conv,bn}``, ``convS_blockB_{1,2}_relu``, ``convS_blockB_add``,
``convS_blockB_out``), so its ImageNet weights load layer by layer by name
(`sercseg_tf.model.init`). Keras Applications' v1 block puts the stride on the first
1x1 convolution and on the 1x1 shortcut projection.

Atrous (dilated) convolution (Chen et al., DeepLab, TPAMI 2018; DeepLabV3 2017) keeps
the resolution of the last stage(s): once the accumulated stride reaches the requested
output stride, later stages use stride 1 and multiply the dilation rate of their 3x3
convolutions by the stride they skip instead:

    output stride 32: conv4 stride 2 rate 1, conv5 stride 2 rate 1 (plain ResNet-50)
    output stride 16: conv4 stride 2 rate 1, conv5 stride 1 rate 2 (default)
    output stride  8: conv4 stride 1 rate 2, conv5 stride 1 rate 4

Dilation changes no kernel shape, so the ImageNet kernels apply unchanged.
"""

from __future__ import annotations

import keras

from sercseg_tf.formats import SAMPLE_IMAGE
from sercseg_tf.model import fast_layers

# Keras Applications ResNet-50: (stage name, bottleneck filters, blocks, nominal stride).
RESNET50_STAGES: tuple[tuple[str, int, int, int], ...] = (
    ("conv2", 64, 3, 1),
    ("conv3", 128, 4, 2),
    ("conv4", 256, 6, 2),
    ("conv5", 512, 3, 2),
)
SUPPORTED_OUTPUT_STRIDES: tuple[int, ...] = (8, 16, 32)
# Keras Applications' BatchNormalization epsilon; the ImageNet statistics expect it.
BN_EPSILON = 1.001e-5
# Names of the two feature maps the backbone returns.
LOW_LEVEL_FEATURES = "conv2_block3_out"  # stride 4, 256 channels
HIGH_LEVEL_FEATURES = "conv5_block3_out"  # output stride, 2048 channels
LOW_LEVEL_STRIDE = 4


def check_output_stride(output_stride: int) -> int:
    """Returns ``output_stride`` if supported (8, 16 or 32), else raises ValueError."""
    if output_stride not in SUPPORTED_OUTPUT_STRIDES:
        raise ValueError(
            f"output_stride must be one of {SUPPORTED_OUTPUT_STRIDES}, got {output_stride}"
        )
    return output_stride


def stage_strides_and_rates(output_stride: int) -> dict[str, tuple[int, int]]:
    """Returns ``{stage: (stride, dilation_rate)}`` for the four residual stages.

    The accumulated stride after the stem is 4. A stage whose nominal stride would
    push the accumulated stride beyond ``output_stride`` gets stride 1 and its
    dilation rate is multiplied by the nominal stride (atrous algorithm).

    Args:
      output_stride: 8, 16 or 32.

    Returns:
      Mapping such as ``{"conv2": (1, 1), "conv3": (2, 1), "conv4": (2, 1),
      "conv5": (1, 2)}`` for output stride 16.
    """
    check_output_stride(output_stride)
    current_stride, rate = LOW_LEVEL_STRIDE, 1
    plan = {}
    for stage, _, _, stride in RESNET50_STAGES:
        if current_stride * stride > output_stride:
            rate *= stride
            plan[stage] = (1, rate)
        else:
            current_stride *= stride
            plan[stage] = (stride, rate)
    return plan


def _batch_norm(name: str, momentum: float, synchronized: bool) -> keras.layers.Layer:
    """A Keras Applications BatchNormalization (channels last, ``BN_EPSILON``)."""
    return fast_layers.BatchNormalization(
        axis=-1, epsilon=BN_EPSILON, momentum=momentum, synchronized=synchronized, name=name
    )


def _bottleneck_block(
    x,
    filters: int,
    stride: int,
    rate: int,
    conv_shortcut: bool,
    name: str,
    bn_momentum: float = 0.99,
    sync_batchnorm: bool = False,
):
    """One Keras Applications ResNet v1 bottleneck block with an optional dilation.

    ``y = relu(shortcut(x) + bn3(conv3(relu(bn2(conv2_rate(relu(bn1(conv1_stride(x)))))))))``
    """
    bn = {"momentum": bn_momentum, "synchronized": sync_batchnorm}
    if conv_shortcut:
        shortcut = fast_layers.Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = _batch_norm(f"{name}_0_bn", **bn)(shortcut)
    else:
        shortcut = x
    x = fast_layers.Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
    x = _batch_norm(f"{name}_1_bn", **bn)(x)
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = fast_layers.Conv2D(
        filters, 3, padding="same", dilation_rate=rate, name=f"{name}_2_conv"
    )(x)
    x = _batch_norm(f"{name}_2_bn", **bn)(x)
    x = keras.layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = fast_layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    x = _batch_norm(f"{name}_3_bn", **bn)(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def resnet50_features(
    inputs, output_stride: int = 16, bn_momentum: float = 0.99, sync_batchnorm: bool = False
) -> dict[str, keras.KerasTensor]:
    """Applies a dilated ResNet-50 to a Keras tensor (functional API).

    The layers are created in the caller's graph, so a model built on the result holds
    them at top level under their Keras Applications names.

    Args:
      inputs: Keras tensor ``[B, H, W, 3]``, preprocessed
        (`sercseg_tf.model.preprocessing.preprocess_images`).
      output_stride: 8, 16 or 32 (see `stage_strides_and_rates`).
      bn_momentum: moving-average momentum of every BatchNormalization.
      sync_batchnorm: BatchNormalization statistics over all replicas (Keras
        ``synchronized``).

    Returns:
      ``{"low_level": stride-4 features [B, h4, w4, 256] (conv2_block3_out),
      "high_level": output-stride features [B, hs, ws, 2048] (conv5_block3_out)}``.
      For an input of size ``OS*k+1`` the output has ``k+1`` rows/columns.
    """
    plan = stage_strides_and_rates(output_stride)
    x = keras.layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(inputs)
    x = fast_layers.Conv2D(64, 7, strides=2, name="conv1_conv")(x)
    x = _batch_norm("conv1_bn", bn_momentum, sync_batchnorm)(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    low_level = None
    for stage, filters, blocks, _ in RESNET50_STAGES:
        stride, rate = plan[stage]
        for block in range(1, blocks + 1):
            x = _bottleneck_block(
                x,
                filters,
                stride=stride if block == 1 else 1,
                rate=rate,
                conv_shortcut=block == 1,
                name=f"{stage}_block{block}",
                bn_momentum=bn_momentum,
                sync_batchnorm=sync_batchnorm,
            )
        if stage == "conv2":
            low_level = x
    return {"low_level": low_level, "high_level": x}


def build_resnet50_backbone(
    output_stride: int = 16,
    name: str = "resnet50",
    bn_momentum: float = 0.99,
    sync_batchnorm: bool = False,
) -> keras.Model:
    """Builds the dilated ResNet-50 as a stand-alone model with two outputs.

    Args:
      output_stride: 8, 16 or 32.
      name: model name.
      bn_momentum: moving-average momentum of every BatchNormalization.
      sync_batchnorm: BatchNormalization statistics over all replicas.

    Returns:
      ``keras.Model`` taking float32 ``[B, None, None, 3]`` preprocessed images and
      returning ``{"low_level": [B, h/4, w/4, 256], "high_level": [B, h/OS, w/OS, 2048]}``.
    """
    inputs = keras.Input(shape=(None, None, 3), dtype="float32", name=SAMPLE_IMAGE)
    features = resnet50_features(inputs, output_stride, bn_momentum, sync_batchnorm)
    return keras.Model(inputs, features, name=name)
