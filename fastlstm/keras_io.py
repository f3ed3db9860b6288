"""Keras 3's formats as plain data: layer configs, the layer graph of a
model's config, and the ``.keras`` / ``.weights.h5`` files.

The one place that knows Keras's conventions.  It builds no fastlstm
object: the layers' ``from_config`` take their constructor arguments from
``constructor_kwargs``, ``fastlstm.keras_model`` parses a model config
into its graph, and ``fastlstm.models`` / ``fastlstm.keras_import`` build
layers, stacks and models from what the readers here return.

Files are read with h5py alone (``pip install fastlstm[h5]``), without
Keras, through ``fastlstm.keras_files`` (which treats them as untrusted).
Keras writes the weights of ``model.layers`` under ``layers/<key>``, where
the key is the layer's snake-cased class name, numbered from the second
layer of a class on (``lstm``, ``lstm_1``, ...), and a layer's variables
under ``<key>/vars/0, 1, ...``, ``<key>/cell/vars/...`` (LSTM),
``<key>/forward_layer/cell/vars/...`` and ``<key>/backward_layer/...``
(Bidirectional) or ``<key>/layer/vars/...`` (TimeDistributed).  A
``.keras`` file is a zip holding ``config.json`` and ``model.weights.h5``.
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from typing import Any

from . import keras_files

# Keras configs are JSON: nested dicts and lists.
Config = dict[str, Any]

# Keras LSTM config keys with no effect on inference outputs: dropped when a
# constructor does not take them.
_INFERENCE_NEUTRAL = {
    "name", "trainable", "unroll", "use_cudnn", "dropout", "recurrent_dropout",
    "kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
    "activity_regularizer", "kernel_constraint", "recurrent_constraint",
    "bias_constraint",
}
_INITIALIZER_KEYS = ("kernel_initializer", "recurrent_initializer", "bias_initializer")


# ------------------------------------------------------------------- names
def snake_case(name: str) -> str:
    """Keras's ``to_snake_case``: "GlorotUniform" → "glorot_uniform", "LSTM" → "lstm"."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def layer_keys(class_names: Sequence[str]) -> list[str]:
    """Keras's names of a model's layers from their class names: the
    snake-case class name, numbered from the second layer of a class on
    (``lstm``, ``lstm_1``, ...); also their keys in ``.weights.h5`` files."""
    keys: list[str] = []
    used: dict[str, int] = {}
    for class_name in class_names:
        key = snake_case(class_name)
        used[key] = used.get(key, -1) + 1
        keys.append(key if used[key] == 0 else f"{key}_{used[key]}")
    return keys


# ------------------------------------------------------------ layer configs
def _keras_dtype(value: Any) -> Any:
    # Keras 3 writes a DTypePolicy dict; its name is a dtype only when the
    # policy is not mixed precision.
    if isinstance(value, dict):
        return value.get("config", {}).get("name", value)
    return value


def constructor_kwargs(cls: type, config: object) -> dict[str, Any]:
    """Keyword arguments for ``cls`` from our config or a Keras config.

    Keras-only keys that do not change inference are dropped; Keras's
    initializer dicts become names ("GlorotUniform" → "glorot_uniform");
    anything else the constructor does not take is a ValueError.
    """
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    params = inspect.signature(cls).parameters
    kwargs = {}
    for key, value in config.items():
        if key == "zero_output_for_mask" and key not in params:
            if value:
                raise ValueError(
                    f"{cls.__name__} config: zero_output_for_mask=True is supported only "
                    f"inside Bidirectional (which sets it), got it on a single layer")
        elif key in params:
            if key == "dtype":
                value = _keras_dtype(value)
            elif key in _INITIALIZER_KEYS and isinstance(value, dict):
                value = snake_case(value["class_name"])
            kwargs[key] = value
        elif key not in _INFERENCE_NEUTRAL:
            raise ValueError(f"{cls.__name__} config has an unsupported key {key!r}")
    return kwargs


