"""Tests of the flat YAML experiment config and its command-line flags (no TensorFlow)."""

from __future__ import annotations

import pathlib

import pytest
from absl import flags

from sercseg_tf import config as config_lib
from sercseg_tf.config import CONFIG_FIELDS, ConfigError, load_config

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_paper_config_has_the_papers_settings():
    cfg = load_config(REPO / "configs" / "paper.yaml")
    assert (cfg.batch_size, cfg.num_steps, cfg.optimizer) == (4, 25000, "adam")
    assert cfg.learning_rate == pytest.approx(1e-5)
    assert (cfg.output_stride, cfg.crop_size, cfg.image_scale) == (16, (481, 641), 1.0)
    assert (cfg.min_scale, cfg.max_scale, cfg.scale_step) == (0.5, 2.0, 0.25)
    assert cfg.init_checkpoint_path.endswith(
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert "~" not in cfg.init_checkpoint_path


def test_config_files_set_every_key():
    for name in ("paper.yaml", "demo.yaml"):
        import yaml

        keys = set(yaml.safe_load((REPO / "configs" / name).read_text()))
        assert keys == set(CONFIG_FIELDS), name


def test_demo_config_is_cpu_sized_and_random_init():
    cfg = load_config(REPO / "configs" / "demo.yaml")
    assert cfg.init_checkpoint_path is None
    assert cfg.image_scale < 1.0 and cfg.num_steps < 2000
    # crops are OS*k+1
    assert (cfg.crop_height - 1) % cfg.output_stride == 0
    assert (cfg.crop_width - 1) % cfg.output_stride == 0


def test_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("batch_size: 2\nlearning_rat: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*unknown key 'learning_rat'"):
        load_config(path)


@pytest.mark.parametrize("text, key", [
    ("batch_size: two\n", "batch_size"),
    ("output_stride: 12\n", "output_stride"),
    ("flip: maybe\n", "flip"),
    ("min_scale: 2.0\nmax_scale: 1.0\n", "min_scale"),
    ("crop_height: [1, 2]\n", "crop_height"),
    ("optimizer: rmsprop\n", "optimizer"),
    ("loss_needle_weight: 0\n", "loss_needle_weight"),
    ("loss_boundary_weight: 0\n", "loss_boundary_weight"),
    ("loss_boundary_weight: .inf\n", "loss_boundary_weight"),
    ("loss_boundary_radius: 0\n", "loss_boundary_radius"),
    ("rehearsal_share: 0\n", "rehearsal_share"),
    ("rehearsal_share: 1.0\n", "rehearsal_share"),
    ("needle_hysteresis_weight: 0.5\n", "needle_hysteresis_weight"),
    ("needle_hysteresis_weight: .nan\n", "needle_hysteresis_weight"),
    ("eval_scales: 0.75,x\n", "eval_scales"),
    ("eval_scales: 1.0,0\n", "eval_scales"),
    ("eval_scales: 1,1.0\n", "eval_scales"),
    ("eval_scales: [0.75, 1.0]\n", "eval_scales"),
])
def test_bad_values_name_file_and_key(tmp_path, text, key):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"c\.yaml.*'{key}'"):
        load_config(path)


def test_not_a_mapping_and_missing_file(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a flat mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="nope.yaml: cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_win_and_types_are_coerced(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-5  # PyYAML reads this as a string\nnum_steps: 10\n")
    cfg = load_config(path, {"num_steps": 3, "batch_size": None, "flip": "false"})
    assert cfg.learning_rate == pytest.approx(1e-5)
    assert (cfg.num_steps, cfg.batch_size, cfg.flip) == (3, 4, False)
    with pytest.raises(ConfigError, match="command line.*unknown key 'bogus'"):
        load_config(path, {"bogus": 1})


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(REPO / "configs" / "paper.yaml", {"num_steps": 7})
    config_lib.save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(tmp_path / "run" / "config.yaml") == cfg
    assert cfg.replace(seed=3).seed == 3
    with pytest.raises(ConfigError):
        cfg.replace(batch_size=0)


def test_one_flag_per_key_and_flags_override_the_file(tmp_path):
    fv = flags.FlagValues()
    config_lib.define_flags(fv)
    config_lib.define_flags(fv)  # idempotent
    for name in (*CONFIG_FIELDS, "config", "tfrecord_dir", "model_dir", "fold"):
        assert name in fv
    path = tmp_path / "c.yaml"
    path.write_text("num_steps: 10\nlearning_rate: 0.5\n")
    fv(["prog", f"--config={path}", "--num_steps=3", "--nosync_batchnorm",
        "--init_checkpoint=none", "--fold=5"])
    cfg = config_lib.config_from_flags(fv)
    assert (cfg.num_steps, cfg.learning_rate, cfg.sync_batchnorm) == (3, 0.5, False)
    assert cfg.init_checkpoint_path is None
    assert fv.fold == 5


def test_fold_dir_layout():
    from sercseg_tf import layout

    assert layout.fold_dir("runs", 5) == pathlib.Path("runs/fold_05")
    assert layout.checkpoint_dir("runs", 5) == pathlib.Path("runs/fold_05/checkpoints")
    assert layout.config_path("runs", 11) == pathlib.Path("runs/fold_11/config.yaml")


def test_eval_scales_are_read_from_yaml_and_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("eval_scales: 0.875,1.0,1.125\n")
    assert load_config(path).eval_scale_factors == (0.875, 1.0, 1.125)
    assert load_config(path, {"eval_scales": "1"}).eval_scale_factors == (1.0,)
    path.write_text("eval_scales: 1.0\n")  # YAML reads a number: one scale
    assert load_config(path).eval_scale_factors == (1.0,)
