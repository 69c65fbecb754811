"""Input pipeline: folds, held-out isolation, augmentation alignment, determinism, eval."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from sercseg_tf import labels
from sercseg_tf.data import augment, dataset, labelme, tfrecord
from sercseg_tf.model.preprocessing import denormalize_images, preprocess_images

ALLOWED_LABELS = {0, 1, 2, 3, 255}


def _case_ids(tfrecord_dir) -> list[int]:
    return sorted(e["case_id"] for e in tfrecord.read_manifest(tfrecord_dir)["cases"].values())


def test_fold_cases_splits_and_rejects_unknown_fold(tiny_tfrecord_dir):
    ids = _case_ids(tiny_tfrecord_dir)
    train, held = dataset.fold_cases(tiny_tfrecord_dir, ids[1])
    assert held == ids[1] and train == [ids[0], ids[2]]
    with pytest.raises(ValueError, match=r"fold 99 is not a case.*valid folds"):
        dataset.fold_cases(tiny_tfrecord_dir, 99)
    with pytest.raises(FileNotFoundError, match="no TFRecord file matches"):
        dataset.build_dataset(str(tiny_tfrecord_dir / "case77-*"), is_training=True,
                              batch_size=1)


def test_training_stream_never_sees_held_out_case(tiny_tfrecord_dir):
    ids = _case_ids(tiny_tfrecord_dir)
    held = ids[0]
    config = {"batch_size": 2, "seed": 0}  # paper crop 481x641, scales 0.5..2
    train_ds, _ = dataset.build_fold_datasets(tiny_tfrecord_dir, held, config)
    seen_cases, seen_files, label_values = set(), set(), set()
    for batch in train_ds.take(10):  # 20 examples = 5 passes over the 4 training frames
        assert batch["image"].shape == (2, 481, 641, 3) and batch["image"].dtype == tf.float32
        assert batch["label"].shape == (2, 481, 641) and batch["label"].dtype == tf.int32
        assert batch["case_id"].dtype == tf.int32 and batch["frame_id"].dtype == tf.int32
        seen_cases.update(batch["case_id"].numpy().tolist())
        seen_files.update(f.decode() for f in batch["filename"].numpy())
        label_values.update(np.unique(batch["label"].numpy()).tolist())
    assert held not in seen_cases
    assert seen_cases == set(ids[1:])
    assert not any(f.startswith(labels.case_name(held)) for f in seen_files)
    assert len(seen_files) == 4
    assert label_values <= ALLOWED_LABELS
    assert 255 in label_values  # scales < 1 leave frames smaller than the crop: padded


def _colour_coded_record(path, seed=0):
    """A record whose pixel colour is a function of its label, with an asymmetric label."""
    rng = np.random.default_rng(seed)
    label = np.kron(rng.integers(0, 4, (10, 15)), np.ones((4, 4), np.int64)).astype(np.uint8)
    palette = np.array([[10, 200, 30], [250, 5, 90], [40, 60, 220], [128, 255, 0]], np.uint8)
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(tfrecord.encode_example(palette[label], label, "x.png", 1, 0))
    return label, palette


def test_crop_and_flip_move_image_and_label_together(tmp_path):
    label, palette = _colour_coded_record(tmp_path / "case01-00000-of-00001.tfrecord")
    ds = dataset.build_dataset(str(tmp_path / "*.tfrecord"), is_training=True, batch_size=16,
                               crop_size=(32, 48), min_scale=1.0, max_scale=1.0, seed=0)
    batch = next(iter(ds))
    images = denormalize_images(batch["image"].numpy())
    crops = batch["label"].numpy()
    flips, offsets = set(), set()
    for image, crop in zip(images, crops, strict=True):
        np.testing.assert_array_equal(image, palette[crop])  # image follows the label
        matches = [(flipped, top, left)
                   for flipped, source in ((False, label), (True, label[:, ::-1]))
                   for top in range(40 - 32 + 1) for left in range(60 - 48 + 1)
                   if np.array_equal(source[top:top + 32, left:left + 48], crop)]
        assert len(matches) == 1, "crop is not a window of the (flipped) label"
        flips.add(matches[0][0])
        offsets.add(matches[0][1:])
    assert flips == {False, True}
    assert len(offsets) > 1


def test_random_scale_draws_the_deeplab2_steps():
    draws = {round(float(augment.random_scale(tf.constant([7, i]), 0.5, 2.0, 0.25)), 4)
             for i in range(200)}
    assert draws == {0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0}
    image = tf.zeros([40, 60, 3])
    label = tf.zeros([40, 60, 1], tf.uint8)
    out_image, out_label = augment.augment(image, label, tf.constant([1, 2]), crop_size=(17, 33),
                                           min_scale=0.25, max_scale=0.25, scale_step=0.0,
                                           flip=True)
    assert out_image.shape == (17, 33, 3) and out_label.shape == (17, 33, 1)
    # 0.25 x (40, 60) = (10, 15): the rest is padding, image 0 and label 255.
    assert np.all(out_label.numpy()[10:] == 255) and np.all(out_image.numpy()[10:] == 0)
    assert np.all(out_label.numpy()[:10, :15] == 0)


def test_same_seed_gives_identical_batches(tiny_tfrecord_dir):
    pattern = str(tiny_tfrecord_dir / "*.tfrecord")

    def first_batches(seed):
        ds = dataset.build_dataset(pattern, is_training=True, batch_size=2, crop_size=(97, 129),
                                   seed=seed)
        return [b for b in ds.take(4)]

    a, b, c = first_batches(3), first_batches(3), first_batches(4)
    for x, y in zip(a, b, strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key].numpy(), y[key].numpy())
    assert any(not np.array_equal(x["image"].numpy(), z["image"].numpy())
               for x, z in zip(a, c, strict=True))


def test_streams_run_without_the_autotuning_model(tiny_tfrecord_dir):
    # Deleting an iterator whose autotuning thread sleeps can stall (16 s seen, up to 60 s),
    # so both streams switch the model off; the options must also survive the training
    # loop's own with_options (distribution sharding).
    pattern = str(tiny_tfrecord_dir / "*.tfrecord")
    for is_training in (True, False):
        ds = dataset.build_dataset(pattern, is_training=is_training, batch_size=2,
                                   crop_size=(65, 97))
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        ds = ds.with_options(options)
        assert ds.options().autotune.enabled is False
        assert ds.options().deterministic is True
        assert next(iter(ds))["image"].shape[0] == 2


def test_cached_frames_give_the_uncached_stream(tiny_tfrecord_dir):
    # cache_frames decodes and scales each frame once; the examples, across several
    # passes over the records (the later ones read from the cache), must not change.
    pattern = str(tiny_tfrecord_dir / "*.tfrecord")
    num_records = sum(1 for _ in tf.data.TFRecordDataset(dataset.list_files(pattern)))
    photometric = augment.Photometric(noise_max_std=4.0, blur_prob=0.5, grayscale_prob=0.3)

    def batches(cache_frames):
        ds = dataset.build_dataset(
            pattern, is_training=True, batch_size=2, crop_size=(65, 97), image_scale=0.5,
            min_scale=0.75, max_scale=1.25, seed=5, photometric=photometric,
            cache_frames=cache_frames)
        return list(ds.take(num_records + 2))  # ~3 passes of 2 examples per batch

    for x, y in zip(batches(False), batches(True), strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key].numpy(), y[key].numpy())


def test_eval_dataset_yields_full_frames_in_order(synthetic_dir, tiny_tfrecord_dir):
    case_id = _case_ids(tiny_tfrecord_dir)[2]
    pattern = tfrecord.case_file_pattern(tiny_tfrecord_dir, case_id)
    case_dir = next(p for p in sorted(synthetic_dir.iterdir())
                    if p.is_dir() and p.name.endswith(f"{case_id:02d}"))
    jsons = sorted(p for p in case_dir.glob("*.json") if p.name != "ground_truth.json")

    full = list(dataset.build_dataset(pattern, is_training=False, batch_size=1))
    assert len(full) == len(jsons) == 2
    assert [int(b["frame_id"][0]) for b in full] == [0, 1]
    for batch, json_path in zip(full, jsons, strict=True):
        ann = labelme.load_annotation(json_path)
        assert int(batch["case_id"][0]) == case_id
        np.testing.assert_array_equal(batch["image"].numpy()[0],
                                      preprocess_images(ann.image).numpy())
        np.testing.assert_array_equal(batch["label"].numpy()[0], ann.label.astype(np.int32))

    half = list(dataset.build_dataset(pattern, is_training=False, batch_size=2,
                                      image_scale=0.5))
    assert len(half) == 1
    h, w = ann.label.shape
    assert half[0]["image"].shape == (2, h // 2, w // 2, 3)
    assert half[0]["label"].shape == (2, h // 2, w // 2)
    assert half[0]["frame_id"].numpy().tolist() == [0, 1]
    assert set(np.unique(half[0]["label"].numpy()).tolist()) <= ALLOWED_LABELS


def test_training_loop_stream_applies_every_augmentation_key(tiny_tfrecord_dir):
    # The loop's stream must be the config's stream: a key that only build_fold_datasets
    # honoured once left the aug_* randomisation out of every training run.
    from sercseg_tf.config import ExperimentConfig
    from sercseg_tf.training import distribute, loop

    ids = _case_ids(tiny_tfrecord_dir)
    plain = ExperimentConfig().replace(batch_size=2, crop_height=33, crop_width=49,
                                       image_scale=0.25, min_scale=1.0, max_scale=1.0)
    grey = plain.replace(aug_grayscale_prob=1.0)
    strategy = distribute.create_strategy("one_device")

    def first_images(config):
        it = loop._train_iterator(config, tiny_tfrecord_dir, ids[1:], 0, strategy)
        # One CPU replica reads the stream itself, not through tf.distribute's
        # MultiDeviceIterator (whose deletion waited for tf.data's autotuning thread).
        assert not isinstance(it, tf.distribute.DistributedIterator)
        return np.asarray(denormalize_images(next(it)[0]))

    expected, _ = dataset.build_fold_datasets(tiny_tfrecord_dir, ids[0], grey)
    np.testing.assert_allclose(
        first_images(grey), np.asarray(denormalize_images(next(iter(expected))["image"])),
        atol=1e-4)
    grey_images, plain_images = first_images(grey), first_images(plain)
    np.testing.assert_allclose(grey_images[..., 0], grey_images[..., 2], atol=0.05)
    assert np.abs(plain_images[..., 0] - plain_images[..., 2]).max() > 5.0


def test_rehearsal_set_joins_the_training_stream_at_its_share(synthetic_dir, tiny_tfrecord_dir,
                                                              tmp_path):
    # A second data set: one of the synthetic cases under another case id (7).
    import shutil

    from sercseg_tf.config import ExperimentConfig

    src = sorted(p for p in synthetic_dir.iterdir() if p.is_dir())[0]
    shutil.copytree(src, tmp_path / "lm" / "case07")
    tfrecord.build_tfrecords(tmp_path / "lm", tmp_path / "rehearsal", progress=False)
    ids = _case_ids(tiny_tfrecord_dir)
    config = ExperimentConfig().replace(
        batch_size=4, crop_height=33, crop_width=49, image_scale=0.125, seed=3,
        rehearsal_tfrecord_dir=str(tmp_path / "rehearsal"), rehearsal_share=0.3)
    cases = np.concatenate([b["case_id"].numpy() for b in
                            dataset.build_train_dataset(tiny_tfrecord_dir, ids[:1], config)
                            .take(100)])
    assert set(cases.tolist()) == {ids[0], 7}
    assert 0.25 < np.mean(cases == 7) < 0.35  # binomial(400, 0.3): sd 0.023
    again = dataset.build_train_dataset(tiny_tfrecord_dir, ids[:1], config).take(100)
    np.testing.assert_array_equal(np.concatenate([b["case_id"].numpy() for b in again]), cases)
    # Without a rehearsal set the stream is the fold's cases only.
    alone = dataset.build_train_dataset(tiny_tfrecord_dir, ids[:1],
                                        config.replace(rehearsal_tfrecord_dir="")).take(10)
    assert {int(c) for b in alone for c in b["case_id"].numpy()} == {ids[0]}
