"""Atrous Spatial Pyramid Pooling (ASPP), DeepLabV3 (Chen et al., arXiv:1706.05587).

Five parallel branches on the backbone's output-stride features, each producing
``output_channels`` (256) channels with BatchNorm + ReLU:

    b0 = relu(bn(conv1x1(x)))
    b1..b3 = relu(bn(conv3x3_rate_r(x)))             r in atrous_rates
    b4 = broadcast(relu(bn(conv1x1(mean_hw(x)))))    image pooling branch
    y = dropout(relu(bn(conv1x1(concat(b0..b4)))))   projection to output_channels

The image-level branch averages over the whole (dynamic) spatial extent and
broadcasts back; a bilinear resize of a 1x1 map is the same constant, so any input
size works at run time. Convolutions before BatchNorm carry no bias (as in deeplab2).
`ConvBNReLU`, the conv + BatchNorm + ReLU unit of both ASPP and the decoder, lives here.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from sercseg_tf.model import fast_layers
from sercseg_tf.model.resnet import check_output_stride

# DeepLabV3 rates at output stride 16, scaled inversely with the output stride.
_RATES_AT_OS16: tuple[int, int, int] = (6, 12, 18)


def atrous_rates_for_output_stride(output_stride: int) -> tuple[int, int, int]:
    """Returns the ASPP 3x3 rates: (12,24,36) at OS8, (6,12,18) at OS16, (3,6,9) at OS32.

    Implements ``rate_i = rate_i(OS16) * 16 / output_stride`` so the branches see the
    same field of view in input pixels at every output stride.
    """
    check_output_stride(output_stride)
    return tuple(r * 16 // output_stride for r in _RATES_AT_OS16)


@keras.saving.register_keras_serializable(package="sercseg_tf")
class ConvBNReLU(keras.layers.Layer):
    """Convolution + BatchNorm + ReLU, plain or depthwise-separable, 'same' padding.

    Plain: ``y = relu(bn(conv_kxk_rate(x)))``. Separable (Xception / DeepLabV3+,
    Chen et al. ECCV 2018): ``y = relu(bn_p(conv1x1(relu(bn_d(depthwise_kxk_rate(x))))))``.
    No convolution bias (BatchNorm follows).

    Args:
      filters: output channels.
      kernel_size: spatial kernel size (square).
      dilation_rate: atrous rate of the kxk convolution.
      separable: depthwise-separable instead of a plain convolution.
      bn_momentum: moving-average momentum of the BatchNormalization layer(s).
      sync_batchnorm: BatchNormalization statistics over all replicas (Keras
        ``synchronized``).
      **kwargs: `keras.layers.Layer` arguments.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        dilation_rate: int = 1,
        separable: bool = False,
        bn_momentum: float = 0.99,
        sync_batchnorm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.dilation_rate = int(dilation_rate)
        self.separable = bool(separable)
        self.bn_momentum = float(bn_momentum)
        self.sync_batchnorm = bool(sync_batchnorm)
        if self.separable:
            self.steps = [
                keras.layers.DepthwiseConv2D(
                    self.kernel_size,
                    padding="same",
                    dilation_rate=self.dilation_rate,
                    use_bias=False,
                    name="depthwise_conv",
                ),
                self._batch_norm("depthwise_bn"),
                keras.layers.ReLU(name="depthwise_relu"),
                fast_layers.Conv2D(self.filters, 1, use_bias=False, name="pointwise_conv"),
                self._batch_norm("pointwise_bn"),
                keras.layers.ReLU(name="pointwise_relu"),
            ]
        else:
            self.steps = [
                fast_layers.Conv2D(
                    self.filters,
                    self.kernel_size,
                    padding="same",
                    dilation_rate=self.dilation_rate,
                    use_bias=False,
                    name="conv",
                ),
                self._batch_norm("bn"),
                keras.layers.ReLU(name="relu"),
            ]

    def _batch_norm(self, name: str) -> keras.layers.BatchNormalization:
        return fast_layers.BatchNormalization(
            momentum=self.bn_momentum, synchronized=self.sync_batchnorm, name=name
        )

    def build(self, input_shape):
        """Builds the sub-layers for a ``[B, h, w, C]`` input."""
        shape = tuple(input_shape)
        for step in self.steps:
            step.build(shape)
            shape = tuple(step.compute_output_shape(shape))
        self.built = True

    def call(self, inputs, training=None):
        """Applies the unit; ``training`` switches BatchNorm."""
        x = inputs
        for step in self.steps:
            if isinstance(step, keras.layers.BatchNormalization):
                x = step(x, training=training)
            else:
                x = step(x)
        return x

    def compute_output_shape(self, input_shape):
        """Returns ``input_shape`` with ``filters`` channels."""
        return (*tuple(input_shape)[:-1], self.filters)

    def get_config(self) -> dict:
        """Returns the constructor arguments (Keras serialization)."""
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            dilation_rate=self.dilation_rate,
            separable=self.separable,
            bn_momentum=self.bn_momentum,
            sync_batchnorm=self.sync_batchnorm,
        )
        return config


