"""Training-time randomisation beyond deeplab2 (photometric ops, aspect ratio)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from sercseg_tf import config as config_lib
from sercseg_tf.data import augment, dataset

SEED = tf.constant([3, 7], tf.int64)
OTHER = tf.constant([4, 9], tf.int64)

# One op on at a time, at a strength where its effect is unmistakable.
OPS = {
    "brightness": augment.Photometric(brightness=0.3),
    "contrast": augment.Photometric(contrast=0.6),
    "gamma": augment.Photometric(gamma=0.8),
    "hue": augment.Photometric(hue=0.3),
    "saturation": augment.Photometric(saturation=0.8),
    "grayscale": augment.Photometric(grayscale_prob=1.0),
    "blur": augment.Photometric(blur_prob=1.0, blur_max_sigma=2.5),
    "noise": augment.Photometric(noise_max_std=20.0),
    "jpeg": augment.Photometric(jpeg_prob=1.0, jpeg_min_quality=5),
    "resample": augment.Photometric(resample_prob=1.0, resample_min_factor=0.3),
}


def _image(h: int = 32, w: int = 48) -> tf.Tensor:
    """A coloured, textured RGB image in [0, 255] (so hue and saturation have an effect)."""
    rng = np.random.default_rng(0)
    base = np.stack(np.meshgrid(np.linspace(40, 200, w), np.linspace(60, 180, h)), -1)
    rgb = np.concatenate([base, base[..., :1] * 0.5 + 60], -1) + rng.normal(0, 12, (h, w, 3))
    return tf.constant(np.clip(rgb, 0, 255), tf.float32)


@pytest.mark.parametrize("name", sorted(OPS))
def test_each_op_changes_the_image_and_is_seeded(name):
    image = _image()
    out = augment.photometric(image, SEED, OPS[name])
    assert out.shape == image.shape and out.dtype == tf.float32
    assert float(tf.reduce_max(tf.abs(out - image))) > 2.0, name
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0
    np.testing.assert_array_equal(out, augment.photometric(image, SEED, OPS[name]))
    if name != "grayscale":  # grey-scale has no random strength
        assert not np.array_equal(out, augment.photometric(image, OTHER, OPS[name])), name


def test_grayscale_makes_channels_equal_and_blur_smooths():
    image = _image()
    grey = augment.photometric(image, SEED, OPS["grayscale"]).numpy()
    np.testing.assert_allclose(grey[..., 0], grey[..., 2], atol=1e-4)
    blurred = augment.gaussian_blur(image, tf.constant(2.0), 2.5).numpy()
    lap = lambda x: np.abs(np.diff(x, axis=1)).mean()  # noqa: E731
    assert lap(blurred) < 0.5 * lap(image.numpy())
    np.testing.assert_allclose(blurred.mean(), image.numpy().mean(), rtol=0.02)


def test_resample_removes_fine_detail_and_keeps_edges_in_place():
    # Left half dark, right half light, plus pixel noise: a shrink to 40 % and back must
    # smooth the noise away (as low-resolution footage would) without moving the edge.
    rng = np.random.default_rng(1)
    step = np.where(np.arange(60)[None, :] < 30, 60.0, 180.0) * np.ones((40, 1))
    noisy = np.clip(step + rng.normal(0, 15, step.shape), 0, 255)[..., None].repeat(3, -1)
    out = augment.resample(tf.constant(noisy, tf.float32), tf.constant(0.4)).numpy()
    hf = lambda x: np.abs(np.diff(x[:, 2:26], axis=1)).mean()  # noqa: E731  (inside a half)
    assert hf(out) < hf(noisy) / 3
    for half, level in ((slice(0, 26), 60.0), (slice(34, 60), 180.0)):
        assert abs(out[:, half].mean() - level) < 3.0
    profile = out[..., 0].mean(0)
    assert profile[27] < 120.0 < profile[32]  # the edge is still between columns 27 and 32


def test_all_off_is_the_identity_and_keeps_deeplab2_draws():
    image, label = _image(), tf.cast(_image()[..., :1] > 120, tf.uint8)
    off = augment.Photometric()
    assert not off.active
    assert augment.photometric(image, SEED, off) is image
    kwargs = dict(crop_size=(17, 25), min_scale=0.5, max_scale=1.5, scale_step=0.25, flip=True)
    plain = augment.augment(image, label, SEED, **kwargs)
    with_off = augment.augment(image, label, SEED, **kwargs, photometric_params=off,
                               aspect_ratio=0.0)  # fmt: skip
    for a, b in zip(plain, with_off, strict=True):
        np.testing.assert_array_equal(a, b)


def test_photometric_leaves_the_label_alone():
    image = _image()
    label = tf.cast(tf.random.stateless_uniform([32, 48, 1], SEED, 0, 4, tf.int32), tf.uint8)
    every = augment.Photometric(0.2, 0.3, 0.3, 0.05, 0.3, 0.5, 0.5, 1.5, 5.0, 0.5, 30)
    kwargs = dict(crop_size=(32, 48), min_scale=1.0, max_scale=1.0, scale_step=0.0, flip=False)
    img_out, lab_out = augment.augment(image, label, SEED, **kwargs, photometric_params=every)
    np.testing.assert_array_equal(lab_out, label)
    assert not np.array_equal(img_out, image)


def test_aspect_change_moves_image_and_label_together():
    h, w = 40, 60
    img = np.full((h, w, 3), 50.0, np.float32)
    img[10:30, 20:50] = 200.0  # a bright rectangle ...
    lab = np.zeros((h, w, 1), np.uint8)
    lab[10:30, 20:50] = 2  # ... labelled class 2
    image, label = tf.constant(img), tf.constant(lab)
    seen = set()
    for k in range(6):
        seed = tf.constant([k, 1], tf.int64)
        out_img, out_lab = augment.random_aspect(image, label, seed, max_change=0.5)
        oh, ow = out_lab.shape[:2]
        seen.add(round((ow / oh) / (w / h), 2))
        assert 1 / 1.5 - 0.05 <= (ow / oh) / (w / h) <= 1.5 + 0.05
        assert set(np.unique(out_lab)) <= {0, 2}  # nearest neighbour: no new classes
        bright = out_img.numpy()[..., 0] > 125
        labelled = out_lab.numpy()[..., 0] == 2
        assert (bright & labelled).sum() / (bright | labelled).sum() > 0.9
        again = augment.random_aspect(image, label, seed, max_change=0.5)
        np.testing.assert_array_equal(again[1], out_lab)
    assert len(seen) > 3  # the ratio is random
    same = augment.random_aspect(image, label, SEED, max_change=0.0)
    assert same[0] is image and same[1] is label


def test_config_keys_reach_the_pipeline():
    paper = config_lib.load_config(config_lib.REPO_ROOT / "configs" / "paper.yaml")
    demo = config_lib.load_config(config_lib.REPO_ROOT / "configs" / "demo.yaml")
    assert not dataset.photometric_from_config(paper).active and paper.aug_aspect_ratio == 0
    ph = dataset.photometric_from_config(demo)
    assert ph.active
    for f in dataclasses.fields(ph):
        assert getattr(ph, f.name) == getattr(demo, f"aug_{f.name}")
    with pytest.raises(config_lib.ConfigError, match="aug_hue"):
        paper.replace(aug_hue=0.7)
    with pytest.raises(config_lib.ConfigError, match="aug_jpeg_prob"):
        paper.replace(aug_jpeg_prob=1.5)


def test_training_stream_with_randomisation(tiny_tfrecord_dir):
    """Same seed: photometric changes images only; aspect changes crops, labels follow."""
    pattern = str(tiny_tfrecord_dir / "*.tfrecord")
    common = dict(is_training=True, batch_size=2, crop_size=(49, 65), image_scale=0.125,
                  min_scale=1.0, max_scale=1.0, scale_step=0.0, flip=False, seed=5)  # fmt: skip

    def first(**kw):
        batch = next(iter(dataset.build_dataset(pattern, **common, **kw)))
        return batch["image"].numpy(), batch["label"].numpy()

    img0, lab0 = first()
    img1, lab1 = first(photometric=OPS["noise"])
    np.testing.assert_array_equal(lab1, lab0)
    assert not np.array_equal(img1, img0)
    img2, lab2 = first(photometric=OPS["noise"])
    np.testing.assert_array_equal(img2, img1)
    _, lab3 = first(aspect_ratio=0.5)
    assert lab3.shape == lab0.shape and not np.array_equal(lab3, lab0)
