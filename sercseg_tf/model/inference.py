"""Whole-frame inference and SavedModel export with preprocessing and padding in the graph.

`predict_logits` is the one inference path, used both in process (evaluation) and
inside the exported SavedModel, so exported and in-process predictions agree (the
disagreement deeplab2 users reported in its issue #110 came from two paths):

    x = resize(images, floor(image_scale * (H, W)))   bilinear, as the input pipeline
    x = preprocess(x)                                 caffe-style ImageNet normalisation
    x = mirror_pad(x, to OS*k+1)                      split over both sides, see below
    logits = model(x, training=False)[pad]            crop the padding away
    logits = resize(logits, (H, W))                   bilinear, back to the input size

(``resize`` is ``tf.image.resize``, half-pixel centres, as in the input pipeline.)
`predict_preprocessed` is the pad-model-crop part alone, for evaluation on the
already preprocessed images of the input pipeline.

Padding (a deliberate deviation from deeplab2, which pads bottom/right with the mean
colour): the frame is extended by mirroring (``numpy.pad(mode="symmetric")``), the
padding split between top/bottom and left/right. A model trained on crops cut from
inside larger frames never sees a flat mean-colour band; at the demo's scale a
300x400 frame needs 21 rows and 17 columns of it to reach 321x417, and the demo
model painted oocyte over that band and missed needles entering at the padded edge
(the same checkpoint on held-out case 5: mean IoU 0.58 with mean-colour padding,
0.74 mirrored). At the paper's 480x640 the padding is one pixel either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from sercseg_tf import atomic_io
from sercseg_tf import model_card as model_card_lib
from sercseg_tf.fault_points import fault_point
from sercseg_tf.formats import SERVING_INPUT, SERVING_PRED, SERVING_PROBS, SERVING_SIGNATURE
from sercseg_tf.model import postprocess
from sercseg_tf.model.preprocessing import preprocess_images
from sercseg_tf.model.resnet import check_output_stride


def scaled_size(height, width, image_scale: float):
    """Returns ``(max(1, floor(image_scale * height)), max(1, floor(image_scale * width)))``.

    The same rule as the input pipeline (`sercseg_tf.data.augment.scaled_size`, from
    deeplab2's ``randomly_scale_image_and_label``), so inference sees frames at the size
    training saw them. Works on Python ints and on scalar int tensors (then int32 tensors).
    """
    if isinstance(height, int) and isinstance(width, int):
        scale32 = np.float32(image_scale)
        return (
            max(1, int(np.float32(height) * scale32)),
            max(1, int(np.float32(width) * scale32)),
        )

    def scale(n):
        scaled = tf.cast(tf.cast(n, tf.float32) * tf.constant(image_scale, tf.float32), tf.int32)
        return tf.maximum(scaled, 1)

    return scale(height), scale(width)


def padded_size(size, output_stride: int):
    """Returns the smallest ``OS*k+1 >= size`` (the crop sizes that align all strides).

    Implements ``ceil((size - 1) / OS) * OS + 1``; works on ints and int tensors.
    """
    return (size - 1 + output_stride - 1) // output_stride * output_stride + 1


def _mirror_indices(size, before, after) -> tf.Tensor:
    """Source index of each padded position, ``numpy.pad(mode="symmetric")`` style.

    Position ``i`` in ``[-before, size + after)`` reads ``j = i mod 2*size``, folded back
    as ``2*size - 1 - j`` when ``j >= size`` (the edge pixel repeats: ... 1 0 | 0 1 ...
    n-1 | n-1 n-2 ...), so any amount of padding is defined, even more than ``size``.
    """
    period = 2 * size
    i = tf.math.floormod(tf.range(-before, size + after), period)
    return tf.where(i >= size, period - 1 - i, i)


def mirror_pad(images: tf.Tensor, output_stride: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Mirror-pads ``[B, h, w, C]`` to ``OS*k+1`` on both axes, split over both sides.

    Returns:
      ``(padded, top, left)``: the padded batch and the rows/columns added before the
      frame (``floor(pad / 2)``; the rest goes after it), to crop the output with.
    """
    shape = tf.shape(images)
    h, w = shape[1], shape[2]
    pad_h = padded_size(h, output_stride) - h
    pad_w = padded_size(w, output_stride) - w
    top, left = pad_h // 2, pad_w // 2
    x = tf.gather(images, _mirror_indices(h, top, pad_h - top), axis=1)
    x = tf.gather(x, _mirror_indices(w, left, pad_w - left), axis=2)
    return x, top, left


def _pad_model_crop(model: keras.Model, x: tf.Tensor, output_stride: int) -> tf.Tensor:
    """Mirror-pads ``x`` to ``OS*k+1``, runs the model (inference mode), crops the logits."""
    shape = tf.shape(x)
    h, w = shape[1], shape[2]
    padded, top, left = mirror_pad(x, output_stride)
    logits = tf.cast(model(padded, training=False), tf.float32)
    return logits[:, top:top + h, left:left + w, :]


def predict_preprocessed(model: keras.Model, images, output_stride: int = 16,
                         add_flipped_images: bool = False) -> tf.Tensor:
    """Mirror-pads preprocessed images to ``OS*k+1``, runs the model, crops the logits.

    With ``add_flipped_images`` (DeepLab's evaluation flag of that name) the frame and
    its left-right mirror image go through the model as one batch, and the prediction
    is the mean of the two class distributions, ``p = (softmax(z) + F(softmax(z_F))) / 2``
    (``z_F`` the logits of the mirrored frame, ``F`` the mirror). What is returned is
    then ``log p`` (`mean_distribution_logits` of ``z`` and ``F(z_F)``), so that
    ``softmax`` and ``argmax`` of the result are ``p`` and its class.

    Args:
      model: DeepLab model.
      images: preprocessed float32 ``[B, h, w, 3]`` of any size (e.g. the evaluation
        batches of `sercseg_tf.data.dataset.build_dataset`).
      output_stride: the model's output stride.
      add_flipped_images: also predict the mirrored frames and average (twice the work).

    Returns:
      float32 logits ``[B, h, w, num_classes]`` (log-probabilities with
      ``add_flipped_images``).
    """
    check_output_stride(output_stride)
    x = tf.convert_to_tensor(images, tf.float32)
    if not add_flipped_images:
        return _pad_model_crop(model, x, output_stride)
    batch = tf.shape(x)[0]
    both = _pad_model_crop(model, tf.concat([x, tf.reverse(x, axis=[2])], axis=0), output_stride)
    return mean_distribution_logits([both[:batch], tf.reverse(both[batch:], axis=[2])])


def mean_distribution_logits(logits: Sequence[tf.Tensor]) -> tf.Tensor:
    """``log p`` of the mean class distribution ``p = (1/n) sum_i softmax(z_i)``.

    Computed as ``logsumexp_i log_softmax(z_i) - log n``, finite even where one
    ``softmax(z_i)`` underflows to 0; ``softmax`` and ``argmax`` of the result are ``p``
    and its class. The test-time flip and the test-time scales both average this way.

    Args:
      logits: n float32 tensors of one shape ``[..., num_classes]``.
    """
    log_p = tf.stack([tf.nn.log_softmax(z, axis=-1) for z in logits])
    return (tf.reduce_logsumexp(log_p, axis=0)
            - tf.math.log(tf.constant(float(len(logits)), tf.float32)))


def _predict_at_scale(model: keras.Model, x: tf.Tensor, image_scale: float,
                      output_stride: int, add_flipped_images: bool) -> tf.Tensor:
    """Resize by ``image_scale``, normalise, pad-model-crop, resize the logits back."""
    shape = tf.shape(x)
    height, width = shape[1], shape[2]
    if image_scale != 1.0:
        # Resize then normalise, in the order of the input pipeline (both are linear, so
        # the order changes only float rounding).
        x = tf.image.resize(x, scaled_size(height, width, image_scale), method="bilinear")
    logits = predict_preprocessed(model, preprocess_images(x), output_stride,
                                  add_flipped_images)
    if image_scale != 1.0:
        logits = tf.image.resize(logits, tf.stack([height, width]), method="bilinear")
    return logits


def predict_logits(
    model: keras.Model,
    images_uint8,
    image_scale: float = 1.0,
    output_stride: int = 16,
    add_flipped_images: bool = False,
    eval_scales: Sequence[float] = (1.0,),
) -> tf.Tensor:
    """Runs the model on whole RGB frames of any size and returns logits at that size.

    tf.function-friendly (dynamic batch and spatial size); ``image_scale``,
    ``output_stride``, ``add_flipped_images`` and ``eval_scales`` are Python constants.

    With several ``eval_scales`` ``s_1..s_n`` (DeepLab's multi-scale inference) the frame
    is predicted at each scale ``image_scale * s_i``, the logits resized back to the
    frame, and the class distributions averaged, ``p = (1/n) sum_i softmax(z_i)``; what is
    returned is ``log p`` (`mean_distribution_logits`), so ``softmax`` and ``argmax`` of
    the result are ``p`` and its class. ``(1.0,)`` is the single pass.

    Args:
      model: DeepLab model taking preprocessed float32 ``[B, h, w, 3]``.
      images_uint8: RGB frames ``[B, H, W, 3]`` (uint8, or floats in [0, 255]).
      image_scale: factor the frames are resized by before the model (as in training).
      output_stride: the model's output stride; inputs are mirror-padded to ``OS*k+1``.
      add_flipped_images: average with the prediction of the mirrored frames
        (`predict_preprocessed`).
      eval_scales: test-time factors of ``image_scale``; n scales cost n passes.

    Returns:
      float32 logits ``[B, H, W, num_classes]`` (log-probabilities with
      ``add_flipped_images`` or several scales).
    """
    check_output_stride(output_stride)
    scales = tuple(float(s) for s in eval_scales)
    if not scales:
        raise ValueError("eval_scales is empty")
    x = tf.cast(tf.convert_to_tensor(images_uint8), tf.float32)
    if scales == (1.0,):
        return _predict_at_scale(model, x, image_scale, output_stride, add_flipped_images)
    return mean_distribution_logits([
        _predict_at_scale(model, x, image_scale * s, output_stride, add_flipped_images)
        for s in scales])


def _serving_module(model: keras.Model, image_scale: float, output_stride: int,
                    add_flipped_images: bool, eval_scales: tuple[float, ...],
                    keep_largest_oocyte: bool, needle_hysteresis_weight: float) -> tf.Module:
    """tf.Module with the ``serve`` tf.function and the model's variables, nothing more.

    The Keras model itself is not an attribute: saved along, its layers' own functions
    were serialised too (+8 s per export of the demo model, +2 s per load) though no
    caller uses them; ``serve`` reaches the model through its closure.
    """
    module = tf.Module(name="sercseg_serving")
    module.model_variables = list(model.variables)  # what the SavedModel stores

    @tf.function(
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=SERVING_INPUT)]
    )
    def serve(images):
        """``images: uint8[B,H,W,3]`` -> ``{semantic_pred: int32[B,H,W], semantic_probs}``."""
        logits = predict_logits(model, images, image_scale, output_stride, add_flipped_images,
                                eval_scales)
        logits = postprocess.postprocess_logits(logits, keep_largest_oocyte,
                                                needle_hysteresis_weight)
        return {
            SERVING_PRED: tf.argmax(logits, axis=-1, output_type=tf.int32),
            SERVING_PROBS: tf.nn.softmax(logits, axis=-1),
        }

    module.serve = serve
    return module


