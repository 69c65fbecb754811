"""Tests of held-out evaluation (per-image IoU CSVs) and SavedModel export."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sercseg_tf import formats, layout
from sercseg_tf.config import ExperimentConfig

FOLD = 2  # tiny_tfrecord_dir holds cases 1..3; case 2 has 2 frames of 480x640
# With the test-time flip, two test-time scales and both post-processing rules on, so
# evaluate and export must pass them to inference. (The random model's class
# probabilities are close together: a needle factor much above 1.6 grows its needle
# over the whole frame.)
CONFIG = ExperimentConfig().replace(
    output_stride=32, image_scale=0.125, init_checkpoint="none", batch_size=2,
    add_flipped_images=True, eval_scales="0.75,1.0", keep_largest_oocyte=True,
    needle_hysteresis_weight=1.6)
SCALES = (0.75, 1.0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A fold-2 checkpoint of a random model with non-trivial BN statistics and logits."""
    import keras
    import tensorflow as tf

    from sercseg_tf.training import checkpoints, modeling

    out = tmp_path_factory.mktemp("runs")
    keras.utils.set_random_seed(0)  # fixed weights: the prediction-varies checks below
    # BN moving statistics set to the statistics of one frame-sized batch (momentum 0),
    # so inference activations are normalised and the prediction varies over the frame.
    # (Momentum is no weight: evaluate/export rebuild the model with CONFIG's.)
    model = modeling.build_model(CONFIG.replace(bn_momentum=0.0))
    rng = np.random.default_rng(0)
    model(rng.normal(0, 60, (1, 65, 97, 3)).astype("float32"), training=True)
    manager = tf.train.CheckpointManager(checkpoints.make_checkpoint(model),
                                         str(layout.checkpoint_dir(out, FOLD)), 1)
    manager.save(checkpoint_number=3)
    return out


def _heldout_frames(tfrecord_dir):
    from sercseg_tf.training import evaluator

    return [s for s in evaluator.heldout_dataset(tfrecord_dir, FOLD)]


def test_evaluation_writes_per_image_and_mean_iou(tiny_tfrecord_dir, model_dir):
    from sercseg_tf import evaluate, metrics
    from sercseg_tf.model import inference, postprocess
    from sercseg_tf.training import checkpoints

    df = evaluate.run_evaluation(CONFIG, tiny_tfrecord_dir, model_dir, FOLD)
    assert list(df.columns) == ["case", "frame", "filename", "oocyte", "serc", "needle"]
    assert len(df) == 2 and set(df["case"]) == {FOLD}
    eval_dir = model_dir / "fold_02" / "eval"
    on_disk = pd.read_csv(eval_dir / "iou.csv")
    pd.testing.assert_frame_equal(on_disk, df, check_exact=False, atol=1e-6)
    mean = pd.read_csv(eval_dir / "iou_mean.csv")
    assert len(mean) == 1 and int(mean.loc[0, "case"]) == FOLD
    for name in ("oocyte", "serc", "needle"):
        expected = df[name].mean(skipna=True)
        assert (math.isnan(expected) and math.isnan(mean.loc[0, name])) or \
            mean.loc[0, name] == pytest.approx(expected, abs=1e-6)

    # Independent recomputation: full-resolution predictions of the restored model.
    model, _ = checkpoints.restore_model(CONFIG, model_dir, FOLD)
    for row, sample in zip(df.itertuples(), _heldout_frames(tiny_tfrecord_dir), strict=True):
        assert row.filename == sample["filename"].numpy()[0].decode()
        logits = inference.predict_logits(model, sample["image"], CONFIG.image_scale,
                                          CONFIG.output_stride, add_flipped_images=True,
                                          eval_scales=SCALES)
        assert logits.shape[1:3] == (480, 640)
        logits = postprocess.postprocess_logits(logits, True, CONFIG.needle_hysteresis_weight)
        pred = np.argmax(logits.numpy()[0], -1)
        ious = metrics.per_class_iou(pred, sample["label"].numpy()[0, ..., 0])
        np.testing.assert_allclose([row.oocyte, row.serc, row.needle],
                                   [ious[1], ious[2], ious[3]], atol=1e-6)


@pytest.mark.parametrize("keep", [False, True])
def test_evaluation_decides_after_the_post_processing_but_scores_the_model_s_loss(keep):
    import tensorflow as tf
    import tiny_models

    from sercseg_tf import labels
    from sercseg_tf.model import inference
    from sercseg_tf.training import evaluator
    from sercseg_tf.training.losses import masked_cross_entropy_sums

    model = tiny_models.local_contrast_model()
    frame, big, small = tiny_models.two_cells()
    truth = np.where(big, labels.OOCYTE, labels.BACKGROUND).astype(np.uint8)
    config = ExperimentConfig().replace(output_stride=16, image_scale=1.0,
                                        keep_largest_oocyte=keep)
    pred, ce, count = evaluator.make_predict_step(model, config)(
        tf.constant(frame[None]), tf.constant(truth[None, ..., None]))
    np.testing.assert_array_equal(pred.numpy()[0] == labels.OOCYTE, big if keep else big | small)
    logits = inference.predict_logits(model, frame[None], 1.0, 16)
    expected_ce, expected_count = masked_cross_entropy_sums(tf.constant(truth[None], tf.int32),
                                                            logits)
    assert float(ce) == pytest.approx(float(expected_ce), rel=1e-6)
    assert int(count) == int(expected_count) == truth.size


