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

from . import keras_files, keras_layers
from .keras_model import Model
from .serialization import snake_case

# Where each class keeps its variables under its key in a .keras file.
_VAR_GROUPS = {"LSTM": ("cell/vars",),
               "Bidirectional": ("forward_layer/cell/vars", "backward_layer/cell/vars"),
               "TimeDistributed": ("layer/vars",)}


def keras_keys(layers: Sequence[keras_layers.Layer]) -> list[str]:
    """Keras's ``.weights.h5`` key of each layer: its snake-cased class
    name, numbered from the second layer of a class on."""
    keys: list[str] = []
    used: dict[str, int] = {}
    for layer in layers:
        key = snake_case(getattr(layer, "class_name", type(layer).__name__))
        used[key] = used.get(key, -1) + 1
        keys.append(key if used[key] == 0 else f"{key}_{used[key]}")
    return keys


def _vars(group: Any, class_name: str, where: str) -> list[Any]:
    """The datasets of a layer's group in a .keras weights file, in order."""
    datasets = []
    for sub in _VAR_GROUPS.get(class_name, ("vars",)):
        node = keras_files.path(group, sub, where) if (
            sub.split("/")[0] in group) else None
        if node is None:
            continue
        keys = list(node)
        if not all(k.isdigit() for k in keys):
            raise ValueError(f"{where}: {node.name} holds {sorted(keys)[:10]}; Keras names "
                             f"variables 0, 1, 2, ...")
        if sorted(int(k) for k in keys) != list(range(len(keys))):
            raise ValueError(f"{where}: {node.name} holds variables {sorted(keys)}; "
                             f"expected 0 to {len(keys) - 1}")
        datasets += [keras_files.child(node, str(i), where) for i in range(len(keys))]
    return datasets


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


def _refuse_extra(groups: Any, used: set[str], where: str) -> None:
    """A file holding weights of layers the model lacks is refused (unless by_name)."""
    dataset = keras_files.h5py_module().Dataset
    for key in sorted(set(groups) - used):
        if key == "top_level_model_weights":
            continue
        item = groups.get(key, getlink=True)
        holds = isinstance(item, keras_files.h5py_module().HardLink) and groups[key].visititems(
            lambda _, value: True if isinstance(value, dataset) else None)
        if holds:
            raise ValueError(f"{where}: the file holds weights of layer {key!r}, which the "
                             f"model does not have (pass by_name=True to load only the "
                             f"layers the model has)")


def load_keras3_weights(model: Model, h5: Any, where: str, by_name: bool = False,
                        skip_mismatch: bool = False) -> None:
    """Weights of a Keras 3 ``.weights.h5`` (or the one in a ``.keras``) into ``model``.

    By key (Keras's rule: the file of the same architecture), or with
    ``by_name`` by the layer name Keras records on each ``vars`` group."""
    layers_group = keras_files.child(h5, "layers", where) if "layers" in h5 else None
    if layers_group is None:
        raise ValueError(f"{where}: not a Keras 3 weights file: it has no 'layers' group")
    if by_name:
        groups = {}
        for key in layers_group:
            group = keras_files.child(layers_group, key, where)
            holder = group.get("vars", getlink=True)
            name = None
            if holder is not None and "vars" in group:
                name = keras_files.read_attribute(keras_files.child(group, "vars", where),
                                                  "name", where, limit=4096)
            groups[keras_files.text(name) if name is not None else key] = group
    else:
        groups = {key: keras_files.child(layers_group, key, where) if key in layers_group
                  else None for key in keras_keys(model.layers)}
        groups = {layer.name: groups[key] for layer, key in
                  zip(model.layers, keras_keys(model.layers), strict=True)}
    if not by_name:
        _refuse_extra(layers_group, set(keras_keys(model.layers)), where)
    for layer in _weighted(model):
        group = groups.get(layer.name)
        if group is None:
            if skip_mismatch:
                continue
            raise ValueError(f"{where}: the file has no weights for {layer.where}")
        datasets = _vars(group, getattr(layer, "class_name", ""), where)
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
        _refuse_extra(root, {layer.name for layer in model.layers}, where)
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
