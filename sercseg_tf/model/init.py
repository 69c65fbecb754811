"""ImageNet initialisation of the dilated ResNet-50 from Keras Applications' weights file.

The paper started from deeplab2's ResNet-50 ImageNet checkpoint. Offline machines
cannot download it, so the loader reads a local copy of Keras Applications'
``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`` and copies it layer by layer,
by name, into the backbone (`sercseg_tf.model.resnet` uses the Keras Applications layer
names; dilation changes no kernel shape). Images must then be preprocessed in the
"caffe" convention of those weights (`sercseg_tf.model.preprocessing`).

Two file layouts are read:

* the published legacy Keras 2 HDF5 layout: root attribute ``layer_names``, one group per
  layer with attribute ``weight_names`` (e.g. ``conv1_conv/kernel:0``) and datasets at
  ``<layer>/<weight_name>``; read directly with h5py, by name;
* the Keras 3 ``*.weights.h5`` layout written by
  ``keras.applications.ResNet50(include_top=False).save_weights(...)`` (groups
  ``layers/<auto name>/vars/<i>``, no layer names): loaded into a Keras Applications
  ResNet50 reference with ``load_weights``, then copied by name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import h5py
import keras
import numpy as np
from absl import logging

from sercseg_tf.config import RANDOM_INIT

IMAGENET_WEIGHTS_FILENAME = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
    + IMAGENET_WEIGHTS_FILENAME
)
KERAS_CACHE_PATH = "~/.keras/models/" + IMAGENET_WEIGHTS_FILENAME
# Layer names of Keras Applications' ResNet-50 that carry weights.
BACKBONE_LAYER_PATTERN = re.compile(r"^(conv1_(conv|bn)|conv[2-5]_block\d+_[0-3]_(conv|bn))$")
# Classification-top layers of the with-top file; not part of a segmentation backbone.
_TOP_LAYERS = ("predictions", "fc1000", "probs")


def _missing_file_message(path: Path) -> str:
    return (
        f"{path}: ImageNet weights file not found. Expected Keras Applications' ResNet-50 "
        f"no-top weights {IMAGENET_WEIGHTS_FILENAME} (from {IMAGENET_WEIGHTS_URL}; Keras "
        f"caches it at {KERAS_CACHE_PATH} after "
        "keras.applications.ResNet50(weights='imagenet', include_top=False) runs once on a "
        "machine with internet). Copy that file here, give a run's fold folder to "
        "fine-tune its model, or use 'none' for random init."
    )


def _resolve_path(path: str | os.PathLike) -> Path:
    resolved = Path(path).expanduser()
    if resolved.is_dir():
        resolved = resolved / IMAGENET_WEIGHTS_FILENAME
    if not resolved.is_file():
        raise FileNotFoundError(_missing_file_message(resolved))
    return resolved


def _decode(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _short_weight_name(weight_name: str) -> str:
    """``"conv1_bn/moving_mean:0"`` -> ``"moving_mean"``."""
    return weight_name.split("/")[-1].split(":")[0]


def read_legacy_h5(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Reads a legacy Keras (2.x / ``legacy_h5_format``) HDF5 weights file by layer name.

    Args:
      path: HDF5 file with root attribute ``layer_names`` (or a ``model_weights`` group
        holding it, as whole-model ``.h5`` files do).

    Returns:
      ``{layer_name: {short_weight_name: array}}`` for every layer with weights, e.g.
      ``{"conv1_bn": {"gamma": ..., "beta": ..., "moving_mean": ..., "moving_variance": ...}}``.

    Raises:
      ValueError: not that layout.
    """
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        if "layer_names" not in group.attrs:
            raise ValueError(f"{path}: no 'layer_names' attribute (not a legacy Keras h5 file)")
        weights = {}
        for layer_name in (_decode(n) for n in group.attrs["layer_names"]):
            layer_group = group[layer_name]
            names = [_decode(n) for n in layer_group.attrs.get("weight_names", [])]
            if names:
                weights[layer_name] = {
                    _short_weight_name(n): np.asarray(layer_group[n]) for n in names
                }
        return weights


