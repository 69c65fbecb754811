"""DeepLabV3+ assembly: dilated ResNet-50 -> ASPP -> decoder -> logits at input size.

    f4, fs = resnet50(x)                      strides 4 and OS (8, 16 or 32)
    logits4 = decoder(f4, aspp(fs))           stride 4, num_classes channels
    logits = resize_bilinear(logits4, size(x))

The backbone's layers sit at the top level of the model under their Keras
Applications names (``conv1_conv`` ... ``conv5_block3_3_bn``), so
``model.get_layer("conv4_block1_2_conv")`` works and ImageNet weights load by name.
"""

from __future__ import annotations

import keras

from sercseg_tf.formats import SAMPLE_IMAGE
from sercseg_tf.labels import NUM_CLASSES
from sercseg_tf.model.aspp import ASPP, atrous_rates_for_output_stride
from sercseg_tf.model.decoder import DeepLabV3PlusDecoder, ResizeLike
from sercseg_tf.model.resnet import resnet50_features

ASPP_LAYER = "aspp"
DECODER_LAYER = "decoder"
LOGITS_LAYER = "logits"


def build_deeplab(
    num_classes: int = NUM_CLASSES,
    output_stride: int = 16,
    aspp_dropout: float = 0.1,
    decoder_separable: bool = True,
    name: str = "deeplabv3plus",
    bn_momentum: float = 0.99,
    sync_batchnorm: bool = False,
) -> keras.Model:
    """Builds DeepLabV3+ with a dilated ResNet-50 backbone (random init).

    Args:
      num_classes: number of output classes (4: background, oocyte, sERC, needle).
      output_stride: backbone output stride, 8, 16 or 32; sets the dilation of the
        last stage(s) and the ASPP rates (`atrous_rates_for_output_stride`).
      aspp_dropout: dropout rate after the ASPP projection.
      decoder_separable: depthwise-separable (True) or plain 3x3 decoder convolutions.
      name: model name.
      bn_momentum: moving-average momentum of every BatchNormalization layer (Keras
        convention ``moving = m * moving + (1 - m) * batch``).
      sync_batchnorm: every BatchNormalization computes its training-mode statistics
        over the global batch across replicas (Keras ``synchronized=True``).

    The layers take their dtype policy from the global Keras policy at build time
    (`sercseg_tf.training.precision`): under ``mixed_bfloat16`` the convolutions run in
    bfloat16 on float32 weights; BatchNorm statistics, the classifier and the logits stay
    float32.

    Returns:
      ``keras.Model`` mapping float32 ``[B, H, W, 3]`` preprocessed images
      (`sercseg_tf.model.preprocessing.preprocess_images`) of any size to float32
      logits ``[B, H, W, num_classes]``. Sizes ``OS*k+1`` align all feature grids.
      Load ImageNet weights with `sercseg_tf.model.init.load_imagenet_weights`.
    """
    inputs = keras.Input(shape=(None, None, 3), dtype="float32", name=SAMPLE_IMAGE)
    bn = {"bn_momentum": bn_momentum, "sync_batchnorm": sync_batchnorm}
    features = resnet50_features(inputs, output_stride, **bn)
    aspp = ASPP(
        output_channels=256,
        atrous_rates=atrous_rates_for_output_stride(output_stride),
        dropout_rate=aspp_dropout,
        name=ASPP_LAYER,
        **bn,
    )(features["high_level"])
    logits = DeepLabV3PlusDecoder(
        num_classes=num_classes, separable=decoder_separable, name=DECODER_LAYER, **bn
    )([features["low_level"], aspp])
    logits = ResizeLike(name=LOGITS_LAYER, dtype="float32")([logits, inputs])
    return keras.Model(inputs, logits, name=name)
