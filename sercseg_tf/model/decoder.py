"""DeepLabV3+ decoder and the bilinear resize used between feature strides.

Chen et al., "Encoder-Decoder with Atrous Separable Convolution", ECCV 2018:

    low = relu(bn(conv1x1_48(f_stride4)))
    up = resize_bilinear(aspp_out, size(low))
    y = conv1x1_num_classes(fuse2(fuse1(concat(low, up))))     stride-4 logits

fuse1/fuse2 are 3x3 convolutions at 256 channels with BatchNorm + ReLU
(depthwise-separable by default, plain as an option). Under a mixed-precision policy
the classifier computes in float32, so the logits are float32 in every precision.

Resizes use bilinear interpolation with ``align_corners=True`` as deeplab2 does: with
inputs of size ``OS*k+1`` the corner pixels of every feature stride coincide, so the
stride-4 and output-stride grids (and the logits and the input) align exactly.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from sercseg_tf.model.aspp import ConvBNReLU


def resize_bilinear(images, size, align_corners: bool = True):
    """Bilinearly resizes ``[B, h, w, C]`` to ``size = (H, W)`` (static or dynamic).

    With ``align_corners=True`` output pixel ``i`` samples input position
    ``i * (h - 1) / (H - 1)`` (deeplab2 ``utils.resize_bilinear``). The dtype of
    ``images`` is kept. ``keras.ops.image.resize`` has no align-corners mode and
    needs a static size, hence TensorFlow here.

    Args:
      images: float tensor ``[B, h, w, C]``.
      size: target ``(H, W)`` as ints or an int32 tensor.
      align_corners: corner-aligned sampling (True) or TF2 half-pixel centres (False).

    Returns:
      ``[B, H, W, C]`` tensor of the input dtype.
    """
    resized = tf.compat.v1.image.resize(
        images,
        size,
        method=tf.image.ResizeMethod.BILINEAR,
        align_corners=align_corners,
    )
    return tf.cast(resized, images.dtype)


@keras.saving.register_keras_serializable(package="sercseg_tf")
class ResizeLike(keras.layers.Layer):
    """Resizes ``inputs[0]`` bilinearly to the spatial size of ``inputs[1]``.

    Args:
      align_corners: see `resize_bilinear`.
      **kwargs: `keras.layers.Layer` arguments.
    """

    def __init__(self, align_corners: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.align_corners = bool(align_corners)

    def call(self, inputs):
        """Returns ``inputs[0]`` resized to ``shape(inputs[1])[1:3]``."""
        images, reference = inputs
        size = tf.shape(reference)[1:3]
        return resize_bilinear(images, size, align_corners=self.align_corners)

    def compute_output_shape(self, input_shape):
        """Returns ``[B, H_ref, W_ref, C]``."""
        images_shape, reference_shape = input_shape
        return (images_shape[0], reference_shape[1], reference_shape[2], images_shape[-1])

    def get_config(self) -> dict:
        """Returns the constructor arguments (Keras serialization)."""
        config = super().get_config()
        config.update(align_corners=self.align_corners)
        return config


@keras.saving.register_keras_serializable(package="sercseg_tf")
class DeepLabV3PlusDecoder(keras.layers.Layer):
    """Fuses stride-4 backbone features with the ASPP output into stride-4 logits.

    Args:
      num_classes: logits channels.
      low_level_channels: channels of the stride-4 projection (48).
      decoder_channels: channels of the two 3x3 fusion convolutions (256).
      separable: depthwise-separable fusion convolutions (DeepLabV3+ default) or plain.
      bn_momentum: moving-average momentum of every BatchNormalization.
      sync_batchnorm: BatchNormalization statistics over all replicas.
      **kwargs: `keras.layers.Layer` arguments.

    Call with ``[low_level [B, h4, w4, C_low], aspp [B, hs, ws, C_aspp]]``; returns
    logits ``[B, h4, w4, num_classes]``.
    """

    def __init__(
        self,
        num_classes: int,
        low_level_channels: int = 48,
        decoder_channels: int = 256,
        separable: bool = True,
        bn_momentum: float = 0.99,
        sync_batchnorm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.low_level_channels = int(low_level_channels)
        self.decoder_channels = int(decoder_channels)
        self.separable = bool(separable)
        self.bn_momentum = float(bn_momentum)
        self.sync_batchnorm = bool(sync_batchnorm)
        bn = {"bn_momentum": self.bn_momentum, "sync_batchnorm": self.sync_batchnorm}
        self.low_level_projection = ConvBNReLU(
            self.low_level_channels, 1, name="low_level_projection", **bn
        )
        self.fuse1 = ConvBNReLU(
            self.decoder_channels, 3, separable=self.separable, name="fuse1", **bn
        )
        self.fuse2 = ConvBNReLU(
            self.decoder_channels, 3, separable=self.separable, name="fuse2", **bn
        )
        # float32 under any mixed-precision policy: the logits feed softmax, loss and
        # argmax, and cost one 1x1 conv to 4 channels.
        self.classifier = keras.layers.Conv2D(self.num_classes, 1, name="classifier",
                                              dtype="float32")

    def build(self, input_shape):
        """Builds the sub-layers for ``[low_level_shape, aspp_shape]``."""
        low_shape, aspp_shape = (tuple(s) for s in input_shape)
        batch = low_shape[0]
        self.low_level_projection.build(low_shape)
        fused_channels = self.low_level_channels + aspp_shape[-1]
        self.fuse1.build((batch, None, None, fused_channels))
        self.fuse2.build((batch, None, None, self.decoder_channels))
        self.classifier.build((batch, None, None, self.decoder_channels))
        self.built = True

    def call(self, inputs, training=None):
        """Returns stride-4 logits; ``training`` switches BatchNorm."""
        low_level, aspp = inputs
        low_level = self.low_level_projection(low_level, training=training)
        aspp = resize_bilinear(aspp, tf.shape(low_level)[1:3])
        x = keras.ops.concatenate([low_level, aspp], axis=-1)
        x = self.fuse1(x, training=training)
        x = self.fuse2(x, training=training)
        return self.classifier(x)

    def compute_output_shape(self, input_shape):
        """Returns the low-level shape with ``num_classes`` channels."""
        low_shape = tuple(input_shape[0])
        return (*low_shape[:-1], self.num_classes)

    def get_config(self) -> dict:
        """Returns the constructor arguments (Keras serialization)."""
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            low_level_channels=self.low_level_channels,
            decoder_channels=self.decoder_channels,
            separable=self.separable,
            bn_momentum=self.bn_momentum,
            sync_batchnorm=self.sync_batchnorm,
        )
        return config