@pytest.mark.parametrize("weight", [1.0, 4.0])
def test_evaluation_grows_the_needle_when_the_config_says_so(weight):
    import tensorflow as tf
    import tiny_models

    from sercseg_tf import labels
    from sercseg_tf.training import evaluator

    model = tiny_models.local_contrast_model()
    frame, found, faint = tiny_models.faint_needle()
    truth = np.where(found | faint, labels.NEEDLE, labels.BACKGROUND).astype(np.uint8)
    config = ExperimentConfig().replace(output_stride=16, image_scale=1.0,
                                        needle_hysteresis_weight=weight)
    pred, _, _ = evaluator.make_predict_step(model, config)(
        tf.constant(frame[None]), tf.constant(truth[None, ..., None]))
    np.testing.assert_array_equal(pred.numpy()[0] == labels.NEEDLE,
                                  found | faint if weight > 1 else found)


def test_evaluation_without_checkpoint_is_a_clear_error(tiny_tfrecord_dir, tmp_path):
    from sercseg_tf import evaluate

    with pytest.raises(FileNotFoundError, match="no checkpoint; train the fold first"):
        evaluate.run_evaluation(CONFIG, tiny_tfrecord_dir, tmp_path, FOLD)


def test_earlier_evaluation_and_export_are_kept_without_overwrite(tmp_path):
    """Refused before any work (no checkpoint or TFRecords needed); nothing is touched."""
    from sercseg_tf import evaluate, export

    iou = layout.eval_dir(tmp_path, FOLD) / layout.IOU_MEAN_CSV
    card = layout.export_dir(tmp_path, FOLD) / "assets" / "model_card.json"
    for path in (iou, card):
        path.parent.mkdir(parents=True)
        path.write_text("earlier")
    with pytest.raises(FileExistsError) as err:
        evaluate.run_evaluation(CONFIG, tmp_path / "none", tmp_path, FOLD)
    assert str(err.value) == f"{iou}: exists (an earlier run); pass --overwrite to replace it"
    with pytest.raises(FileExistsError, match="export: exists .an earlier run.; pass "
                       "--overwrite"):
        export.run_export(CONFIG, tmp_path, FOLD)
    # With overwrite the commands go on to their work (here: no checkpoint to restore).
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        export.run_export(CONFIG, tmp_path, FOLD, overwrite=True)
    assert iou.read_text() == card.read_text() == "earlier"
    assert sorted(p.name for p in layout.fold_dir(tmp_path, FOLD).iterdir()) == ["eval",
                                                                               "export"]


def _softmax(logits: np.ndarray) -> np.ndarray:
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return probs / probs.sum(-1, keepdims=True)


def test_exported_model_matches_the_restored_checkpoint(tiny_tfrecord_dir, model_dir):
    from sercseg_tf import export
    from sercseg_tf.model import inference, postprocess
    from sercseg_tf.training import checkpoints

    path = export.run_export(CONFIG, model_dir, FOLD)
    assert path == model_dir / "fold_02" / "export"
    assert (path / "saved_model.pb").is_file()
    assert not list((model_dir / "fold_02").glob(".export*"))  # nothing half-written left
    serve = inference.load_serving_fn(path)
    model, _ = checkpoints.restore_model(CONFIG, model_dir, FOLD)
    frames = np.concatenate([s["image"].numpy() for s in _heldout_frames(tiny_tfrecord_dir)])
    out = serve(frames)
    raw = inference.predict_logits(model, frames, CONFIG.image_scale, CONFIG.output_stride,
                                   add_flipped_images=True, eval_scales=SCALES)
    logits = postprocess.postprocess_logits(raw, True, CONFIG.needle_hysteresis_weight)
    probs = _softmax(logits.numpy())
    one_pass = inference.predict_logits(model, frames, CONFIG.image_scale, CONFIG.output_stride)
    one_scale = inference.predict_logits(model, frames, CONFIG.image_scale,
                                         CONFIG.output_stride, add_flipped_images=True)
    # The flip, the scales and the needle's growth are in the graph (the largest-cell rule
    # is checked on a model that paints stray oocyte patches: test_inference).
    assert np.abs(_softmax(one_pass.numpy()) - probs).max() > 1e-2
    assert np.abs(_softmax(one_scale.numpy()) - probs).max() > 1e-2
    not_grown = postprocess.postprocess_logits(raw, True, 1.0)
    assert np.abs(_softmax(not_grown.numpy()) - probs).max() > 1e-2
    # The SavedModel's graph is optimised (grappler/oneDNN fuse each Conv2D with its fused
    # BatchNorm), which changes float32 rounding: nearly every probability agrees to 1e-5,
    # the few that do not stay within 1e-3.
    diff = np.abs(out[formats.SERVING_PROBS].numpy() - probs)
    assert diff.max() < 1e-3
    assert (diff < 1e-5).mean() > 0.999
    pred = out[formats.SERVING_PRED].numpy()
    assert pred.shape == (2, 480, 640) and len(np.unique(pred)) > 1
    # Same class wherever the decision is not a float tie (top-2 logit margin > 1e-4;
    # averaged over two scales, this random model's top two classes are that close on
    # ~6 % of the pixels).
    top2 = np.sort(logits.numpy(), -1)[..., -2:]
    decided = (top2[..., 1] - top2[..., 0]) > 1e-4
    assert decided.mean() > 0.9
    np.testing.assert_array_equal(pred[decided], np.argmax(logits.numpy(), -1)[decided])