def export_saved_model(
    model: keras.Model,
    export_dir: str | os.PathLike,
    image_scale: float = 1.0,
    output_stride: int = 16,
    model_card: Mapping[str, Any] | None = None,
    add_flipped_images: bool = False,
    eval_scales: Sequence[float] = (1.0,),
    keep_largest_oocyte: bool = False,
    needle_hysteresis_weight: float = 1.0,
) -> Path:
    """Writes a TF SavedModel whose ``serving_default`` segments uint8 frames of any size.

    Signature: ``serving_default(images: uint8[B,H,W,3]) -> {semantic_pred: int32[B,H,W],
    semantic_probs: float32[B,H,W,num_classes]}`` with preprocessing, scaling, padding
    and cropping inside the graph (`predict_logits`). Written to a hidden sibling of
    ``export_dir`` and swapped in (`sercseg_tf.atomic_io.atomic_dir`), so a failed or
    killed export leaves the previous ``export_dir`` intact; folders get the usual
    umask modes (0755), not a temporary folder's 0700.

    Args:
      model: DeepLab model (preprocessed float input).
      export_dir: output directory.
      image_scale: frame scale used in training (`predict_logits`).
      output_stride: the model's output stride.
      model_card: written to ``assets/model_card.json`` (`sercseg_tf.model_card`), where
        predict reads the training frame size; None writes none.
      add_flipped_images: the graph averages each frame's prediction with its mirror
        image's (`predict_preprocessed`).
      eval_scales: the graph averages the predictions at these factors of
        ``image_scale`` (`predict_logits`).
      keep_largest_oocyte: the graph keeps only each frame's largest oocyte region
        (`sercseg_tf.model.postprocess`), in ``semantic_pred`` and ``semantic_probs``.
      needle_hysteresis_weight: the graph grows each frame's needle by hysteresis with
        this prior factor (`sercseg_tf.model.postprocess.grow_needle`; 1 = off).

    Returns:
      ``export_dir`` as a Path.
    """
    check_output_stride(output_stride)
    export_dir = Path(export_dir)
    module = _serving_module(model, float(image_scale), int(output_stride),
                             bool(add_flipped_images), tuple(float(s) for s in eval_scales),
                             bool(keep_largest_oocyte), float(needle_hysteresis_weight))
    # The gradients of the faster layers' custom-gradient ops are not saved (inference
    # only; saving them tripled the save time), so a loaded graph differentiates the
    # forward ops themselves: the same maths.
    options = tf.saved_model.SaveOptions(experimental_custom_gradients=False)
    with atomic_io.atomic_dir(export_dir) as tmp_dir:
        tf.saved_model.save(module, str(tmp_dir), signatures={SERVING_SIGNATURE: module.serve},
                            options=options)
        if model_card is not None:
            model_card_lib.write_json(model_card_lib.card_path(tmp_dir), model_card)
        fault_point("export.saved")
    return export_dir


def load_serving_fn(export_dir: str | os.PathLike) -> Callable[..., dict[str, tf.Tensor]]:
    """Loads an exported SavedModel's ``serving_default`` function.

    Args:
      export_dir: directory written by `export_saved_model`.

    Returns:
      ``fn(images_uint8[B,H,W,3]) -> {"semantic_pred": int32[B,H,W],
      "semantic_probs": float32[B,H,W,num_classes]}`` (the loaded object is kept alive
      by the closure).

    Raises:
      FileNotFoundError: no SavedModel in ``export_dir``.
    """
    export_dir = Path(export_dir)
    if not (export_dir / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{export_dir}: no saved_model.pb (not an exported model)")
    loaded = tf.saved_model.load(str(export_dir))
    signature = loaded.signatures[SERVING_SIGNATURE]

    def serving_fn(images) -> dict[str, tf.Tensor]:
        outputs = signature(**{SERVING_INPUT: tf.convert_to_tensor(images, tf.uint8)})
        return {SERVING_PRED: outputs[SERVING_PRED], SERVING_PROBS: outputs[SERVING_PROBS]}

    serving_fn.loaded = loaded  # keep the restored variables alive
    return serving_fn

