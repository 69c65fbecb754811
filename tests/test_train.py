"""Tests of the custom training loop: loss, distribution, checkpoints/resume, summaries."""

from __future__ import annotations

import csv
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sercseg_tf.config import CONFIG_FIELDS, ExperimentConfig

REPO = pathlib.Path(__file__).resolve().parents[1]
FOLD = 2  # tiny_tfrecord_dir holds cases 1..3

# 480x640 synthetic frames at image_scale 0.125 -> 60x80; crops OS*k+1 at OS 32.
TINY = dict(
    output_stride=32, image_scale=0.125, crop_height=33, crop_width=49, batch_size=2,
    num_steps=2, init_checkpoint="none", learning_rate=1e-3, min_scale=0.75,
    max_scale=1.25, shuffle_buffer=8, log_every_steps=1, save_checkpoints_steps=1,
    keep_checkpoint_max=10, eval_every_steps=2, num_summary_images=1, bn_momentum=0.9,
)


def tiny_config(**changes) -> ExperimentConfig:
    """TINY settings (+ changes), with a BN momentum other than Keras' default."""
    return ExperimentConfig().replace(**{**TINY, **changes})


def test_masked_cross_entropy_excludes_ignore_pixels():
    import tensorflow as tf

    from sercseg_tf.training.losses import masked_cross_entropy_sums

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    label = rng.integers(0, 4, (2, 3, 4)).astype(np.int32)
    label[0, 0, :] = 255
    ce_sum, count = masked_cross_entropy_sums(tf.constant(label), tf.constant(logits))
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    valid = label != 255
    expected = -np.take_along_axis(log_p, np.where(valid, label, 0)[..., None], -1)[..., 0]
    assert float(count) == valid.sum() == 20
    np.testing.assert_allclose(float(ce_sum), expected[valid].sum(), rtol=1e-5)


def test_top_k_cross_entropy_keeps_each_images_hardest_pixels():
    import tensorflow as tf

    from sercseg_tf.training.losses import masked_cross_entropy_sums

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 5, 6, 4)).astype(np.float32)
    label = rng.integers(0, 4, (3, 5, 6)).astype(np.int32)
    label[0, :2] = 255  # 18 valid pixels, 30 and 29 in the others
    label[2, 0, 0] = 255
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_p, np.where(label == 255, 0, label)[..., None], -1)[..., 0]
    expected_sum, expected_count = 0.0, 0
    for b in range(3):
        valid = np.sort(ce[b][label[b] != 255])[::-1]
        k = max(1, int(np.round(0.25 * valid.size)))  # 4 or 5, 8, 7
        expected_sum += valid[:k].sum()
        expected_count += k
    logits_t = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits_t)
        ce_sum, count = masked_cross_entropy_sums(tf.constant(label), logits_t,
                                                  top_k_percent=0.25)
    assert float(count) == expected_count
    np.testing.assert_allclose(float(ce_sum), expected_sum, rtol=1e-5)
    # Only the kept pixels receive a gradient.
    touched = np.abs(tape.gradient(ce_sum, logits_t).numpy()).sum(-1) > 0
    assert touched.sum() == expected_count and not touched[label == 255].any()
    with pytest.raises(ValueError, match="top_k_percent"):
        masked_cross_entropy_sums(tf.constant(label), logits_t, top_k_percent=0.0)


def test_needle_weight_scales_needle_pixels_before_the_hard_pixel_selection():
    import tensorflow as tf

    from sercseg_tf.training.losses import masked_cross_entropy_sums, needle_class_weights

    assert needle_class_weights(1.0) is None
    weights = np.array(needle_class_weights(3.0))
    np.testing.assert_array_equal(weights, [1.0, 1.0, 1.0, 3.0])
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 4, 5, 4)).astype(np.float32)
    label = rng.integers(0, 4, (2, 4, 5)).astype(np.int32)
    label[1, 0] = 255
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    safe = np.where(label == 255, 0, label)
    ce = -np.take_along_axis(log_p, safe[..., None], -1)[..., 0] * weights[safe]
    valid = label != 255
    for top_k, expected_sum in [(1.0, ce[valid].sum()),
                                (0.5, sum(np.sort(ce[b][valid[b]])[::-1][:k].sum()
                                          for b, k in ((0, 10), (1, 8))))]:
        ce_sum, count = masked_cross_entropy_sums(tf.constant(label), tf.constant(logits),
                                                  top_k_percent=top_k,
                                                  class_weights=tuple(weights))
        np.testing.assert_allclose(float(ce_sum), expected_sum, rtol=1e-5)
        assert float(count) == (valid.sum() if top_k == 1.0 else 18)  # counts, not weights


