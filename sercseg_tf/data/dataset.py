"""tf.data input pipeline over the per-case TFRecord shards (leave-one-case-out folds).

A fold is a choice of file patterns: fold ``k`` trains on every case of the manifest
except ``k`` and evaluates on case ``k`` (`fold_cases`, `build_fold_datasets`); fold 0
trains on every case and evaluates on none.

Training stream (deeplab2 style, see `sercseg_tf.data.augment`): records interleaved
across shards -> seeded shuffle -> repeat -> numbered -> decode -> resize by
``image_scale`` -> [photometric randomisation -> random aspect ratio, when configured]
-> random scale -> ``preprocess_images`` -> pad (image 0, label 255) -> random crop ->
random flip -> batch (drop remainder) -> prefetch. The random draws
of example ``i`` use the stateless seed ``(seed, i)``, and the shuffle uses ``seed``,
so the same seed gives identical batches whatever the parallelism. With a rehearsal
set (fine-tuning, ``rehearsal_tfrecord_dir``) a second such stream over its cases is
sampled, example by example, with probability ``rehearsal_share`` before batching.

Evaluation stream: shards in sorted order, records in file order (frames in frame-id
order), resized by ``image_scale`` only, normalised, one pass, no shuffle; batches
are padded (image 0, label 255) only if frames of different sizes meet in a batch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

from sercseg_tf import formats, labels
from sercseg_tf.data import augment as augment_lib
from sercseg_tf.data import tfrecord

AUTOTUNE = tf.data.AUTOTUNE


ALL_CASES_FOLD = 0  # the "fold" that trains on every case and holds none out
# The rehearsal stream's augmentation seed is the run's seed plus this (draws of its own).
REHEARSAL_SEED_OFFSET = 1_000_003


def fold_cases(tfrecord_dir: str | os.PathLike, fold: int) -> tuple[list[int], int | None]:
    """Splits the manifest's cases for leave-one-case-out fold ``fold``.

    Fold `ALL_CASES_FOLD` (0) trains on every case and holds none out: the model to
    use on new patients once the folds have measured how well the method does.

    Returns:
      ``(training case ids, held-out case id)``; the held-out id is None for fold 0.

    Raises:
      ValueError: ``fold`` is neither 0 nor a case id of the manifest (lists the valid
        ones).
    """
    case_ids = tfrecord.case_ids(tfrecord_dir)
    if int(fold) == ALL_CASES_FOLD:
        return list(case_ids), None
    if int(fold) not in case_ids:
        raise ValueError(
            f"{tfrecord_dir}: fold {fold} is not a case of the manifest; "
            f"valid folds are {case_ids} (or 0 for all cases)"
        )
    return [c for c in case_ids if c != int(fold)], int(fold)


def list_files(file_patterns: str | Sequence[str]) -> list[str]:
    """Sorted, de-duplicated files matching the glob patterns.

    Raises:
      FileNotFoundError: a pattern matches nothing (named in the message).
    """
    if isinstance(file_patterns, (str, os.PathLike)):
        file_patterns = [file_patterns]
    files: set[str] = set()
    for pattern in file_patterns:
        matched = tf.io.gfile.glob(os.fspath(pattern))
        if not matched:
            raise FileNotFoundError(f"{pattern}: no TFRecord file matches")
        files.update(matched)
    return sorted(files)


def _normalize(image: tf.Tensor) -> tf.Tensor:
    from sercseg_tf.model.preprocessing import preprocess_images  # noqa: PLC0415

    return preprocess_images(image)


def _resize_by(sample: dict[str, tf.Tensor], image_scale: float) -> tuple[tf.Tensor, tf.Tensor]:
    image = tf.cast(sample[formats.SAMPLE_IMAGE], tf.float32)
    label = sample[formats.SAMPLE_LABEL]
    if image_scale != 1.0:
        size = augment_lib.scaled_size(tf.shape(image)[:2], image_scale)
        image, label = augment_lib.resize_image_and_label(image, label, size)
    return image, label


def _output(sample: dict[str, tf.Tensor], image: tf.Tensor, label: tf.Tensor) -> dict:
    return {
        formats.SAMPLE_IMAGE: image,
        formats.SAMPLE_LABEL: tf.cast(label[..., 0], tf.int32),
        formats.SAMPLE_FILENAME: sample[formats.SAMPLE_FILENAME],
        formats.SAMPLE_CASE_ID: sample[formats.SAMPLE_CASE_ID],
        formats.SAMPLE_FRAME_ID: sample[formats.SAMPLE_FRAME_ID],
    }


def _stream_options() -> tf.data.Options:
    """Deterministic order, and tf.data's autotuning model off."""
    options = tf.data.Options()
    options.deterministic = True
    # No autotuning model: AUTOTUNE then means "one call per core" and a self-sizing
    # prefetch buffer. With the model on, deleting a training iterator once waited 16 s
    # in a loop over the demo stream (among the threads it waits for: the model's
    # optimisation loop, whose sleep grows to 60 s); without it 0.2 s
    # (`bench/bench_dataset.py --teardown_rounds`). The stream still gives ~29 vs ~35
    # batches/s, 20x what the demo's training takes. tf.distribute's MultiDeviceIterator
    # wraps the stream in per-device datasets with default options, where the model
    # still runs, so one CPU replica reads the stream without it (`loop._train_iterator`;
    # BUILD_NOTES.md, "Input pipeline").
    options.autotune.enabled = False
    return options