def without_initializers(value: Any) -> Any:
    """A config without initializer keys, at any depth: for layers whose
    weights come from the model (Keras allows initializers that fastlstm
    does not have)."""
    if isinstance(value, dict):
        return {k: without_initializers(v) for k, v in value.items()
                if k not in _INITIALIZER_KEYS}
    return value


def to_dict(obj: Any) -> Config:
    """``{"class_name": ..., "config": ...}`` of a layer or stack (Keras's
    form of a nested object, which fastlstm's files use too)."""
    return {"class_name": type(obj).__name__, "config": obj.get_config()}


def from_dict(value: object, classes: Mapping[str, Any]) -> Any:
    """The (unbuilt) object that ``to_dict`` describes, of one of ``classes``
    (class name → class with a ``from_config``)."""
    if not isinstance(value, dict):
        raise ValueError(f"expected the config of one of {sorted(classes)}, got "
                         f"{type(value).__name__}")
    name = value.get("class_name")
    if not isinstance(name, str) or name not in classes:
        raise ValueError(f"expected the config of one of {sorted(classes)}, got {name!r}")
    return classes[name].from_config(value["config"])


# ------------------------------------------------------------- live Keras
def keras_class(obj: object) -> str:
    """The class name of a Keras 3 object; TypeError for anything else."""
    module = type(obj).__module__
    if not module.startswith("keras"):
        raise TypeError(f"expected a Keras 3 layer or model, got {type(obj).__name__} "
                        f"from module {module}")
    return type(obj).__name__


# ------------------------------------------------------------------- files
# Where each class keeps its variables under its key in a .keras /
# .weights.h5 file (``layers/<key>/...``); every other class under ``vars``.
_VAR_GROUPS = {"LSTM": ("cell/vars",),
               "Bidirectional": ("forward_layer/cell/vars", "backward_layer/cell/vars"),
               "TimeDistributed": ("layer/vars",)}


def layers_group(h5: Any, where: str) -> Any:
    """The ``layers`` group of an open Keras 3 weights file."""
    if "layers" not in h5:
        raise ValueError(f"{where}: not a Keras 3 weights file: it has no 'layers' group")
    return keras_files.child(h5, "layers", where)


def variable_datasets(group: Any, class_name: str, where: str) -> list[Any]:
    """The (unread) datasets of the variables of a ``class_name`` layer whose
    group in a Keras 3 weights file is ``group``, in ``get_weights()`` order:
    ``vars/0, 1, ...`` of each of the class's variable groups."""
    datasets = []
    for names in _VAR_GROUPS.get(class_name, ("vars",)):
        if names.split("/")[0] not in group:
            continue                # a layer without weights (Keras writes no group)
        node = keras_files.path(group, names, where)
        keys = list(node)
        if not all(k.isdigit() for k in keys):
            raise ValueError(f"{where}: {node.name} holds {sorted(keys)[:10]}; Keras names "
                             f"variables 0, 1, 2, ...")
        if sorted(int(k) for k in keys) != list(range(len(keys))):
            raise ValueError(f"{where}: {node.name} holds variables {sorted(keys)}; "
                             f"expected 0 to {len(keys) - 1}")
        datasets += [keras_files.child(node, str(i), where) for i in range(len(keys))]
    return datasets


def refuse_other_weights(groups: Any, keys: set[str], where: str) -> None:
    """Refuse a weights file whose ``groups`` hold weights of layers other
    than ``keys`` (hard-linked groups only: links are refused on reading)."""
    h5py = keras_files.h5py_module()
    for key in sorted(set(groups) - keys - {"top_level_model_weights"}):
        if not isinstance(groups.get(key, getlink=True), h5py.HardLink):
            continue
        # visititems stops at the first non-None return value.
        if groups[key].visititems(
                lambda _, item: True if isinstance(item, h5py.Dataset) else None):
            raise ValueError(f"{where}: the file holds weights of layer {key!r}, which the "
                             f"fastlstm model does not have (pass by_name=True to load "
                             f"only the layers the model has)")
