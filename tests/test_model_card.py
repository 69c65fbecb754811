"""Fold 0 (--all_cases) trains on every case; the export's model card records what it learned."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sercseg_tf import config as config_lib
from sercseg_tf import labels, layout, model_card
from sercseg_tf.config import ExperimentConfig

TINY = dict(output_stride=32, image_scale=0.125, crop_height=33, crop_width=49, batch_size=2,
            num_steps=1, init_checkpoint="none", min_scale=0.75, max_scale=1.25,
            shuffle_buffer=8, log_every_steps=1, save_checkpoints_steps=1, eval_every_steps=1)


def test_fold_zero_holds_no_case_out(tiny_tfrecord_dir):
    from sercseg_tf.data import dataset

    assert dataset.fold_cases(tiny_tfrecord_dir, 0) == ([1, 2, 3], None)
    assert dataset.fold_cases(tiny_tfrecord_dir, 2) == ([1, 3], 2)
    with pytest.raises(ValueError, match="or 0 for all cases"):
        dataset.fold_cases(tiny_tfrecord_dir, 9)
    _, eval_ds = dataset.build_fold_datasets(tiny_tfrecord_dir, 0, TINY)
    assert eval_ds is None


def _one_conv_model(config, load_init_weights=True):
    """A 3x3 convolution to 4 classes in place of DeepLab (tests/test_train.py runs that)."""
    import keras

    del config, load_init_weights

    class OneConv(keras.Model):
        def __init__(self):  # fixed names: checkpoints key weights by their path
            super().__init__(name="one_conv")
            self.conv = keras.layers.Conv2D(labels.NUM_CLASSES, 3, padding="same", name="conv")

        def call(self, x, training=False):
            return self.conv(x)

    model = OneConv()
    model(keras.ops.zeros((1, 8, 8, 3)))  # build the variables
    return model


@pytest.fixture(scope="module")
def all_cases_run(tiny_tfrecord_dir, tmp_path_factory):
    """One training step of fold 0 on every case, then its export (fold bookkeeping only:
    the network is a single convolution, so the test takes seconds)."""
    from sercseg_tf import export, train
    from sercseg_tf.training import modeling

    model_dir = tmp_path_factory.mktemp("runs")
    config = ExperimentConfig().replace(**TINY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(modeling, "build_model", _one_conv_model)
        summary = train.run_training(config, tiny_tfrecord_dir, model_dir, 0,
                                     strategy="one_device")
        path = export.run_export(config, model_dir, 0)
    return model_dir, summary, path


def test_all_cases_training_evaluates_nothing(all_cases_run, tiny_tfrecord_dir):
    from sercseg_tf import evaluate

    model_dir, summary, _ = all_cases_run
    assert summary["train_cases"] == [1, 2, 3] and summary["held_out"] is None
    assert summary["final_step"] == 1 and "miou" not in summary
    assert not (layout.eval_dir(model_dir, 0) / layout.HISTORY_CSV).exists() or \
        pd.read_csv(layout.eval_dir(model_dir, 0) / layout.HISTORY_CSV).empty
    record = json.loads(layout.training_data_json(model_dir, 0).read_text())
    assert record["all_cases"] is True and record["train_cases"] == [1, 2, 3]
    assert record["frame_size"] == [480, 640] and record["data_source"] == "synthetic"
    with pytest.raises(ValueError, match="no held-out case to evaluate"):
        evaluate.run_evaluation(ExperimentConfig().replace(**TINY), tiny_tfrecord_dir,
                                model_dir, 0)


def test_export_carries_the_model_card(all_cases_run):
    _, _, path = all_cases_run
    assert path == layout.export_dir(all_cases_run[0], 0)
    card = json.loads((path / "assets" / "model_card.json").read_text())
    assert card == model_card.read_card(path)
    assert card["format"] == model_card.FORMAT and card["package_version"]
    assert card["created"][:2] == "20"
    training = card["training"]
    assert training["fold"] == 0 and training["all_cases"] is True
    assert training["held_out_case"] is None and training["held_out_iou"] is None
    assert training["frame_size"] == [480, 640] and training["image_scale"] == 0.125
    assert (training["min_scale"], training["max_scale"]) == (0.75, 1.25)
    assert card["config"] == ExperimentConfig().replace(**TINY).to_dict()
    assert [c["colour"] for c in card["classes"]] == [list(c) for c in labels.CLASS_COLOURS]
    assert [c["labelme_label"] for c in card["classes"][1:]] == ["oocyte", "sERC", "needle"]


def test_held_out_iou_comes_from_evaluate(tmp_path):
    from sercseg_tf import export

    eval_dir = layout.eval_dir(tmp_path, 4)
    eval_dir.mkdir(parents=True)
    pd.DataFrame([{"case": 4, "frames": 9, "oocyte": 0.97, "serc": 0.81, "needle": 0.7,
                   "mean": 0.8267}]).to_csv(eval_dir / layout.IOU_MEAN_CSV, index=False)
    iou = export.held_out_iou(tmp_path, 4)
    assert iou == {"oocyte": 0.97, "serc": 0.81, "needle": 0.7, "mean": 0.8267}
    card = model_card.build_card(ExperimentConfig().to_dict(), None, 4, iou, um_per_px=0.3)
    assert card["training"]["held_out_case"] == 4 and card["training"]["all_cases"] is False
    assert card["training"]["held_out_iou"]["serc"] == 0.81 and card["um_per_px"] == 0.3
    assert export.held_out_iou(tmp_path, 5) is None


def test_fold_flags(capsys):
    from absl import flags

    fv = flags.FlagValues()
    config_lib.define_flags(fv)
    config_lib.define_all_cases_flag(fv)
    fv(["prog", "--all_cases"])
    assert config_lib.fold_from_flags("train", fv) == 0
    fv = flags.FlagValues()
    config_lib.define_flags(fv)
    config_lib.define_all_cases_flag(fv)
    fv(["prog", "--all_cases", "--fold=3"])
    assert config_lib.fold_from_flags("train", fv) is None
    assert capsys.readouterr().err.strip() == "train: give --fold or --all_cases, not both"
    fv = flags.FlagValues()
    config_lib.define_flags(fv)
    config_lib.define_all_cases_flag(fv)
    fv(["prog"])
    assert config_lib.fold_from_flags("train", fv) is None
    assert capsys.readouterr().err.strip() == (
        "train: --fold is required (the held-out case id; --all_cases or --fold=0: every case)")
    fv = flags.FlagValues()  # evaluate and the benches have no --all_cases
    config_lib.define_flags(fv)
    fv(["prog"])
    assert config_lib.fold_from_flags("evaluate", fv) is None
    assert capsys.readouterr().err.strip() == "evaluate: --fold is required (the held-out case id)"
    fv(["prog", "--fold=5"])
    assert config_lib.fold_from_flags("evaluate", fv) == 5
