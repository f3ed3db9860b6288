"""Whole Keras models into ``fastlstm.Model``: from a live ``keras.Model``,
a ``.keras`` file or a legacy HDF5 full-model file, and Keras weight files
into a ``fastlstm.Model``.

Where Keras puts the weights:

- ``.keras`` / ``.weights.h5``: ``layers/<key>/vars/0, 1, ...`` where the
  key is the snake-cased class name of each of ``model.layers`` (operations
  excluded), numbered from the second layer of a class on; LSTM's under
  ``<key>/cell/vars``, Bidirectional's under ``<key>/forward_layer/cell/vars``
  and ``<key>/backward_layer/cell/vars``, TimeDistributed's under
  ``<key>/layer/vars``.
- legacy ``.h5`` (``model.save("x.h5")``): ``model_weights/<layer name>``
  with a ``weight_names`` attribute listing its datasets in order (a plain
  ``save_weights("x.h5")`` has the layer groups at the root).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import keras_files, keras_io, keras_layers
from .keras_model import Model


def keras_keys(layers: Sequence[keras_layers.Layer]) -> list[str]:
    """Keras's ``.weights.h5`` key of each of ``layers``."""
    return keras_io.layer_keys([layer.class_name for layer in layers])


def _load(layer: keras_layers.Layer, datasets: list[Any], where: str) -> None:
    """Check ``datasets`` against the layer's weight shapes, then read them."""
    shapes = layer.weight_shapes(layer.input_shapes)
    if len(datasets) != len(shapes):
        raise ValueError(f"{where}: {layer.where} has {len(shapes)} weights, the file "
                         f"holds {len(datasets)}")
    layer.set_weights([keras_files.read_dataset(d, s, f"{where}: {layer.where}")
                       for d, s in zip(datasets, shapes, strict=True)])


def _weighted(model: Model) -> list[keras_layers.Layer]:
    return [layer for layer in model.layers if layer.weight_shapes(layer.input_shapes)]


def _groups_by_name(layers_group: Any, where: str) -> dict[str, Any]:
    """A Keras 3 weights file's layer groups by the layer name Keras records
    on each ``vars`` group (by key where it records none)."""
    groups = {}
    for key in layers_group:
        group = keras_files.child(layers_group, key, where)
        name = None
        if "vars" in group:
            name = keras_files.read_attribute(keras_files.child(group, "vars", where),
                                              "name", where, limit=4096)
        groups[key if name is None else keras_files.text(name)] = group
    return groups


def load_keras3_weights(model: Model, h5: Any, where: str, by_name: bool = False,
                        skip_mismatch: bool = False) -> None:
    """Weights of a Keras 3 ``.weights.h5`` (or the one in a ``.keras``) into ``model``.

    By key (Keras's rule: the file of the same architecture), or with
    ``by_name`` by the layer name Keras records on each ``vars`` group."""
    layers_group = keras_io.layers_group(h5, where)
    if by_name:
        groups = _groups_by_name(layers_group, where)
    else:
        keys = keras_keys(model.layers)
        keras_io.refuse_other_weights(layers_group, set(keys), where)
        groups = {layer.name: keras_files.child(layers_group, key, where)
                  for layer, key in zip(model.layers, keys, strict=True)
                  if key in layers_group}
    for layer in _weighted(model):
        group = groups.get(layer.name)
        if group is None:
            if skip_mismatch:
                continue
            raise ValueError(f"{where}: the file has no weights for {layer.where}")
        datasets = keras_io.variable_datasets(group, layer.class_name, where)
        try:
            _load(layer, datasets, where)
        except ValueError:
            if not skip_mismatch:
                raise


def load_legacy_weights(model: Model, h5: Any, where: str, by_name: bool = False,
                        skip_mismatch: bool = False) -> None:
    """Weights of a legacy HDF5 file (Keras 2 / tf.keras layout), by layer name."""
    root = keras_files.child(h5, "model_weights", where) if "model_weights" in h5 else h5
    if not by_name:
        keras_io.refuse_other_weights(root, {layer.name for layer in model.layers}, where)
    for layer in _weighted(model):
        if layer.name not in root:
            if skip_mismatch:
                continue
            raise ValueError(f"{where}: the file has no weights for {layer.where}")
        group = keras_files.child(root, layer.name, where)
        names = keras_files.read_attribute(group, "weight_names", where, limit=2**20)
        names = [] if names is None else [keras_files.text(n) for n in np.ravel(names)]
        datasets = [keras_files.path(group, name, where) for name in names]
        try:
            _load(layer, datasets, where)
        except ValueError:
            if not skip_mismatch:
                raise


def model_from_file(path: str) -> Model:
    """A ``.keras`` file or a legacy ``.h5`` full-model file as a ``Model``."""
    if path.endswith(".keras"):
        config, weights = keras_files.read_keras_archive(path)
        model = Model(config, where=f"{path}: config.json")
        with keras_files.damaged_as_value_error(path), keras_files.open_h5(weights) as h5:
            load_keras3_weights(model, h5, f"{path}: model.weights.h5")
        return model
    with keras_files.damaged_as_value_error(path), keras_files.open_h5(path) as h5:
        text = keras_files.read_attribute(h5, "model_config", path)
        if text is None:
            raise ValueError(
                f"from_keras: {path} holds no model config (a weights file such as "
                f".weights.h5 or a save_weights .h5); build the model and call "
                f"fastlstm.load_keras_weights(model, {path!r})")
        config = keras_files.parse_config(keras_files.text(text), f"{path}: model_config")
        model = Model(config, where=f"{path}: model_config")
        load_legacy_weights(model, h5, path)
    return model


def model_from_live(source: Any) -> Model:
    """A live Keras Sequential or functional model as a ``Model``."""
    model = Model({"class_name": type(source).__name__, "config": source.get_config()},
                  where=f"Keras model {source.name!r}")
    by_name = {layer.name: layer for layer in source.layers}
    for layer in _weighted(model):
        keras_layer = by_name.get(layer.name)
        if keras_layer is None:
            raise ValueError(f"Keras model {source.name!r} has no layer {layer.name!r}")
        layer.set_weights([np.asarray(w) for w in keras_layer.get_weights()])
    return model


def load_into_model(model: Model, path: str | os.PathLike[str], by_name: bool,
                    skip_mismatch: bool) -> None:
    """``load_keras_weights`` for a ``fastlstm.Model``: .keras, .weights.h5 or legacy .h5."""
    path = os.fspath(path)
    if path.endswith(".keras"):
        _, weights = keras_files.read_keras_archive(path)
        with keras_files.damaged_as_value_error(path), keras_files.open_h5(weights) as h5:
            load_keras3_weights(model, h5, f"{path}: model.weights.h5", by_name,
                                skip_mismatch)
        return
    with keras_files.damaged_as_value_error(path), keras_files.open_h5(path) as h5:
        if "layers" in h5:
            load_keras3_weights(model, h5, path, by_name, skip_mismatch)
        else:
            load_legacy_weights(model, h5, path, by_name, skip_mismatch)
