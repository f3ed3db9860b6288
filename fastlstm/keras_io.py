"""Keras 3's formats as plain data: layer configs, the layer graph of a
model's config, and the ``.keras`` / ``.weights.h5`` files.

The one place that knows Keras's conventions.  It builds no fastlstm
object: the layers' ``from_config`` take their constructor arguments from
``constructor_kwargs``, and ``fastlstm.models`` builds layers and stacks
from what the readers here return.

Files are read with h5py alone (``pip install fastlstm[h5]``), without
Keras.  Keras writes the weights of ``model.layers`` under
``layers/<key>``, where the key is the layer's snake-cased class name,
numbered from the second layer of a class on (``lstm``, ``lstm_1``, ...),
and a layer's variables under ``<key>/cell/vars/0, 1, 2`` (LSTM) or
``<key>/forward_layer/cell/vars/...`` and ``<key>/backward_layer/...``
(Bidirectional).  A ``.keras`` file is a zip holding ``config.json`` and
``model.weights.h5``.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from . import validation

# Keras configs are JSON: nested dicts and lists.
Config = dict[str, Any]

SUPPORTED = ("InputLayer", "Masking", "LSTM", "Bidirectional")

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
    if not isinstance(value, dict) or value.get("class_name") not in classes:
        name = value.get("class_name") if isinstance(value, dict) else type(value).__name__
        raise ValueError(f"expected the config of one of {sorted(classes)}, got {name!r}")
    return classes[value["class_name"]].from_config(value["config"])


# ------------------------------------------------------------ model configs
class Chain(NamedTuple):
    """The layers of a model config that fastlstm can run, input excluded."""

    input_shape: tuple[Any, ...] | None          # (timesteps or None, features) when known
    layers: list[tuple[str, Config]]             # (class name, config), input to output
    names: list[str]                             # their Keras names
    keys: list[str]                              # their keys in .weights.h5 files


def _history_name(tensor: Config) -> str:
    return str(tensor["config"]["keras_history"][0])


def _is_tensor(value: object) -> bool:
    return isinstance(value, dict) and value.get("class_name") == "__keras_tensor__"


def _holds_tensor(value: object) -> bool:
    if _is_tensor(value):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_tensor(v) for v in value)
    return isinstance(value, dict) and any(_holds_tensor(v) for v in value.values())


def _triples(value: list[Any]) -> list[Any]:
    """input_layers/output_layers: one [name, node, index] or a list of them."""
    return [value] if value and isinstance(value[0], str) else list(value)


def _functional_chain(config: Config) -> tuple[Config, list[Config]]:
    """The layer configs from the input to the output of a single-path
    functional model, input excluded."""
    by_name = {layer["name"]: layer for layer in config["layers"]}
    inputs, outputs = _triples(config["input_layers"]), _triples(config["output_layers"])
    if len(inputs) != 1:
        raise ValueError(f"from_keras: the model has {len(inputs)} inputs; "
                         f"fastlstm supports single-input chains of layers")
    if len({name for name, _, _ in outputs}) != 1:
        raise ValueError(f"from_keras: the model's outputs come from several layers "
                         f"{[name for name, _, _ in outputs]}; fastlstm supports a chain "
                         f"of layers whose last layer gives all outputs")
    chain, name = [], outputs[0][0]
    while by_name[name]["class_name"] != "InputLayer":
        layer = by_name[name]
        _check_class(layer)
        nodes = layer["inbound_nodes"]
        tensors = [a for a in nodes[0]["args"] if _is_tensor(a)] if len(nodes) == 1 else []
        # Masks are recomputed from Masking layers; any other tensor input
        # (such as an initial_state from an encoder) leaves the chain.
        extra = sorted(k for k, v in nodes[0]["kwargs"].items()
                       if k != "mask" and _holds_tensor(v)) if len(nodes) == 1 else []
        if len(nodes) != 1 or len(tensors) != 1 or extra:
            raise ValueError(
                f"from_keras: layer {name!r} is not a plain link of a chain (it is called "
                f"{len(nodes)} times, on {len(tensors)} tensors, with {extra or 'no'} "
                f"extra inputs such as initial_state); fastlstm supports chains of "
                f"{', '.join(SUPPORTED)}")
        chain.append(layer)
        name = _history_name(tensors[0])
    return by_name[name], chain[::-1]


def _name(entry: Config) -> str:
    # Functional configs name a layer at the top, Sequential ones in its config.
    return str(entry.get("name") or entry["config"]["name"])


def _check_class(layer: Config) -> None:
    if layer["class_name"] not in SUPPORTED:
        raise ValueError(f"from_keras: layer {_name(layer)!r} is "
                         f"{validation.with_article(layer['class_name'])}; "
                         f"fastlstm supports only {', '.join(SUPPORTED)}")


def model_chain(class_name: str, config: Config) -> Chain:
    """The chain of layers of a Keras ``Sequential`` or functional model
    config (``model.get_config()``, or a ``.keras`` file's config)."""
    layers = config["layers"]
    input_layer: Config | None
    if class_name == "Sequential":
        for layer in layers:
            _check_class(layer)
        input_layer = next((e for e in layers if e["class_name"] == "InputLayer"), None)
        chain = [entry for entry in layers if entry["class_name"] != "InputLayer"]
    elif class_name == "Functional":
        input_layer, chain = _functional_chain(config)
    else:
        raise TypeError(f"from_keras: expected a Keras Sequential or functional model, "
                        f"got {class_name}")
    if not chain:
        raise ValueError("from_keras: the model has no layers besides its input")
    key_of = dict(zip([_name(entry) for entry in layers],
                      layer_keys([entry["class_name"] for entry in layers]), strict=True))
    shape = input_layer["config"].get("batch_shape") if input_layer else None
    input_shape = (tuple(shape[1:]) if shape is not None and len(shape) == 3
                   and shape[-1] is not None else None)
    names = [_name(entry) for entry in chain]
    return Chain(input_shape, [(entry["class_name"], entry["config"]) for entry in chain],
                 names, [key_of[name] for name in names])


# ------------------------------------------------------------- live Keras
def keras_class(obj: object) -> str:
    """The class name of a Keras 3 object; TypeError for anything else."""
    module = type(obj).__module__
    if not module.startswith("keras"):
        raise TypeError(f"expected a Keras 3 layer or model, got {type(obj).__name__} "
                        f"from module {module}")
    return type(obj).__name__


# ------------------------------------------------------------------- files
def _h5py() -> Any:
    try:
        import h5py
    except ImportError as error:
        raise ImportError("reading Keras weight files needs h5py: "
                          "pip install fastlstm[h5]") from error
    return h5py


def read_config(path: str | os.PathLike[str]) -> Config:
    """The model config (``config.json``) of a ``.keras`` file."""
    with zipfile.ZipFile(path) as archive:
        config: Config = json.loads(archive.read("config.json"))
    return config


@contextlib.contextmanager
def open_weights(path: str | os.PathLike[str]) -> Iterator[Any]:
    """The open HDF5 file of a ``.weights.h5`` file, or of a ``.keras``
    file's ``model.weights.h5``."""
    if os.fspath(path).endswith(".keras"):
        with zipfile.ZipFile(path) as archive:
            data = io.BytesIO(archive.read("model.weights.h5"))
        with _h5py().File(data, "r") as h5:
            yield h5
    else:
        with _h5py().File(path, "r") as h5:
            yield h5


def _layers_group(h5: Any) -> Any:
    if "layers" not in h5:
        raise ValueError("not a Keras 3 weights file: it has no 'layers' group")
    return h5["layers"]


def _cell_vars(group: Any) -> list[NDArray[Any]]:
    variables = group["cell"]["vars"]
    return [np.asarray(variables[k][()]) for k in sorted(variables, key=int)]


def layer_weights(h5: Any, key: str, class_name: str) -> list[NDArray[Any]]:
    """The weights of layer ``key`` (a ``class_name`` layer) in an open
    Keras weights file, in ``get_weights()`` order; [] for Masking."""
    groups = _layers_group(h5)
    if class_name == "Masking":
        return []
    if key not in groups:
        raise ValueError(f"the Keras weights file has no layer {key!r} "
                         f"(it has {sorted(groups)})")
    if class_name == "Bidirectional":
        return (_cell_vars(groups[key]["forward_layer"])
                + _cell_vars(groups[key]["backward_layer"]))
    return _cell_vars(groups[key])


def check_no_other_weights(h5: Any, keys: Sequence[str]) -> None:
    """Refuse a weights file that holds weights of layers other than ``keys``."""
    groups = _layers_group(h5)
    dataset = _h5py().Dataset
    for key in sorted(set(groups) - set(keys)):
        # visititems stops at the first non-None return value.
        if groups[key].visititems(lambda _, item: True if isinstance(item, dataset) else None):
            raise ValueError(f"the Keras weights file holds weights of layer {key!r}, "
                             f"which the fastlstm model does not have")
