"""A tiny, scale-sensitive stand-in for the DeepLab model, and a frame it segments well.

`LocalContrastModel` classifies each pixel from its intensity r (0..255, undoing the
caffe normalisation) and its neighbourhood mean m over a ``window`` x ``window`` box:

    background  0
    oocyte      (r - 120) / 10                         bright
    sERC        min((m - r - 25) / 5, (r - 80) / 5)    darker than its surroundings
    needle      (30 - r) / 5                           very dark

Like a CNN with a bounded receptive field it only finds sERC blobs narrower than its
window: on `scene` at 1x the sERC (radius 13 px) is found, on the same frame enlarged 2x
the blob's centre is as dark as its whole window and is lost. So it tells whether
predict brings frames to the training scale. It has no weights and exports like the
real model (`sercseg_tf.model.inference.export_saved_model`).
"""

from __future__ import annotations

import pathlib

import numpy as np

# Mean of the caffe BGR means (sercseg_tf.model.preprocessing): r = mean(x) + this.
CAFFE_MEAN = (103.939 + 116.779 + 123.68) / 3
SCENE_HW = (128, 160)


def local_contrast_model(window: int = 31):
    """The model (a `keras.Model`); imports TensorFlow."""
    import keras
    import tensorflow as tf

    class LocalContrastModel(keras.Model):
        def call(self, x, training=False):
            del training
            r = tf.reduce_mean(x, axis=-1, keepdims=True) + CAFFE_MEAN
            m = tf.nn.avg_pool2d(r, window, 1, "SAME")
            return tf.concat([tf.zeros_like(r), (r - 120.0) / 10.0,
                              tf.minimum((m - r - 25.0) / 5.0, (r - 80.0) / 5.0),
                              (30.0 - r) / 5.0], axis=-1)

    return LocalContrastModel()


def scene(hw: tuple[int, int] = SCENE_HW) -> np.ndarray:
    """Grey background 60, oocyte disc 180 (radius 45), sERC blob 100 (radius 13), needle 15."""
    h, w = hw
    yy, xx = np.mgrid[:h, :w]
    img = np.full((h, w), 60.0)
    img[(xx - 66) ** 2 + (yy - 64) ** 2 < 45 ** 2] = 180
    img[(xx - 76) ** 2 + (yy - 58) ** 2 < 13 ** 2] = 100
    img[62:66, 118:] = 15
    return np.repeat(img.astype(np.uint8)[..., None], 3, axis=2)


def two_cells(hw: tuple[int, int] = (65, 97)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(frame, big, small)``: grey 60 with two oocyte discs of 180, radius 20 and 6.

    The model labels both discs oocyte (two regions) and nothing else; ``big`` and
    ``small`` are their masks.
    """
    h, w = hw
    yy, xx = np.mgrid[:h, :w]
    big = (yy - h // 2) ** 2 + (xx - w * 0.3) ** 2 <= 20 ** 2
    small = (yy - h // 2) ** 2 + (xx - w * 0.82) ** 2 <= 6 ** 2
    img = np.where(big | small, 180, 60).astype(np.uint8)
    return np.repeat(img[..., None], 3, axis=2), big, small


def faint_needle(hw: tuple[int, int] = (65, 97)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(frame, found, faint)``: grey 60, a needle bar of 15 from the right edge, 33 after it.

    The model labels the dark part needle and the rest background; on the faint part
    and on a faint blob of 33 far from the bar, p(needle) / p(background) = exp(-0.6)
    (= 0.55), so a needle prior factor of 4 makes the needle win there, 1.5 does not.
    ``found`` and ``faint`` are the masks of the bar's two parts.
    """
    h, w = hw
    img = np.full((h, w), 60, np.uint8)
    found = np.zeros((h, w), bool)
    found[30:34, 70:] = True
    faint = np.zeros((h, w), bool)
    faint[30:34, 30:70] = True
    img[found], img[faint] = 15, 33
    img[6:12, 10:20] = 33  # the blob: far from the bar, never grown
    return np.repeat(img[..., None], 3, axis=2), found, faint


def export_tiny(export_dir: pathlib.Path, frame_hw: tuple[int, int] | None = SCENE_HW,
                min_scale: float = 0.75, max_scale: float = 1.25,
                keep_largest_oocyte: bool = False) -> pathlib.Path:
    """Exports the model with a model card saying it learned frames of ``frame_hw``."""
    from sercseg_tf import model_card
    from sercseg_tf.config import ExperimentConfig
    from sercseg_tf.model import inference

    config = ExperimentConfig().replace(min_scale=min_scale, max_scale=max_scale,
                                        init_checkpoint="none")
    record = {"frame_size": list(frame_hw) if frame_hw else None,
              "data_source": model_card.SYNTHETIC}
    card = model_card.build_card(config.to_dict(), record, fold=1)
    return inference.export_saved_model(local_contrast_model(), export_dir, image_scale=1.0,
                                        output_stride=16, model_card=card,
                                        keep_largest_oocyte=keep_largest_oocyte)