def _eval_stream(files: list[str], image_scale: float, batch_size: int,
                 repeat: int | None) -> tf.data.Dataset:
    """Whole frames in file order, resized by ``image_scale``, padded into batches."""
    ds = tf.data.TFRecordDataset(files)
    if repeat is not None:
        ds = ds.repeat(repeat)

    def eval_map(serialized: tf.Tensor) -> dict:
        sample = tfrecord.decode_example(serialized)
        image, label = _resize_by(sample, image_scale)
        return _output(sample, _normalize(image), label)

    ds = ds.map(eval_map, num_parallel_calls=AUTOTUNE, deterministic=True)
    padding = {
        formats.SAMPLE_IMAGE: tf.constant(0.0, tf.float32),
        formats.SAMPLE_LABEL: tf.constant(labels.IGNORE_LABEL, tf.int32),
        formats.SAMPLE_FILENAME: tf.constant("", tf.string),
        formats.SAMPLE_CASE_ID: tf.constant(0, tf.int32),
        formats.SAMPLE_FRAME_ID: tf.constant(0, tf.int32),
    }
    ds = ds.padded_batch(batch_size, padding_values=padding)
    return ds.prefetch(AUTOTUNE)


def _train_examples(files: list[str], *, crop: tuple[int, int], image_scale: float,
                    min_scale: float, max_scale: float, scale_step: float, flip: bool,
                    seed: int, shuffle_buffer: int, repeat: int | None,
                    photometric: augment_lib.Photometric | None, aspect_ratio: float,
                    cache_frames: bool) -> tf.data.Dataset:
    """The shuffled, augmented training examples of ``files``, unbatched (`build_dataset`)."""
    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset,
        cycle_length=len(files),
        block_length=1,
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )

    def decode_scaled(serialized: tf.Tensor) -> dict:
        sample = tfrecord.decode_example(serialized)
        image, label = _resize_by(sample, image_scale)
        return {**sample, formats.SAMPLE_IMAGE: image, formats.SAMPLE_LABEL: label}

    if cache_frames:
        # The shuffle permutes by seed and position only, so decoding before it (once,
        # then cached) yields the stream that decoding after it does.
        ds = ds.map(decode_scaled, num_parallel_calls=AUTOTUNE, deterministic=True).cache()
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat(repeat)
    ds = ds.enumerate()

    def train_map(index: tf.Tensor, record: tf.Tensor | dict) -> dict:
        sample = record if cache_frames else decode_scaled(record)
        image, label = sample[formats.SAMPLE_IMAGE], sample[formats.SAMPLE_LABEL]
        example_seed = tf.stack([tf.constant(seed, tf.int64), index])
        image, label = augment_lib.augment(
            image,
            label,
            example_seed,
            crop_size=crop,
            min_scale=min_scale,
            max_scale=max_scale,
            scale_step=scale_step,
            flip=flip,
            normalize=_normalize,
            photometric_params=photometric,
            aspect_ratio=aspect_ratio,
        )
        return _output(sample, image, label)

    return ds.map(train_map, num_parallel_calls=AUTOTUNE, deterministic=True)