def test_boundary_weights_mark_the_cell_border_band_as_scipy_does():
    """The band: a (2r+1)-square window holds a cell (oocyte/sERC) and a valid pixel of
    another class; ignore pixels are neither (scipy.ndimage as the independent reference)."""
    import tensorflow as tf
    from scipy import ndimage

    from sercseg_tf.training.losses import boundary_weights, masked_cross_entropy_sums

    rng = np.random.default_rng(4)
    label = np.zeros((3, 40, 50), np.int32)
    yy, xx = np.mgrid[0:40, 0:50]
    label[0][(yy - 20) ** 2 + (xx - 22) ** 2 < 15**2] = 1  # an oocyte disc
    label[0][(yy - 18) ** 2 + (xx - 20) ** 2 < 4**2] = 2  # with an sERC inside
    label[0, 19:22, 25:50] = 3  # a needle from the right into the cell
    label[0, 30:, :8] = 255  # ignore (crop padding) beside the cell
    label[1] = rng.integers(0, 4, (40, 50))
    label[1, :5] = 255
    label[2] = 1  # all oocyte, ignore rows on top, background rows at the bottom
    label[2, :5], label[2, 35:] = 255, 0
    for radius in (1, 3):
        window = np.ones((2 * radius + 1,) * 2, bool)
        got = boundary_weights(tf.constant(label), 3.0, radius).numpy()
        for b in range(3):
            near_cell = ndimage.binary_dilation(np.isin(label[b], [1, 2]), window)
            near_other = ndimage.binary_dilation(np.isin(label[b], [0, 3]), window)
            np.testing.assert_array_equal(got[b], np.where(near_cell & near_other, 3.0, 1.0))
    got = boundary_weights(tf.constant(label), 3.0, 3).numpy()
    # The needle inside the cell has its band, and so has the left oolemma; ignore
    # pixels make none.
    assert got[0, 16, 26:30].min() == 3.0 and got[0, 20, 8] == 3.0
    assert got[2, 5:8].max() == 1.0 and got[2, 32:38].min() == 3.0
    # Pixel weights multiply each pixel's cross-entropy; the count stays the pixel count.
    logits = rng.normal(size=(3, 40, 50, 4)).astype(np.float32)
    plain, n = masked_cross_entropy_sums(tf.constant(label), tf.constant(logits))
    weights = boundary_weights(tf.constant(label), 3.0, 2)
    weighted, n_w = masked_cross_entropy_sums(tf.constant(label), tf.constant(logits),
                                              pixel_weights=weights)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    safe = np.where(label == 255, 0, label)
    ce = -np.take_along_axis(log_p, safe[..., None], -1)[..., 0]
    valid = label != 255
    np.testing.assert_allclose(float(weighted), (ce * weights.numpy())[valid].sum(), rtol=1e-5)
    assert float(n_w) == float(n) == valid.sum() and float(weighted) > float(plain)
    np.testing.assert_array_equal(boundary_weights(tf.constant(label), 1.0, 3).numpy(), 1.0)


