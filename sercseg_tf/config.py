"""Experiment configuration: flat YAML files, one absl flag per key.

A config file (``configs/paper.yaml``, ``configs/demo.yaml``) is a flat YAML mapping
``key: value`` with comments. Every key is a field of `ExperimentConfig`; an unknown key
is an error naming the file and the key. Every key is also an absl flag of the same name
on ``train``, ``evaluate`` and ``export`` (defined once, in `define_flags`); a flag given
on the command line overrides the file.

A run remembers its config: ``train`` writes ``MODEL_DIR/fold_NN/config.yaml``, and every
command working on that fold (`run_config`) starts from it when ``--config`` is not
given. The keys in `ARCHITECTURE_KEYS` define what the checkpoint's weights compute; a
``--config`` or flag that contradicts one of them is a `ConfigError` naming both values,
never a silent rebuild of another model.

No TensorFlow import here, so the module loads in milliseconds.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from typing import Any

import yaml

# Repository root (the package is installed editable) and the default config file.
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "paper.yaml"

# Values of `init_checkpoint` that mean "random initialisation" (compared lower-cased).
RANDOM_INIT = ("", "none", "null")
# Keys that define the trained model: the network (output stride, ASPP dropout, decoder
# convolutions) and the frame scale it was trained at (applied again at inference).
# Everything else (steps, learning rate, logging, evaluation) may change between runs.
ARCHITECTURE_KEYS = ("output_stride", "aspp_dropout", "decoder_separable", "image_scale")
# tf.distribute strategies of --strategy (built by `sercseg_tf.training.distribute`).
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")
# Values of `precision` (resolved by `sercseg_tf.training.precision`) and `lr_schedule`.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
LR_SCHEDULES = ("constant", "poly")


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and key."""