def build_dataset(
    file_patterns: str | Sequence[str],
    *,
    is_training: bool,
    batch_size: int,
    crop_size: Sequence[int] = (481, 641),
    image_scale: float = 1.0,
    min_scale: float = 0.5,
    max_scale: float = 2.0,
    scale_step: float = 0.25,
    flip: bool = True,
    seed: int = 0,
    shuffle_buffer: int = 256,
    repeat: int | None = None,
    photometric: augment_lib.Photometric | None = None,
    aspect_ratio: float = 0.0,
    cache_frames: bool = False,
    rehearsal_patterns: Sequence[str] = (),
    rehearsal_share: float = 0.0,
) -> tf.data.Dataset:
    """Builds the training or evaluation stream from TFRecord shards.

    Args:
      file_patterns: glob pattern(s) of shards, e.g. from `tfrecord.case_file_pattern`.
      is_training: augmented, shuffled, repeated stream; else one ordered pass.
      batch_size: examples per batch.
      crop_size: training crop ``(height, width)``; OS·k+1, e.g. 481×641.
      image_scale: every frame is first resized by this factor (train and eval).
      min_scale: smallest random scale (training).
      max_scale: largest random scale (training).
      scale_step: spacing of the random scales; 0 = continuous.
      flip: random horizontal flip (training).
      seed: seeds the shuffle and all random augmentation.
      shuffle_buffer: shuffle buffer size in records.
      repeat: number of passes; None = forever when training, once when evaluating.
      photometric: photometric randomisation (training); None = off.
      aspect_ratio: random aspect-ratio change (training), see `augment.random_aspect`.
      cache_frames: training keeps every decoded frame, resized by ``image_scale``, in
        memory after the first pass (float32: ~13 bytes per scaled pixel), so PNG decoding
        and the resize run once per frame instead of once per example. Same stream.
      rehearsal_patterns: shards of a second data set mixed into the training stream
        (rehearsal while fine-tuning: the data the model learnt before), augmented the
        same way with draws of their own (seed + `REHEARSAL_SEED_OFFSET`).
      rehearsal_share: the probability that a training example is drawn from
        ``rehearsal_patterns`` (`tf.data.Dataset.sample_from_datasets`, seeded).

    Returns:
      Dataset of dicts: ``image`` float32 ``[B, h, w, 3]`` preprocessed by
      ``preprocess_images``, ``label`` int32 ``[B, h, w]`` (255 = ignore),
      ``filename`` string ``[B]``, ``case_id`` int32 ``[B]``, ``frame_id`` int32 ``[B]``.
    """
    files = list_files(file_patterns)
    options = _stream_options()
    if not is_training:
        return _eval_stream(files, image_scale, batch_size, repeat).with_options(options)

    augmentation = dict(crop=(int(crop_size[0]), int(crop_size[1])), image_scale=image_scale,
                        min_scale=min_scale, max_scale=max_scale, scale_step=scale_step,
                        flip=flip, shuffle_buffer=shuffle_buffer, repeat=repeat,
                        photometric=photometric, aspect_ratio=aspect_ratio,
                        cache_frames=cache_frames)
    ds = _train_examples(files, seed=seed, **augmentation)
    if rehearsal_patterns:
        # A stream of its own (other augmentation draws), sampled at rehearsal_share.
        rehearsal = _train_examples(list_files(rehearsal_patterns),
                                    seed=seed + REHEARSAL_SEED_OFFSET, **augmentation)
        ds = tf.data.Dataset.sample_from_datasets(
            [ds, rehearsal], weights=[1.0 - rehearsal_share, rehearsal_share], seed=seed)
    ds = ds.batch(batch_size, drop_remainder=True)
    return ds.prefetch(AUTOTUNE).with_options(options)


def _get(config: Any, name: str, default: Any) -> Any:
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


def _crop_size(config: Any) -> tuple[int, int]:
    crop = _get(config, "crop_size", None)
    if crop is None:
        crop = (_get(config, "crop_height", 481), _get(config, "crop_width", 641))
    return int(crop[0]), int(crop[1])