@keras.saving.register_keras_serializable(package="sercseg_tf")
class ASPP(keras.layers.Layer):
    """ASPP head: 1x1, three atrous 3x3 and an image-pooling branch, then a projection.

    Args:
      output_channels: channels of every branch and of the projection (256).
      atrous_rates: dilation rates of the three 3x3 branches; see
        `atrous_rates_for_output_stride`.
      dropout_rate: dropout after the projection (0.1).
      bn_momentum: moving-average momentum of every BatchNormalization.
      sync_batchnorm: BatchNormalization statistics over all replicas.
      **kwargs: `keras.layers.Layer` arguments (name, dtype, ...).

    Input ``[B, h, w, C]``; output ``[B, h, w, output_channels]``.
    """

    def __init__(
        self,
        output_channels: int = 256,
        atrous_rates: Sequence[int] = _RATES_AT_OS16,
        dropout_rate: float = 0.1,
        bn_momentum: float = 0.99,
        sync_batchnorm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if len(atrous_rates) != 3:
            raise ValueError(f"ASPP needs three atrous rates, got {list(atrous_rates)}")
        self.output_channels = int(output_channels)
        self.atrous_rates = tuple(int(r) for r in atrous_rates)
        self.dropout_rate = float(dropout_rate)
        self.bn_momentum = float(bn_momentum)
        self.sync_batchnorm = bool(sync_batchnorm)
        bn = {"bn_momentum": self.bn_momentum, "sync_batchnorm": self.sync_batchnorm}
        self.conv1x1 = ConvBNReLU(self.output_channels, 1, name="conv1x1", **bn)
        self.atrous_branches = [
            ConvBNReLU(self.output_channels, 3, rate, name=f"atrous{i + 1}", **bn)
            for i, rate in enumerate(self.atrous_rates)
        ]
        self.pool_branch = ConvBNReLU(self.output_channels, 1, name="image_pooling", **bn)
        self.projection = ConvBNReLU(self.output_channels, 1, name="projection", **bn)
        self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout")

    def build(self, input_shape):
        """Builds every branch for a ``[B, h, w, C]`` input (h, w may be None)."""
        batch, _, _, channels = input_shape
        self.conv1x1.build(input_shape)
        for branch in self.atrous_branches:
            branch.build(input_shape)
        self.pool_branch.build((batch, 1, 1, channels))
        self.projection.build((batch, None, None, 5 * self.output_channels))
        self.dropout.build((batch, None, None, self.output_channels))
        self.built = True

    def call(self, inputs, training=None):
        """Applies ASPP; ``training`` switches BatchNorm and dropout."""
        branches = [self.conv1x1(inputs, training=training)]
        branches += [b(inputs, training=training) for b in self.atrous_branches]
        # The spatial mean accumulates in float32 (a bfloat16 mean loses precision and, on
        # CPU, was the slowest op of the bfloat16 model).
        pooled = keras.ops.mean(keras.ops.cast(inputs, "float32"), axis=(1, 2), keepdims=True)
        pooled = self.pool_branch(keras.ops.cast(pooled, inputs.dtype), training=training)
        # Bilinear upsampling of a 1x1 map is a broadcast; this works for dynamic h, w.
        branches.append(pooled * keras.ops.ones_like(branches[0]))
        x = keras.ops.concatenate(branches, axis=-1)
        x = self.projection(x, training=training)
        return self.dropout(x, training=training)

    def compute_output_shape(self, input_shape):
        """Returns ``input_shape`` with ``output_channels`` channels."""
        return (*tuple(input_shape)[:-1], self.output_channels)

    def get_config(self) -> dict:
        """Returns the constructor arguments (Keras serialization)."""
        config = super().get_config()
        config.update(
            output_channels=self.output_channels,
            atrous_rates=list(self.atrous_rates),
            dropout_rate=self.dropout_rate,
            bn_momentum=self.bn_momentum,
            sync_batchnorm=self.sync_batchnorm,
        )
        return config