def test_soft_dice_matches_a_numpy_reference_and_splits_over_images():
    import tensorflow as tf

    from sercseg_tf.training.losses import soft_dice_sum

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3, 5, 6, 4)).astype(np.float32)
    label = rng.integers(0, 4, (3, 5, 6)).astype(np.int32)
    label[0, :2] = 255
    label[2] = np.where(label[2] == 3, 0, label[2])  # class 3 absent from image 2
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = 0.0
    for b in range(3):
        valid = label[b] != 255
        pv, yv = p[b][valid], np.eye(4)[label[b][valid]]
        dice = (2 * (pv * yv).sum(0) + 1) / (pv.sum(0) + yv.sum(0) + 1)
        expected += (1 - dice).mean()
    total = float(soft_dice_sum(tf.constant(label), tf.constant(logits)))
    np.testing.assert_allclose(total, expected, rtol=1e-5)
    parts = sum(float(soft_dice_sum(tf.constant(label[b:b + 1]), tf.constant(logits[b:b + 1])))
                for b in range(3))
    np.testing.assert_allclose(parts, total, rtol=1e-5)  # per image: replica-invariant
    # A confident correct prediction scores ~0. Class 3's n3 pixels called class 0: class
    # 3 scores 1 - 1/(n3 + 1), class 0 scores 1 - (2 n0 + 1) / (2 n0 + n3 + 1).
    perfect = 50.0 * np.eye(4, dtype=np.float32)[np.where(label == 255, 0, label)]
    assert float(soft_dice_sum(tf.constant(label), tf.constant(perfect))) < 1e-3
    missed = perfect[1:2].copy()
    missed[label[1:2] == 3] = 50.0 * np.eye(4, dtype=np.float32)[0]
    n0, n3 = (label[1] == 0).sum(), (label[1] == 3).sum()
    analytic = (1 - 1 / (n3 + 1) + 1 - (2 * n0 + 1) / (2 * n0 + n3 + 1)) / 4
    np.testing.assert_allclose(
        float(soft_dice_sum(tf.constant(label[1:2]), tf.constant(missed))), analytic, rtol=1e-4)


# Runs in a fresh interpreter: logical CPU devices must be configured before TF starts.
_MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from sercseg_tf.training import distribute, loop

    rng = np.random.default_rng(0)
    images = rng.normal(0, 1, (2, 17, 21, 3)).astype(np.float32)
    label = rng.integers(0, 4, (2, 17, 21)).astype(np.int32)
    label[0, :9] = 255  # unequal valid-pixel counts per replica: the global count matters
    label[1, :, :2] = 255

    def tiny_model():
        x = keras.Input((None, None, 3))
        y = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(x)
        y = keras.layers.BatchNormalization(synchronized=True, name="bn")(y)
        y = keras.layers.ReLU()(y)
        return keras.Model(x, keras.layers.Conv2D(4, 1, name="logits")(y))

    def one_step(strategy, optimizer_name, top_k_percent=1.0, dice_weight=0.0,
                 boundary=(1.0, 0)):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = tiny_model()
            opt = (keras.optimizers.SGD(0.5) if optimizer_name == "sgd"
                   else keras.optimizers.Adam(1e-3))
            opt.build(model.trainable_variables)
        ds = tf.data.Dataset.from_tensors((images, label)).repeat()
        it = iter(strategy.experimental_distribute_dataset(ds))
        loss = float(loop.make_train_step(strategy, model, opt, top_k_percent,
                                          dice_weight=dice_weight, boundary=boundary)(it))
        return {"replicas": strategy.num_replicas_in_sync, "loss": loss,
                "iterations": int(opt.iterations.numpy()),
                "weights": [np.asarray(v.numpy()).tolist() for v in model.variables]}

    out = {}
    for name in ("sgd", "adam"):
        out[name] = [one_step(distribute.create_strategy(s), name)
                     for s in ("one_device", "mirrored")]
    # Hard-pixel mining selects per image, so replicas still agree with one device.
    out["sgd_top_k"] = [one_step(distribute.create_strategy(s), "sgd", 0.3)
                        for s in ("one_device", "mirrored")]
    # The Dice term is per image over the global batch: replicas agree too.
    out["sgd_dice"] = [one_step(distribute.create_strategy(s), "sgd", dice_weight=2.0)
                       for s in ("one_device", "mirrored")]
    # The border band is per image: replicas agree too.
    out["sgd_boundary"] = [one_step(distribute.create_strategy(s), "sgd", boundary=(3.0, 2))
                           for s in ("one_device", "mirrored")]
    json.dump(out, sys.stdout)
