"""Tests of whole-frame inference and the exported SavedModel."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from sercseg_tf.formats import SERVING_INPUT, SERVING_PRED, SERVING_PROBS, SERVING_SIGNATURE
from sercseg_tf.labels import NUM_CLASSES
from sercseg_tf.model.deeplab import build_deeplab
from sercseg_tf.model.inference import (
    export_saved_model,
    load_serving_fn,
    mirror_pad,
    padded_size,
    predict_logits,
    predict_preprocessed,
    scaled_size,
)
from sercseg_tf.model.preprocessing import preprocess_images

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

OUTPUT_STRIDE = 16


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(3)
    return build_deeplab(num_classes=NUM_CLASSES, output_stride=OUTPUT_STRIDE)


def _frames(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_padded_and_scaled_sizes():
    assert [padded_size(n, 16) for n in (1, 17, 18, 65, 66, 480)] == [1, 17, 33, 65, 81, 481]
    assert padded_size(640, 8) == 641
    assert scaled_size(480, 640, 0.5) == (240, 320)
    assert scaled_size(65, 97, 0.75) == (48, 72)  # floor, as the input pipeline
    h, w = scaled_size(tf.constant(65), tf.constant(97), 0.75)
    assert (int(h), int(w)) == (48, 72)


def test_predict_logits_mirror_pads_both_sides_and_crops(model):
    frames = _frames((2, 50, 71, 3))
    logits = predict_logits(model, frames, output_stride=OUTPUT_STRIDE).numpy()
    assert logits.shape == (2, 50, 71, NUM_CLASSES)
    # Reference: numpy's symmetric padding to 65x81, split 7/8 rows and 5/5 columns.
    x = np.pad(preprocess_images(frames).numpy(), [(0, 0), (7, 8), (5, 5), (0, 0)],
               mode="symmetric")
    expected = model(x, training=False).numpy()[:, 7:57, 5:76]
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    # The evaluation path on already preprocessed images is the same computation.
    from_preprocessed = predict_preprocessed(model, preprocess_images(frames), OUTPUT_STRIDE)
    np.testing.assert_array_equal(from_preprocessed.numpy(), logits)


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (17, 2), (40, 33)])
def test_mirror_pad_matches_numpy_symmetric_even_beyond_the_frame(size):
    # Padding larger than the frame itself (1x1 -> 33x33) folds back again, as numpy does.
    x = np.random.default_rng(0).normal(size=(1, *size, 2)).astype(np.float32)
    padded, top, left = mirror_pad(tf.constant(x), 32)
    ph, pw = padded_size(size[0], 32) - size[0], padded_size(size[1], 32) - size[1]
    assert (int(top), int(left)) == (ph // 2, pw // 2)
    expected = np.pad(x, [(0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)],
                      mode="symmetric")
    np.testing.assert_array_equal(padded.numpy(), expected)


def test_mirror_padding_keeps_a_band_at_the_frame_edge_alive():
    # A dark bar touching the right edge (a needle entering the frame) continues into the
    # padding instead of ending against a flat mean-colour band.
    x = np.zeros((1, 20, 20, 1), np.float32)
    x[:, 8:12, 15:] = -1.0
    padded, top, left = mirror_pad(tf.constant(x), 16)
    assert padded.shape == (1, 33, 33, 1) and (int(top), int(left)) == (6, 6)
    band = padded.numpy()[0, top + 8:top + 12, left + 15:, 0]
    # 5 columns in the frame, their mirror image in the first 5 padded ones, then 0 again.
    np.testing.assert_array_equal(band, np.repeat([[-1.0] * 10 + [0.0] * 2], 4, axis=0))


def test_predict_logits_aligned_size_is_the_plain_model(model):
    frames = _frames((1, 65, 97, 3), seed=1)
    logits = predict_logits(model, frames, output_stride=OUTPUT_STRIDE).numpy()
    expected = model(preprocess_images(frames), training=False).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_predict_logits_with_image_scale_returns_input_size(model):
    frames = _frames((1, 70, 90, 3), seed=2)
    logits = predict_logits(model, frames, image_scale=0.5, output_stride=OUTPUT_STRIDE)
    assert tuple(logits.shape) == (1, 70, 90, NUM_CLASSES)
    # Same as running at the scaled size and resizing the logits back.
    small = tf.image.resize(tf.cast(frames, tf.float32), (35, 45), method="bilinear")
    small_logits = predict_logits(model, small, output_stride=OUTPUT_STRIDE)
    expected = tf.image.resize(small_logits, (70, 90), method="bilinear")
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_inference_is_deterministic(model):
    frames = _frames((2, 50, 71, 3), seed=4)
    first = predict_logits(model, frames, output_stride=OUTPUT_STRIDE).numpy()
    second = predict_logits(model, frames, output_stride=OUTPUT_STRIDE).numpy()
    np.testing.assert_array_equal(first, second)
    # Same seed, same weights: a rebuilt model predicts the same.
    keras.utils.set_random_seed(3)
    rebuilt = build_deeplab(num_classes=NUM_CLASSES, output_stride=OUTPUT_STRIDE)
    again = predict_logits(rebuilt, frames, output_stride=OUTPUT_STRIDE).numpy()
    np.testing.assert_array_equal(first, again)


def _softmax(logits) -> np.ndarray:
    return tf.nn.softmax(logits, axis=-1).numpy()


def test_add_flipped_images_averages_the_frame_and_its_mirror_image(model):
    # DeepLab's test-time flip: p = (softmax(z(x)) + mirror(softmax(z(mirror(x))))) / 2,
    # computed here from two separate one-pass predictions.
    frames = _frames((2, 50, 71, 3), seed=6)
    logits = predict_logits(model, frames, output_stride=OUTPUT_STRIDE,
                            add_flipped_images=True).numpy()
    plain = _softmax(predict_logits(model, frames, output_stride=OUTPUT_STRIDE))
    mirrored = _softmax(predict_logits(model, frames[:, :, ::-1], output_stride=OUTPUT_STRIDE))
    expected = (plain + mirrored[:, :, ::-1]) / 2
    assert np.isfinite(logits).all()
    np.testing.assert_allclose(_softmax(logits), expected, atol=1e-5, rtol=0)
    assert np.abs(expected - plain).max() > 1e-3  # 100x the tolerance: the mirror matters
    # The averaged prediction is mirror-symmetric: predicting the mirrored frames gives
    # the mirror image of the prediction (71 columns pad 5 | 5, the same both ways).
    again = predict_logits(model, frames[:, :, ::-1], output_stride=OUTPUT_STRIDE,
                           add_flipped_images=True).numpy()
    np.testing.assert_allclose(_softmax(again)[:, :, ::-1], _softmax(logits), atol=1e-5, rtol=0)


def test_eval_scales_average_the_class_distributions_of_each_scale(model):
    # DeepLab's multi-scale inference: p = mean_i softmax(z_i), z_i the logits of the
    # frame predicted at image_scale * s_i and resized back, computed here from separate
    # one-scale predictions (with the flip, as the demo evaluates).
    frames = _frames((2, 96, 128, 3), seed=8)
    scales = (0.75, 1.0, 1.25)

    def one_scale(factor):
        return _softmax(predict_logits(model, frames, image_scale=0.5 * factor,
                                       output_stride=OUTPUT_STRIDE, add_flipped_images=True))

    expected = sum(one_scale(s) for s in scales) / len(scales)
    logits = predict_logits(model, frames, image_scale=0.5, output_stride=OUTPUT_STRIDE,
                            add_flipped_images=True, eval_scales=scales).numpy()
    assert logits.shape == (2, 96, 128, NUM_CLASSES) and np.isfinite(logits).all()
    np.testing.assert_allclose(_softmax(logits), expected, atol=1e-5, rtol=0)
    assert np.abs(expected - one_scale(1.0)).max() > 1e-3  # the other scales matter
    single = predict_logits(model, frames, image_scale=0.5, output_stride=OUTPUT_STRIDE,
                            eval_scales=[1.0]).numpy()
    np.testing.assert_array_equal(
        single, predict_logits(model, frames, image_scale=0.5, output_stride=OUTPUT_STRIDE))
    with pytest.raises(ValueError, match="eval_scales is empty"):
        predict_logits(model, frames, eval_scales=())


def test_add_flipped_images_stays_finite_when_one_pass_is_certain():
    # Logits 200 apart: each pass alone gives probabilities of exactly 0 in float32; the
    # returned log-probabilities must still be finite and average the two passes.
    class Fixed(keras.Model):
        def call(self, x, training=False):
            column = tf.cast(tf.range(tf.shape(x)[2]), tf.float32)[None, None, :, None]
            left = tf.cast(column < tf.cast(tf.shape(x)[2], tf.float32) / 2, tf.float32)
            big = 200.0 * tf.concat([left, 1.0 - left, 0.0 * left, 0.0 * left], axis=-1)
            return tf.broadcast_to(big, tf.concat([tf.shape(x)[:3], [4]], 0))

    x = tf.zeros((1, 33, 40, 3))
    logits = predict_preprocessed(Fixed(), x, 16, add_flipped_images=True).numpy()
    assert np.isfinite(logits).all()  # log(0) for classes 2 and 3 done naively
    plain = _softmax(predict_preprocessed(Fixed(), x, 16))
    assert set(np.unique(plain)) == {0.0, 1.0}
    mirrored = _softmax(predict_preprocessed(Fixed(), x[:, :, ::-1], 16))[:, :, ::-1]
    np.testing.assert_allclose(_softmax(logits), (plain + mirrored) / 2, atol=1e-6, rtol=0)
    assert (np.abs(_softmax(logits)[..., 0] - 0.5) < 1e-6).mean() > 0.9  # the passes disagree


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    export_dir = tmp_path_factory.mktemp("export") / "saved_model"
    assert export_saved_model(model, export_dir, 1.0, OUTPUT_STRIDE) == export_dir
    return export_dir


@pytest.fixture(scope="module")
def serving_fn(exported):
    return load_serving_fn(exported)


@pytest.mark.parametrize("size", [(65, 97), (50, 71)])  # OS*k+1 and not
def test_exported_model_agrees_with_in_process_model(model, serving_fn, size):
    frames = _frames((2, *size, 3), seed=5)
    outputs = serving_fn(frames)
    probs = outputs[SERVING_PROBS].numpy()
    pred = outputs[SERVING_PRED].numpy()
    assert pred.dtype == np.int32 and pred.shape == (2, *size)
    assert probs.dtype == np.float32 and probs.shape == (2, *size, NUM_CLASSES)
    logits = predict_logits(model, frames, output_stride=OUTPUT_STRIDE)
    expected_probs = tf.nn.softmax(logits).numpy()
    np.testing.assert_allclose(probs, expected_probs, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(pred, np.argmax(logits.numpy(), axis=-1))
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_exported_signature_takes_any_size_uint8(serving_fn):
    signature = serving_fn.loaded.signatures[SERVING_SIGNATURE]
    spec = signature.structured_input_signature[1][SERVING_INPUT]
    assert spec.dtype == tf.uint8
    assert spec.shape.as_list() == [None, None, None, 3]
    assert set(signature.structured_outputs) == {SERVING_PRED, SERVING_PROBS}


def test_export_replaces_atomically(tmp_path):
    export_dir = tmp_path / "out"
    export_dir.mkdir()
    (export_dir / "stale.txt").write_text("old")
    export_saved_model(keras.Sequential([keras.Input((None, None, 3)),
                                         keras.layers.Conv2D(NUM_CLASSES, 1)]),
                       export_dir, 1.0, OUTPUT_STRIDE)
    assert (export_dir / "saved_model.pb").is_file()
    assert not (export_dir / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp dirs left


def test_load_serving_fn_missing_dir_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        load_serving_fn(tmp_path / "nothing")


def test_exported_model_keeps_only_the_largest_oocyte_when_asked(tmp_path):
    import tiny_models

    from sercseg_tf import labels

    model = tiny_models.local_contrast_model()
    frame, big, small = tiny_models.two_cells()
    raw = np.argmax(predict_logits(model, frame[None], output_stride=OUTPUT_STRIDE).numpy(), -1)
    np.testing.assert_array_equal(raw[0] == labels.OOCYTE, big | small)
    for keep, expected in ((False, big | small), (True, big)):
        export_dir = tmp_path / f"keep_{keep}"
        export_saved_model(model, export_dir, 1.0, OUTPUT_STRIDE, keep_largest_oocyte=keep)
        out = load_serving_fn(export_dir)(frame[None])
        np.testing.assert_array_equal(out[SERVING_PRED].numpy()[0] == labels.OOCYTE, expected)
        oocyte_probs = out[SERVING_PROBS].numpy()[0, ..., labels.OOCYTE]
        assert (oocyte_probs[small] == 0.0).all() == keep


def test_exported_model_grows_the_needle_by_hysteresis_when_asked(tmp_path):
    import tiny_models

    from sercseg_tf import labels

    model = tiny_models.local_contrast_model()
    frame, found, faint = tiny_models.faint_needle()
    for weight, expected in ((1.0, found), (1.5, found), (4.0, found | faint)):
        export_dir = tmp_path / f"weight_{weight}"
        export_saved_model(model, export_dir, 1.0, OUTPUT_STRIDE,
                           needle_hysteresis_weight=weight)
        out = load_serving_fn(export_dir)(frame[None])
        np.testing.assert_array_equal(out[SERVING_PRED].numpy()[0] == labels.NEEDLE, expected)
        needle_probs = out[SERVING_PROBS].numpy()[0, ..., labels.NEEDLE]
        # the grown pixels carry the shifted distribution: 4 * 0.55 / (4 * 0.55 + 1)
        assert needle_probs[faint].min() > (0.5 if weight == 4.0 else 0.0)
        assert needle_probs[faint].max() < (0.7 if weight == 4.0 else 0.5)