def _field(default: Any, help_text: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """All settings of one training / evaluation / export run (defaults = the paper).

    The defaults reproduce §2.2 of the paper: batch 4, 25,000 steps, Adam, constant
    learning rate 1e-5, ResNet-50 DeepLabV3+ at output stride 16 from ImageNet weights,
    deeplab2-style augmentation (random scale 0.5-2.0 step 0.25, crop 481x641, flip).
    """

    # Model.
    output_stride: int = _field(16, "Backbone output stride: 8, 16 or 32.")
    aspp_dropout: float = _field(0.1, "Dropout rate after the ASPP projection.")
    decoder_separable: bool = _field(True, "Depthwise-separable 3x3 convs in the decoder.")
    sync_batchnorm: bool = _field(
        True, "Batch-norm statistics over the global batch across replicas (deeplab2's "
        "SyncBatchNormalization); no effect on one device."
    )
    bn_momentum: float = _field(
        0.99, "BatchNorm moving-average momentum, Keras convention moving = m*moving + "
        "(1-m)*batch (deeplab2: 0.99). Short runs need less, e.g. 0.9."
    )
    init_checkpoint: str = _field(
        "~/.keras/models/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "Keras Applications ResNet-50 ImageNet weights (.h5) for the backbone; or a "
        "checkpoint of an earlier run (a fold folder such as runs/demo/fold_05, or a "
        "checkpoint prefix) for every weight, to fine-tune that model; 'none' = random init.",
    )
    # Data and augmentation.
    image_scale: float = _field(1.0, "Frames are resized by this factor before anything else.")
    crop_height: int = _field(481, "Training crop height (OS*k+1).")
    crop_width: int = _field(641, "Training crop width (OS*k+1).")
    min_scale: float = _field(0.5, "Random-scale augmentation: smallest factor.")
    max_scale: float = _field(2.0, "Random-scale augmentation: largest factor.")
    scale_step: float = _field(0.25, "Random-scale augmentation: step between factors.")
    flip: bool = _field(True, "Random horizontal flip.")
    shuffle_buffer: int = _field(256, "Training shuffle buffer (frames).")
    cache_frames: bool = _field(
        False, "Keep decoded training frames (at image_scale) in memory after the first pass."
    )
    # Training-time randomisation beyond deeplab2 (sercseg_tf.data.augment; 0 = off): other
    # clinics' optics, cameras and codecs. The paper names none; paper.yaml keeps them off.
    aug_brightness: float = _field(0.0, "Brightness shift ~ U(-b, b), fraction of full scale.")
    aug_contrast: float = _field(0.0, "Contrast factor ~ U(1-c, 1+c); c < 1.")
    aug_gamma: float = _field(0.0, "Gamma g with log g ~ U(-log(1+g), log(1+g)).")
    aug_hue: float = _field(0.0, "Hue rotation ~ U(-h, h), fraction of the circle; h <= 0.5.")
    aug_saturation: float = _field(0.0, "Saturation factor ~ U(1-s, 1+s); s < 1.")
    aug_grayscale_prob: float = _field(0.0, "Probability of converting a frame to grey.")
    aug_blur_prob: float = _field(0.0, "Probability of a Gaussian blur.")
    aug_blur_max_sigma: float = _field(
        1.5, "Largest blur sigma in pixels of the training crop; sigma ~ U(0.2, max)."
    )
    aug_noise_max_std: float = _field(
        0.0, "Gaussian noise with std ~ U(0, this) grey levels (0-255 scale)."
    )
    aug_jpeg_prob: float = _field(0.0, "Probability of JPEG compression.")
    aug_jpeg_min_quality: int = _field(30, "Lowest JPEG quality; quality ~ U{this..100}.")
    aug_resample_prob: float = _field(
        0.0, "Probability of low-resolution footage: shrink by a factor ~ U(min, 1), "
        "enlarge back."
    )
    aug_resample_min_factor: float = _field(0.5, "Smallest resampling factor, in (0, 1].")
    aug_aspect_ratio: float = _field(
        0.0, "Random aspect-ratio change before the random scale: width/height factor "
        "log-uniform in [1/(1+r), 1+r], area kept (resized footage)."
    )
    rehearsal_tfrecord_dir: str = _field(
        "", "Fine-tuning: a second TFRecord folder (e.g. the synthetic data the model "
        "learnt from) whose every case joins the training stream, never held out, so a "
        "few frames of one's own do not make the model forget what they lack (e.g. "
        "sERC); '' = none."
    )
    rehearsal_share: float = _field(
        0.5, "Probability that a training example comes from rehearsal_tfrecord_dir."
    )
    # Optimisation.
    loss_top_k_percent: float = _field(
        1.0, "deeplab2's top_k_percent: the loss keeps each image's hardest fraction of "
        "pixels (online hard-pixel mining); 1.0 = plain cross-entropy (the paper)."
    )
    bn_recompute_batches: int = _field(
        0, "PreciseBN: after the last step, set every BatchNorm's moving mean/variance to "
        "the mean of its batch moments over this many training batches (weights frozen); "
        "0 = keep the moving averages (the paper, deeplab2)."
    )
    loss_needle_weight: float = _field(
        1.0, "Cross-entropy weight of needle pixels (every other class weighs 1; the "
        "loss is still divided by the pixel count); 1.0 = plain cross-entropy (the paper)."
    )
    loss_boundary_weight: float = _field(
        1.0, "Cross-entropy weight of the cell's border band: pixels within "
        "loss_boundary_radius of both the cell (oocyte or sERC) and another class "
        "(background or needle); 1.0 = every pixel weighs 1 (the paper)."
    )
    loss_boundary_radius: int = _field(
        6, "Depth of the border band on each side of the border, pixels of the training "
        "crop (used when loss_boundary_weight is not 1)."
    )
    loss_dice_weight: float = _field(
        0.0, "Weight of a soft Dice term (per image, mean over classes) added to the "
        "cross-entropy (the logged training loss includes it); 0 = cross-entropy only "
        "(the paper)."
    )
    batch_size: int = _field(4, "Global batch size (split over replicas).")
    num_steps: int = _field(25000, "Total training steps (a resumed run continues to this).")
    optimizer: str = _field("adam", "Optimizer: adam or sgd (momentum 0.9).")
    learning_rate: float = _field(1e-5, "Initial learning rate (constant for lr_schedule "
                                  "'constant').")
    lr_schedule: str = _field(
        "constant", "constant (the paper) or poly: deeplab2's polynomial decay "
        "lr = learning_rate * (1 - step / num_steps)^0.9, down to 0 at num_steps."
    )
    precision: str = _field(
        "float32", "float32 (the paper), mixed_bfloat16, mixed_float16 (GPU, loss scaling) "
        "or auto: mixed_bfloat16 on a CPU with avx512_bf16/amx_bf16 or a GPU of compute "
        "capability >= 8.0, else float32. Weights, BatchNorm statistics and loss stay float32."
    )
    seed: int = _field(0, "Seed of keras.utils.set_random_seed and the input pipeline.")
    # Inference (evaluation, the exported SavedModel and so predict).
    add_flipped_images: bool = _field(
        False, "Test-time flip (DeepLab's eval flag): average each frame's class "
        "probabilities with those of its left-right mirror image; twice the inference work."
    )
    eval_scales: str = _field(
        "1.0", "Test-time scales (DeepLab's eval flag): comma-separated factors of "
        "image_scale, e.g. 0.875,1.0,1.125; each frame is predicted at every scale (and "
        "mirrored, with add_flipped_images) and the class probabilities are averaged. "
        "n scales cost about n times the inference; 1.0 = one pass."
    )
    keep_largest_oocyte: bool = _field(
        False, "Keep only the frame's largest oocyte region, with its sERC; other oocyte "
        "and sERC regions become background or needle (nnU-Net's largest-component "
        "post-processing; `sercseg_tf.model.postprocess`). In evaluation and the SavedModel."
    )
    needle_hysteresis_weight: float = _field(
        1.0, "Grow the predicted needle into pixels joined to it where the needle, its "
        "probability multiplied by this factor, would win (hysteresis with a prior shift; "
        "`sercseg_tf.model.postprocess`). 1 = off. In evaluation and the SavedModel."
    )
    # Bookkeeping.
    log_every_steps: int = _field(50, "Log progress and write train summaries every N steps.")
    save_checkpoints_steps: int = _field(1000, "Save a checkpoint every N steps (and at the end).")
    keep_checkpoint_max: int = _field(2, "Checkpoints kept by the CheckpointManager.")
    eval_every_steps: int = _field(
        1000, "Evaluate on the held-out case every N steps (and at the end); 0 = only at the end."
    )
    eval_max_images: int = _field(0, "Frames used by the periodic evaluation; 0 = all.")
    num_summary_images: int = _field(3, "Held-out frames shown as overlays in TensorBoard.")

    @property
    def crop_size(self) -> tuple[int, int]:
        """(height, width) of the training crop."""
        return (self.crop_height, self.crop_width)

    @property
    def eval_scale_factors(self) -> tuple[float, ...]:
        """`eval_scales` as numbers (validated when the config is built)."""
        return parse_scales(self.eval_scales)

    @property
    def init_checkpoint_path(self) -> str | None:
        """The expanded weights path (ImageNet file or run checkpoint), or None (random)."""
        if self.init_checkpoint.strip().lower() in RANDOM_INIT:
            return None
        return os.path.expanduser(os.path.expandvars(self.init_checkpoint))

    def to_dict(self) -> dict[str, Any]:
        """Returns the flat ``{key: value}`` mapping (the YAML file's content)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> ExperimentConfig:
        """Returns a validated copy with some keys changed (same rules as overrides)."""
        return _from_mapping({**self.to_dict(), **changes}, source="<replace>")


CONFIG_FIELDS: dict[str, dataclasses.Field] = {
    f.name: f for f in dataclasses.fields(ExperimentConfig)
}


def parse_scales(text: str) -> tuple[float, ...]:
    """Parses ``"0.875,1.0,1.125"`` into positive, finite, distinct factors.

    Raises:
      ValueError: an empty list, a non-number, a factor <= 0 or repeated.
    """
    try:
        scales = tuple(float(part) for part in str(text).split(","))
    except ValueError:
        raise ValueError("expected comma-separated numbers, e.g. 0.875,1.0,1.125") from None
    if not all(math.isfinite(s) and s > 0 for s in scales):
        raise ValueError("every scale must be a positive number")
    if len(set(scales)) != len(scales):
        raise ValueError("a scale is repeated")
    return scales


def _coerce(value: Any, kind: type, key: str, source: str) -> Any:
    """Converts a YAML / flag value to the field's type, or raises ConfigError."""
    where = f"{source}: key '{key}'"
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # PyYAML reads "1e-5" (no dot) as a string.
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if value is None:
        return "none"
    if isinstance(value, (dict, list)):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return str(value)


def _validate(cfg: ExperimentConfig, source: str) -> None:
    """Range checks; raises ConfigError naming the source and key."""

    def bad(key: str, reason: str) -> ConfigError:
        return ConfigError(f"{source}: key '{key}': {reason} (got {getattr(cfg, key)!r})")

    if cfg.output_stride not in (8, 16, 32):
        raise bad("output_stride", "must be 8, 16 or 32")
    for key in ("batch_size", "crop_height", "crop_width", "log_every_steps",
                "save_checkpoints_steps", "keep_checkpoint_max"):
        if getattr(cfg, key) < 1:
            raise bad(key, "must be >= 1")
    for key in ("num_steps", "eval_every_steps", "eval_max_images", "num_summary_images",
                "shuffle_buffer", "seed", "bn_recompute_batches"):
        if getattr(cfg, key) < 0:
            raise bad(key, "must be >= 0")
    for key in ("image_scale", "min_scale", "max_scale", "learning_rate"):
        value = getattr(cfg, key)
        if not (math.isfinite(value) and value > 0):
            raise bad(key, "must be a positive number")
    if cfg.scale_step < 0:
        raise bad("scale_step", "must be >= 0")
    if cfg.min_scale > cfg.max_scale:
        raise bad("min_scale", f"must be <= max_scale ({cfg.max_scale})")
    if not 0.0 <= cfg.bn_momentum < 1.0:
        raise bad("bn_momentum", "must be in [0, 1)")
    if not 0.0 <= cfg.aspp_dropout < 1.0:
        raise bad("aspp_dropout", "must be in [0, 1)")
    if not 0.0 < cfg.loss_top_k_percent <= 1.0:
        raise bad("loss_top_k_percent", "must be in (0, 1]")
    if not (math.isfinite(cfg.loss_needle_weight) and cfg.loss_needle_weight > 0):
        raise bad("loss_needle_weight", "must be a positive number")
    if not (math.isfinite(cfg.loss_boundary_weight) and cfg.loss_boundary_weight > 0):
        raise bad("loss_boundary_weight", "must be a positive number (1 = off)")
    if not 0.0 < cfg.rehearsal_share < 1.0:
        raise bad("rehearsal_share", "must be in (0, 1)")
    if cfg.loss_boundary_radius < 1:
        raise bad("loss_boundary_radius", "must be an integer >= 1")
    if not (math.isfinite(cfg.needle_hysteresis_weight) and cfg.needle_hysteresis_weight >= 1):
        raise bad("needle_hysteresis_weight", "must be a number >= 1 (1 = off)")
    if not (math.isfinite(cfg.loss_dice_weight) and cfg.loss_dice_weight >= 0):
        raise bad("loss_dice_weight", "must be a number >= 0")
    if cfg.optimizer not in ("adam", "sgd"):
        raise bad("optimizer", "must be 'adam' or 'sgd'")
    for key in ("aug_brightness", "aug_gamma", "aug_noise_max_std", "aug_aspect_ratio"):
        if not (math.isfinite(getattr(cfg, key)) and getattr(cfg, key) >= 0):
            raise bad(key, "must be a number >= 0")
    for key in ("aug_contrast", "aug_saturation"):
        if not 0.0 <= getattr(cfg, key) < 1.0:
            raise bad(key, "must be in [0, 1)")
    if not 0.0 <= cfg.aug_hue <= 0.5:
        raise bad("aug_hue", "must be in [0, 0.5]")
    if not 0.0 < cfg.aug_resample_min_factor <= 1.0:
        raise bad("aug_resample_min_factor", "must be in (0, 1]")
    for key in ("aug_grayscale_prob", "aug_blur_prob", "aug_jpeg_prob", "aug_resample_prob"):
        if not 0.0 <= getattr(cfg, key) <= 1.0:
            raise bad(key, "must be a probability in [0, 1]")
    if not (math.isfinite(cfg.aug_blur_max_sigma) and cfg.aug_blur_max_sigma > 0.2):
        raise bad("aug_blur_max_sigma", "must be a number > 0.2")
    if not 0 <= cfg.aug_jpeg_min_quality <= 100:
        raise bad("aug_jpeg_min_quality", "must be in [0, 100]")
    if cfg.precision not in PRECISIONS:
        raise bad("precision", f"must be one of {', '.join(PRECISIONS)}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise bad("lr_schedule", f"must be one of {', '.join(LR_SCHEDULES)}")
    try:
        parse_scales(cfg.eval_scales)
    except ValueError as e:
        raise bad("eval_scales", str(e)) from None


def _from_mapping(values: dict[str, Any], source: str) -> ExperimentConfig:
    kwargs = {}
    for key, value in values.items():
        if key not in CONFIG_FIELDS:
            raise ConfigError(
                f"{source}: unknown key '{key}' (known keys: {', '.join(CONFIG_FIELDS)})"
            )
        kind = {"int": int, "float": float, "bool": bool, "str": str}[
            str(CONFIG_FIELDS[key].type)
        ]
        kwargs[key] = _coerce(value, kind, key, source)
    cfg = ExperimentConfig(**kwargs)
    _validate(cfg, source)
    return cfg


def load_config(path: str | os.PathLike | None, overrides: dict[str, Any] | None = None
                ) -> ExperimentConfig:
    """Reads a flat YAML config file and applies overrides.

    Args:
      path: the YAML file; None means the built-in defaults (the paper's settings).
      overrides: ``{key: value}`` applied after the file (e.g. command-line flags);
        None values are ignored, so unset flags do not override.

    Returns:
      The validated `ExperimentConfig`.

    Raises:
      ConfigError: missing/unreadable file, not a flat mapping, unknown key, wrong type
        or out-of-range value; the message names the file (or "command line") and key.
    """
    values: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            text = pathlib.Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"{source}: cannot read config file ({e.strerror})") from e
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: invalid YAML ({e})") from e
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: expected a flat mapping of key: value")
        for key, value in loaded.items():
            if isinstance(value, (dict, list)):
                raise ConfigError(f"{source}: key '{key}': nested values are not allowed")
        values.update(loaded)
    cfg = _from_mapping(values, source)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if overrides:
        cfg = _from_mapping({**cfg.to_dict(), **overrides}, f"{source} + command line")
    return cfg


def save_config(cfg: ExperimentConfig, path: str | os.PathLike) -> None:
    """Writes the config as flat YAML, atomically (`atomic_io`), e.g. beside a run."""
    from sercseg_tf import atomic_io

    atomic_io.atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


# ---------------------------------------------------------------------------------------
# Command-line flags shared by train / evaluate / export.

def define_flags(flag_values: Any = None) -> None:
    """Defines --config, --tfrecord_dir, --model_dir, --fold and one flag per config key.

    Config-key flags default to None, meaning "take the value from the YAML file".
    Safe to call more than once (already defined flags are kept).

    Args:
      flag_values: an ``absl.flags.FlagValues``; default the global ``flags.FLAGS``.
    """
    from absl import flags

    fv = flag_values if flag_values is not None else flags.FLAGS

    def define(fn, name, default, help_text):
        if name not in fv:
            fn(name, default, help_text, flag_values=fv)

    define(flags.DEFINE_string, "config", None,
           "Flat YAML config file; default: the fold's saved config.yaml if the run "
           "exists, else configs/paper.yaml.")
    define(flags.DEFINE_string, "tfrecord_dir", "data/tfrecords",
           "Folder with per-case TFRecord shards and manifest.json.")
    define(flags.DEFINE_string, "model_dir", "runs",
           "Runs folder; a fold writes MODEL_DIR/fold_NN.")
    define(flags.DEFINE_integer, "fold", None,
           "Held-out case id of the leave-one-case-out fold; 0 = every case (--all_cases).")
    makers = {"int": flags.DEFINE_integer, "float": flags.DEFINE_float,
              "bool": flags.DEFINE_boolean, "str": flags.DEFINE_string}
    for name, f in CONFIG_FIELDS.items():
        define(makers[str(f.type)], name, None,
               f"{f.metadata['help']} (config key; default from --config)")


def define_strategy_flag(flag_values: Any = None) -> None:
    """Defines ``--strategy`` (one of `STRATEGIES`) for the commands that train.

    Safe to call more than once. `sercseg_tf.train` and ``tools/run_loocv.py`` share
    this one definition.
    """
    from absl import flags

    fv = flag_values if flag_values is not None else flags.FLAGS
    if "strategy" not in fv:
        flags.DEFINE_enum("strategy", "auto", list(STRATEGIES),
                          "tf.distribute strategy: auto (mirrored if >1 GPU, else one_device), "
                          "one_device, mirrored, multi_worker (TF_CONFIG), tpu.",
                          flag_values=fv)


def define_all_cases_flag(flag_values: Any = None) -> None:
    """Defines ``--all_cases`` (the same as ``--fold=0``) for train and export."""
    from absl import flags

    fv = flag_values if flag_values is not None else flags.FLAGS
    if "all_cases" not in fv:
        flags.DEFINE_boolean("all_cases", False, "Every case trains, none is held out "
                             "(= --fold=0): the model to use on new patients.", flag_values=fv)


def fold_from_flags(prog: str, flag_values: Any = None) -> int | None:
    """The fold of ``--fold`` / ``--all_cases`` (0); None after a one-line error on stderr.

    Args:
      prog: the command's name, the error line's prefix.
      flag_values: an ``absl.flags.FlagValues``; default the global ``flags.FLAGS``.
    """
    import sys

    from absl import flags

    fv = flag_values if flag_values is not None else flags.FLAGS
    all_cases = "all_cases" in fv and fv.all_cases
    if all_cases and fv.fold not in (None, 0):
        print(f"{prog}: give --fold or --all_cases, not both", file=sys.stderr)
        return None
    if all_cases:
        return 0
    if fv.fold is None:
        hint = "; --all_cases or --fold=0: every case" if "all_cases" in fv else ""
        print(f"{prog}: --fold is required (the held-out case id{hint})", file=sys.stderr)
        return None
    return int(fv.fold)


def config_from_flags(flag_values: Any = None) -> ExperimentConfig:
    """Loads --config and applies every config-key flag given on the command line."""
    from absl import flags

    fv = flag_values if flag_values is not None else flags.FLAGS
    return load_config(fv.config or DEFAULT_CONFIG, _flag_overrides(fv))


def _flag_overrides(fv: Any) -> dict[str, Any]:
    return {name: fv[name].value for name in CONFIG_FIELDS if fv[name].value is not None}


def check_architecture(saved: ExperimentConfig, cfg: ExperimentConfig, saved_source: str,
                       source: str) -> None:
    """Raises ConfigError if ``cfg`` contradicts an `ARCHITECTURE_KEYS` value of ``saved``.

    The message names the key, both values and both sources, e.g. ``runs/fold_05/
    config.yaml: the run was trained with output_stride=32, but configs/paper.yaml asks
    for 16; ...``.
    """
    for key in ARCHITECTURE_KEYS:
        trained, asked = getattr(saved, key), getattr(cfg, key)
        if trained != asked:
            raise ConfigError(
                f"{saved_source}: the run was trained with {key}={trained!r}, but {source} "
                f"asks for {asked!r}; leave out --config and the flag (the run's config is "
                "used) or use another --model_dir")


def check_run_config(cfg: ExperimentConfig, saved_path: str | os.PathLike,
                     source: str = "the given config") -> None:
    """`check_architecture` of ``cfg`` against a run's saved config, if there is one."""
    saved_path = pathlib.Path(saved_path)
    if saved_path.is_file():
        check_architecture(load_config(saved_path), cfg, str(saved_path), source)


def run_config(saved_path: str | os.PathLike, config_file: str | os.PathLike | None,
               overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """The config of a command working on an existing (or new) run.

    Args:
      saved_path: the run's ``config.yaml`` (`sercseg_tf.layout.config_path`).
      config_file: ``--config``; None when not given.
      overrides: command-line values of config keys.

    Returns:
      ``config_file`` (or, when None, the saved config; or `DEFAULT_CONFIG` for a new
      run) with the overrides applied.

    Raises:
      ConfigError: invalid file or value, or an architecture key that contradicts the
        saved config (`check_architecture`).
    """
    saved_path = pathlib.Path(saved_path)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not saved_path.is_file():
        return load_config(config_file or DEFAULT_CONFIG, overrides)
    if config_file is None:
        cfg, source = load_config(saved_path, overrides), "the command line"
    else:
        cfg = load_config(config_file, overrides)
        source = f"{config_file}{' + command line' if overrides else ''}"
    check_architecture(load_config(saved_path), cfg, str(saved_path), source)
    return cfg


def run_config_from_flags(saved_path: str | os.PathLike, flag_values: Any = None
                          ) -> ExperimentConfig:
    """`run_config` from ``--config`` (None when not given) and the config-key flags."""
    from absl import flags

    fv = flag_values if flag_values is not None else flags.FLAGS
    return run_config(saved_path, fv.config, _flag_overrides(fv))