""")


def test_mirrored_two_replicas_equals_one_device():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["sgd_dice"][0]["loss"] > out["sgd"][0]["loss"] + 0.5  # the term is on
    assert out["sgd_boundary"][0]["loss"] > out["sgd"][0]["loss"] * 1.2  # the band too
    for name in ("sgd", "adam", "sgd_top_k", "sgd_dice", "sgd_boundary"):
        one, mirrored = out[name]
        assert (one["replicas"], mirrored["replicas"]) == (1, 2)
        assert one["iterations"] == mirrored["iterations"] == 1
        # Same global batch -> same global loss (sum CE / global #valid pixels) ...
        np.testing.assert_allclose(mirrored["loss"], one["loss"], rtol=1e-5)
        # ... and the same update: kernels, BN gamma/beta and (synchronized) moving stats.
        for a, b in zip(one["weights"], mirrored["weights"], strict=True):
            np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-4, atol=1e-5)


def test_checkpoint_restores_model_and_optimizer_exactly(tmp_path):
    import keras

    from sercseg_tf.training import checkpoints, modeling, optimizer, precise_bn

    def weights(m):
        return [keras.ops.convert_to_numpy(v) for v in m.variables
                if "seed_generator" not in v.path]

    cfg = tiny_config()
    rng = np.random.default_rng(1)
    model = modeling.build_model(cfg)
    opt = optimizer.make_optimizer(cfg)
    opt.build(model.trainable_variables)
    for v in [*model.variables, *opt.variables]:
        if "float" in str(v.dtype):  # every weight, BN statistic and Adam slot
            v.assign(rng.normal(size=v.shape).astype("float32"))
    opt.iterations.assign(7)
    path = checkpoints.make_checkpoint(model, opt).save(str(tmp_path / "ckpt"))

    model2 = modeling.build_model(cfg)
    opt2 = optimizer.make_optimizer(cfg)
    opt2.build(model2.trainable_variables)
    checkpoints.make_checkpoint(model2, opt2).restore(path).assert_consumed()
    assert int(opt2.iterations.numpy()) == 7
    assert len(weights(model2)) == len(weights(model)) > 300
    for a, b in zip(weights(model), weights(model2), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(opt.variables, opt2.variables, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))
    # Model-only restore (evaluate / export) reaches every weight, BN statistics of the
    # ASPP / decoder sublayers included (plain tf.train.Checkpoint(model=...) misses them).
    for v in model2.variables:
        if "float" in str(v.dtype):
            v.assign(np.zeros(v.shape, "float32"))
    checkpoints.make_checkpoint(model2).restore(path).assert_existing_objects_matched()
    for a, b in zip(weights(model), weights(model2), strict=True):
        np.testing.assert_array_equal(a, b)
    # Training-time BatchNorm uses global-batch statistics (sync) when configured.
    bn = precise_bn.batch_norm_layers(model)
    assert len(bn) > 50 and all(la.synchronized for la in bn)
    assert all(la.momentum == cfg.bn_momentum for la in bn)


def _read_events(event_dir: pathlib.Path) -> dict[str, list]:
    """{tag: [(step, value proto), ...]} from the event files of a folder."""
    import tensorflow as tf

    tags: dict[str, list] = {}
    for path in sorted(event_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append((int(event.step), value))
    return tags


def _csv_rows(path: pathlib.Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained_runs(tiny_tfrecord_dir, tmp_path_factory):
    """Fold 2, num_steps 4 with a Ctrl-C after step 2; then the same command again."""
    from sercseg_tf import train
    from sercseg_tf.training import loop, precise_bn

    model_dir = tmp_path_factory.mktemp("runs")

    def interrupt_after_step_2(step: int) -> None:
        if step == 2:
            raise KeyboardInterrupt

    mp = pytest.MonkeyPatch()
    mp.setattr(loop, "_on_step_end", interrupt_after_step_2)
    with pytest.raises(KeyboardInterrupt):
        train.run_training(tiny_config(num_steps=4), tiny_tfrecord_dir, model_dir, FOLD,
                           strategy="one_device")
    mp.undo()
    ckpt_dir = model_dir / "fold_02" / "checkpoints"
    ckpt_after_interrupt = sorted(p.name for p in ckpt_dir.glob("ckpt-*.index"))
    # The resumed run recomputes BN statistics (PreciseBN) after its last step; record
    # when (the last step completed before), with how many batches and the result.
    steps_ended, recomputed = [], []
    original = precise_bn.recompute_statistics

    def recording(strategy, model, iterator, num_batches):
        original(strategy, model, iterator, num_batches)
        layer = precise_bn.batch_norm_layers(model)[0]
        recomputed.append((steps_ended[-1], num_batches, layer.moving_mean.numpy().copy()))

    mp.setattr(loop, "_on_step_end", steps_ended.append)
    mp.setattr(precise_bn, "recompute_statistics", recording)
    resumed = train.run_training(tiny_config(num_steps=4, bn_recompute_batches=2),
                                 tiny_tfrecord_dir, model_dir, FOLD)
    mp.undo()
    return model_dir, ckpt_after_interrupt, resumed, recomputed


def _train_step_args(cfg, tfrecord_dir, model_dir, monkeypatch) -> tuple:
    """The arguments `loop.make_train_step` receives in a fresh run of ``cfg``: ``(strategy,
    model, optimizer, top_k_percent, class_weights, dice_weight, boundary)``."""
    from sercseg_tf import train
    from sercseg_tf.training import loop

    class Stop(Exception):
        pass

    seen = []

    def capture(*args):
        seen.append(args)
        raise Stop

    monkeypatch.setattr(loop, "make_train_step", capture)
    with pytest.raises(Stop):
        train.run_training(cfg, tfrecord_dir, model_dir, FOLD, strategy="one_device")
    return seen[0]


def test_config_loss_terms_reach_the_train_step(tiny_tfrecord_dir, tmp_path, monkeypatch):
    cfg = tiny_config(loss_top_k_percent=0.5, loss_needle_weight=2.0, loss_dice_weight=0.5,
                      loss_boundary_weight=3.0, loss_boundary_radius=2)
    args = _train_step_args(cfg, tiny_tfrecord_dir, tmp_path, monkeypatch)
    assert args[3:] == (0.5, (1.0, 1.0, 1.0, 2.0), 0.5, (3.0, 2))


def test_fine_tuning_starts_from_every_weight_of_the_given_run(trained_runs, tiny_tfrecord_dir,
                                                               tmp_path, monkeypatch):
    from sercseg_tf.training import checkpoints

    source_dir = trained_runs[0]
    source, _ = checkpoints.restore_model(tiny_config(), source_dir, FOLD)
    want = checkpoints.model_variables(source)
    prefix = checkpoints.latest_checkpoint(source_dir, FOLD)
    for name, init in (("fold", source_dir / "fold_02"), ("prefix", prefix),
                       ("random", "none")):
        _, model, optimizer, *_ = _train_step_args(tiny_config(init_checkpoint=str(init)),
                                                   tiny_tfrecord_dir, tmp_path / name,
                                                   monkeypatch)
        got = checkpoints.model_variables(model)
        assert set(got) == set(want)
        same = [np.array_equal(got[k].numpy(), want[k].numpy()) for k in want]
        assert all(same) if name != "random" else not any(same), name
        assert int(optimizer.iterations.numpy()) == 0  # the optimizer starts afresh


def test_fine_tune_source_names_what_it_cannot_use(trained_runs, tmp_path):
    from sercseg_tf.training import checkpoints

    fold = trained_runs[0] / "fold_02"
    assert checkpoints.fine_tune_source(str(fold)).startswith(str(fold / "checkpoints" / "ckpt-"))
    h5 = tmp_path / "resnet50.h5"
    h5.write_bytes(b"")
    for imagenet in (None, str(h5), str(tmp_path), str(tmp_path / "missing")):
        assert checkpoints.fine_tune_source(imagenet) is None  # the ImageNet loader's
    export = tmp_path / "run" / "fold_05" / "export"
    export.mkdir(parents=True)
    (export / "saved_model.pb").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"export: an exported SavedModel.*fold_05"):
        checkpoints.fine_tune_source(str(export))
    (export.parent / "checkpoints").mkdir()
    with pytest.raises(FileNotFoundError, match="fold_05: a run folder with no checkpoint"):
        checkpoints.fine_tune_source(str(export.parent))


def test_a_missing_rehearsal_set_is_an_error_before_the_model_is_built(
        tiny_tfrecord_dir, tmp_path, monkeypatch):
    from sercseg_tf import train
    from sercseg_tf.training import modeling

    built = []
    monkeypatch.setattr(modeling, "build_model", lambda *a, **k: built.append(1))
    cfg = tiny_config(rehearsal_tfrecord_dir=str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match=r"nothing.*manifest"):
        train.run_training(cfg, tiny_tfrecord_dir, tmp_path / "run", FOLD,
                           strategy="one_device")
    assert not built


def test_ctrl_c_saves_and_rerun_resumes_at_the_saved_step(trained_runs):
    model_dir, ckpt_after_interrupt, resumed, _ = trained_runs
    assert ckpt_after_interrupt == ["ckpt-1.index", "ckpt-2.index"]
    # Restarted at the checkpoint's optimizer.iterations, ran to num_steps.
    assert (resumed["start_step"], resumed["final_step"]) == (2, 4)
    assert resumed["strategy"] == "auto" and resumed["num_replicas"] == 1
    assert np.isfinite(resumed["final_loss"]) and resumed["num_params"] > 20_000_000
    for key in ("iou_oocyte", "iou_serc", "iou_needle", "miou", "eval_loss"):
        assert key in resumed
    ckpts = {p.name for p in (model_dir / "fold_02" / "checkpoints").glob("ckpt-*.index")}
    assert {"ckpt-2.index", "ckpt-3.index", "ckpt-4.index"} <= ckpts
    assert (model_dir / "fold_02" / "config.yaml").is_file()


def test_bn_statistics_are_recomputed_once_after_the_last_step_and_saved(trained_runs):
    import keras

    from sercseg_tf.training import checkpoints, modeling, precise_bn

    model_dir, _, _, recomputed = trained_runs
    assert [(after, k) for after, k, _ in recomputed] == [(3, 2)]  # in step 4, once
    model = modeling.build_model(tiny_config())
    ckpt = model_dir / "fold_02" / "checkpoints" / "ckpt-4"
    checkpoints.make_checkpoint(model).restore(str(ckpt)).expect_partial()
    saved = keras.ops.convert_to_numpy(precise_bn.batch_norm_layers(model)[0].moving_mean)
    np.testing.assert_array_equal(saved, recomputed[0][2])  # ckpt-4 holds them


def test_history_csvs_have_each_step_once(trained_runs):
    model_dir = trained_runs[0]
    train_rows = _csv_rows(model_dir / "fold_02" / "train" / "history.csv")
    assert [int(r["step"]) for r in train_rows] == [1, 2, 3, 4]
    assert all(np.isfinite(float(r["loss"])) for r in train_rows)
    eval_rows = _csv_rows(model_dir / "fold_02" / "eval" / "history.csv")
    assert [int(r["step"]) for r in eval_rows] == [2, 4]
    assert set(eval_rows[0]) == {"step", "loss", "iou_oocyte", "iou_serc", "iou_needle", "miou"}


def test_tensorboard_tags(trained_runs):
    model_dir = trained_runs[0]
    import tensorflow as tf

    train_tags = _read_events(model_dir / "fold_02" / "train")
    for tag in ("train/loss", "train/learning_rate", "train/steps_per_sec"):
        assert tag in train_tags, train_tags.keys()
        assert train_tags[tag][0][1].metadata.plugin_data.plugin_name == "scalars"
    assert sorted({s for s, _ in train_tags["train/loss"]}) == [1, 2, 3, 4]
    lr = tf.make_ndarray(train_tags["train/learning_rate"][-1][1].tensor)
    assert float(lr) == pytest.approx(TINY["learning_rate"])
    eval_tags = _read_events(model_dir / "fold_02" / "eval")
    for tag in ("eval/loss", "eval/iou_oocyte", "eval/iou_serc", "eval/iou_needle",
                "eval/miou", "eval/overlays"):
        assert tag in eval_tags, eval_tags.keys()
    assert sorted({s for s, _ in eval_tags["eval/miou"]}) == [2, 4]
    # Overlay panel: [input | ground truth | prediction] of a full 480x640 held-out frame.
    step, value = eval_tags["eval/overlays"][-1]
    blobs = tf.make_ndarray(value.tensor)
    assert value.metadata.plugin_data.plugin_name == "images"
    assert (int(blobs[0]), int(blobs[1])) == (3 * 640, 480)
    panel = tf.io.decode_png(blobs[2]).numpy()
    assert panel.shape == (480, 3 * 640, 3)
    assert np.abs(panel[:, 640:1280].astype(int) - panel[:, :640]).sum() > 0  # GT coloured


def test_cli_bad_config_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: 4\nlearnig_rate: 0.1\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "sercseg_tf.train", "--fold=2",
                           f"--config={bad}", f"--model_dir={tmp_path / 'runs'}"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"train: {bad}: unknown key 'learnig_rate' (known keys: " + \
        ", ".join(CONFIG_FIELDS) + ")"
    assert not (tmp_path / "runs").exists()  # nothing written