def read_keras3_weights(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Reads a Keras 3 ``ResNet50(include_top=False).save_weights`` file by layer name.

    The Keras 3 layout keys layers by position, not name, so the file is loaded into a
    freshly built Keras Applications ResNet-50 (no download: ``weights=None``) whose
    layers then give the names.

    Args:
      path: ``*.weights.h5`` file of a no-top Keras Applications ResNet-50.

    Returns:
      ``{layer_name: {short_weight_name: array}}`` as `read_legacy_h5`.
    """
    reference = keras.applications.ResNet50(weights=None, include_top=False)
    try:
        reference.load_weights(str(path))
    except Exception as err:  # Keras raises several types for a mismatching file.
        raise ValueError(
            f"{path}: not the weights of keras.applications.ResNet50(include_top=False): {err}"
        ) from err
    return {
        layer.name: {v.name: v.numpy() for v in layer.weights}
        for layer in reference.layers
        if layer.weights
    }


def _iter_layers(model: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """Yields the leaf layers of ``model``, descending into nested models."""
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):
            yield from _iter_layers(layer)
        else:
            yield layer


def _layers_by_name(model: keras.Model) -> dict[str, keras.layers.Layer]:
    layers: dict[str, keras.layers.Layer] = {}
    for layer in _iter_layers(model):
        if layer.name in layers:
            raise ValueError(f"layer name {layer.name!r} occurs twice in {model.name!r}")
        layers[layer.name] = layer
    return layers


def assign_weights_by_name(
    model: keras.Model, weights: Mapping[str, Mapping[str, np.ndarray]], source: str
) -> int:
    """Copies ``{layer: {weight: array}}`` into the same-named layers of ``model``.

    Every weighted layer of ``source`` except a classification top must exist in the
    model with the same variables and shapes, and every ResNet-50 backbone layer of the
    model must receive weights: partial initialisation is an error, never silent.

    Args:
      model: built model (DeepLab or backbone), nested models allowed.
      weights: arrays per layer name and short variable name (kernel, bias, gamma, beta,
        moving_mean, moving_variance).
      source: file name for error messages.

    Returns:
      Number of layers assigned.
    """
    layers = _layers_by_name(model)
    plan = []
    for layer_name, arrays in weights.items():
        if layer_name in _TOP_LAYERS:
            continue
        if layer_name not in layers:
            raise ValueError(f"{source}: layer {layer_name!r} has no counterpart in the model")
        variables = {v.name: v for v in layers[layer_name].weights}
        if set(variables) != set(arrays):
            raise ValueError(
                f"{source}: layer {layer_name!r} holds {sorted(arrays)}, "
                f"the model's layer has {sorted(variables)}"
            )
        for name, array in arrays.items():
            if tuple(variables[name].shape) != tuple(array.shape):
                raise ValueError(
                    f"{source}: {layer_name}/{name} has shape {tuple(array.shape)}, "
                    f"the model expects {tuple(variables[name].shape)}"
                )
            plan.append((variables[name], array))
    loaded = {name for name in weights if name not in _TOP_LAYERS}
    missing = sorted(n for n in layers if BACKBONE_LAYER_PATTERN.match(n) and n not in loaded)
    if missing:
        raise ValueError(
            f"{source}: no weights for {len(missing)} backbone layers, e.g. {missing[:3]}"
        )
    # Assign only once everything checked out: a bad file leaves the model untouched.
    for variable, array in plan:
        variable.assign(array)
    return len(loaded)


def load_imagenet_weights(
    model_or_backbone: keras.Model, path: str | os.PathLike | None
) -> int:
    """Initialises the ResNet-50 layers of a model from Keras Applications' ImageNet file.

    Args:
      model_or_backbone: the DeepLab model (`sercseg_tf.model.deeplab.build_deeplab`) or
        the backbone (`sercseg_tf.model.resnet.build_resnet50_backbone`).
      path: the ``.h5`` file (or a directory holding `IMAGENET_WEIGHTS_FILENAME`);
        ``None``, ``""`` or ``"none"`` keep the random initialisation.

    Returns:
      Number of layers loaded (106 for ResNet-50: 53 convolutions, 53 BatchNorms), 0 for
      random init.

    Raises:
      FileNotFoundError: the file does not exist (the message names the Keras
        Applications file and where it comes from).
      ValueError: the file is not a ResNet-50 weights file or does not fit the model.
    """
    if path is None or str(path).strip().lower() in RANDOM_INIT:
        logging.info("Backbone: random initialisation (no ImageNet weights)")
        return 0
    resolved = _resolve_path(path)
    try:
        with h5py.File(resolved, "r") as f:
            legacy = "layer_names" in f.attrs or "model_weights" in f
    except OSError as err:
        raise ValueError(f"{resolved}: not an HDF5 weights file ({err})") from err
    weights = read_legacy_h5(resolved) if legacy else read_keras3_weights(resolved)
    count = assign_weights_by_name(model_or_backbone, weights, str(resolved))
    logging.info("Backbone: %d layers initialised from %s", count, resolved)
    return count