def photometric_from_config(config: Any) -> augment_lib.Photometric:
    """The `augment.Photometric` ranges of a config's ``aug_*`` keys (absent keys: off)."""
    fields = dataclasses.fields(augment_lib.Photometric)
    return augment_lib.Photometric(
        **{f.name: type(f.default)(_get(config, f"aug_{f.name}", f.default)) for f in fields}
    )


def build_train_dataset(
    tfrecord_dir: str | os.PathLike, case_ids: Sequence[int], config: Any,
    seed: int | None = None,
) -> tf.data.Dataset:
    """The augmented, infinite training stream over some cases, as a config defines it.

    The one place a config's data keys become a training stream (`build_fold_datasets`
    and the training loop both call it), so every key the config holds is applied.

    Args:
      tfrecord_dir: folder with shards and ``manifest.json``.
      case_ids: the training cases.
      config: object or mapping (e.g. `sercseg_tf.config.ExperimentConfig`); reads
        ``batch_size``, ``crop_size`` (or ``crop_height`` and ``crop_width``),
        ``image_scale``, ``min_scale``, ``max_scale``, ``scale_step``, ``flip``,
        ``seed``, ``shuffle_buffer``, ``cache_frames`` (defaults as in `build_dataset`)
        and the ``aug_*`` keys (`photometric_from_config`, ``aug_aspect_ratio``; absent = off).
      seed: overrides the config's ``seed`` (a resumed run reseeds its stream).

    ``rehearsal_tfrecord_dir`` (config; '' = none) adds every case of a second TFRecord
    folder, drawn with probability ``rehearsal_share`` per example (`build_dataset`).
    """
    rehearsal_dir = str(_get(config, "rehearsal_tfrecord_dir", "") or "")
    rehearsal = ([tfrecord.case_file_pattern(rehearsal_dir, c)
                  for c in tfrecord.case_ids(rehearsal_dir)] if rehearsal_dir else [])
    return build_dataset(
        [tfrecord.case_file_pattern(tfrecord_dir, c) for c in case_ids],
        is_training=True,
        batch_size=int(_get(config, "batch_size", 4)),
        crop_size=_crop_size(config),
        image_scale=float(_get(config, "image_scale", 1.0)),
        min_scale=float(_get(config, "min_scale", 0.5)),
        max_scale=float(_get(config, "max_scale", 2.0)),
        scale_step=float(_get(config, "scale_step", 0.25)),
        flip=bool(_get(config, "flip", True)),
        seed=int(_get(config, "seed", 0) if seed is None else seed),
        shuffle_buffer=int(_get(config, "shuffle_buffer", 256)),
        photometric=photometric_from_config(config),
        aspect_ratio=float(_get(config, "aug_aspect_ratio", 0.0)),
        cache_frames=bool(_get(config, "cache_frames", False)),
        rehearsal_patterns=rehearsal,
        rehearsal_share=float(_get(config, "rehearsal_share", 0.0)),
    )


def build_fold_datasets(
    tfrecord_dir: str | os.PathLike, fold: int, config: Any
) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
    """Training and evaluation datasets of leave-one-case-out fold ``fold``.

    Args:
      tfrecord_dir: folder with shards and ``manifest.json``.
      fold: held-out case id.
      config: as for `build_train_dataset`; also reads ``eval_batch_size`` (default 1).

    Returns:
      ``(train_ds, eval_ds)``: augmented infinite stream over the other cases, and
      one ordered pass over the held-out case (None for fold 0).
    """
    train_ids, held_out = fold_cases(tfrecord_dir, fold)
    if not train_ids:
        raise ValueError(f"{tfrecord_dir}: fold {fold} leaves no case to train on")
    train_ds = build_train_dataset(tfrecord_dir, train_ids, config)
    if held_out is None:  # fold 0: every case trains, nothing to evaluate
        return train_ds, None
    eval_ds = build_dataset(
        tfrecord.case_file_pattern(tfrecord_dir, held_out),
        is_training=False,
        batch_size=int(_get(config, "eval_batch_size", 1)),
        image_scale=float(_get(config, "image_scale", 1.0)),
    )
    return train_ds, eval_ds
