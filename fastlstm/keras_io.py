"""Keras 3 → fastlstm: live layers and models, and saved ``.keras`` /
``.weights.h5`` files.

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

import io
import json
import os
import zipfile
from collections.abc import Sequence
from typing import Any

from . import validation
from .bidirectional import Bidirectional
from .layer import LSTM
from .masking import Masking
from .sequential import Sequential
from .serialization import snake_case

# Keras configs are JSON: nested dicts and lists.
Config = dict[str, Any]
# What from_keras returns: a layer, or a stack for a model.
Imported = LSTM | Bidirectional | Sequential

_SUPPORTED = ("InputLayer", "Masking", "LSTM", "Bidirectional")
_INITIALIZER_KEYS = ("kernel_initializer", "recurrent_initializer", "bias_initializer")


# ------------------------------------------------------------------ configs
def _without_initializers(value: Any) -> Any:
    """Drop initializer keys (weights come from the model, and Keras allows
    initializers that fastlstm does not have)."""
    if isinstance(value, dict):
        return {k: _without_initializers(v) for k, v in value.items()
                if k not in _INITIALIZER_KEYS}
    return value


def _layer_from_config(class_name: str, config: Config) -> LSTM | Bidirectional | Masking:
    if class_name == "LSTM":
        return LSTM.from_config(_without_initializers(config))
    if class_name == "Bidirectional":
        return Bidirectional.from_config(_without_initializers(config))
    return Masking.from_config(config)


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
                f"{', '.join(_SUPPORTED)}")
        chain.append(layer)
        name = _history_name(tensors[0])
    return by_name[name], chain[::-1]


def _name(entry: Config) -> str:
    # Functional configs name a layer at the top, Sequential ones in its config.
    return str(entry.get("name") or entry["config"]["name"])


def _check_class(layer: Config) -> None:
    if layer["class_name"] not in _SUPPORTED:
        raise ValueError(f"from_keras: layer {_name(layer)!r} is "
                         f"{validation.with_article(layer['class_name'])}; fastlstm "
                         f"supports only {', '.join(_SUPPORTED)}")


def _model_from_config(class_name: str, config: Config,
                       ) -> tuple[Sequential, list[str], list[str]]:
    """A ``Sequential`` for a Keras model config, and the Keras names and
    ``.weights.h5`` keys of its layers."""
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
    keys = _keys([entry["class_name"] for entry in layers])
    names = [_name(entry) for entry in layers]
    key_of = dict(zip(names, keys, strict=True))
    stack = Sequential([_layer_from_config(e["class_name"], e["config"]) for e in chain],
                       name=config.get("name", "sequential"))
    shape = input_layer["config"].get("batch_shape") if input_layer else None
    if shape is not None and shape[-1] is not None and len(shape) == 3:
        stack.build(tuple(shape[1:]))
    chain_names = [_name(entry) for entry in chain]
    return stack, chain_names, [key_of[n] for n in chain_names]


def _keys(class_names: Sequence[str]) -> list[str]:
    keys: list[str] = []
    used: dict[str, int] = {}
    for class_name in class_names:
        key = snake_case(class_name)
        used[key] = used.get(key, -1) + 1
        keys.append(key if used[key] == 0 else f"{key}_{used[key]}")
    return keys


# --------------------------------------------------------------- live Keras
def _keras_class(obj: object) -> str:
    module = type(obj).__module__
    if not module.startswith("keras"):
        raise TypeError(f"expected a Keras 3 layer or model, got {type(obj).__name__} "
                        f"from module {module}")
    return type(obj).__name__


def lstm_from_keras(cls: type[LSTM], layer: Any) -> LSTM:
    """``LSTM.from_keras``: config and weights of a live ``keras.layers.LSTM``."""
    if _keras_class(layer) != "LSTM":
        raise TypeError(f"LSTM.from_keras expects a keras.layers.LSTM, got "
                        f"{type(layer).__name__}; use fastlstm.from_keras for others")
    result = cls.from_config(_without_initializers(layer.get_config()))
    weights = layer.get_weights()
    if weights:
        result.set_weights(weights)
    return result


def from_keras(source: Any) -> Imported:
    """A fastlstm layer or stack with the config and weights of a Keras model.

    Parameters
    ----------
    source : Keras layer or model, or path
        A live Keras 3 ``LSTM`` or ``Bidirectional`` layer, a ``Sequential``
        or functional model made of Input, Masking, LSTM and Bidirectional
        layers in a chain, or the path of a ``.keras`` file (read with h5py,
        without Keras).

    Returns
    -------
    fastlstm.LSTM, fastlstm.Bidirectional or fastlstm.Sequential

    Examples
    --------
    With Keras 3 installed (any backend)::

        model = keras.Sequential([keras.Input((4, 10)), keras.layers.LSTM(16)])
        fast = fastlstm.from_keras(model)
        fast.summary()                              # lstm (LSTM)  (None, 16)  1,728

    and, on a machine with only h5py::

        fast = fastlstm.from_keras("model.keras")
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not path.endswith(".keras"):
            raise ValueError(
                f"from_keras reads .keras files (architecture and weights), got {path!r}; "
                f"for a .weights.h5 file build the stack and call "
                f"fastlstm.load_keras_weights(stack, path)")
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            stack, _, keys = _model_from_config(config["class_name"], config["config"])
            with _h5py().File(io.BytesIO(archive.read("model.weights.h5")), "r") as h5:
                _load_h5(stack.layers, keys, h5)
        return stack
    class_name = _keras_class(source)
    if class_name == "LSTM":
        return LSTM.from_keras(source)
    layer: Imported
    if class_name == "Bidirectional":
        layer = Bidirectional.from_config(_without_initializers(source.get_config()))
        weights = source.get_weights()
    elif class_name in ("Sequential", "Functional"):
        layer, names, _ = _model_from_config(class_name, source.get_config())
        by_name = {entry.name: entry for entry in source.layers}
        weights = [w for name in names for w in by_name[name].get_weights()]
    else:
        raise TypeError(f"from_keras: {class_name} is not supported; fastlstm takes "
                        f"LSTM, Bidirectional, or a Sequential/functional model of "
                        f"{', '.join(_SUPPORTED)}")
    if weights:
        layer.set_weights(weights)
    return layer


# -------------------------------------------------------------------- files
def _h5py() -> Any:
    try:
        import h5py
    except ImportError as error:
        raise ImportError("reading Keras weight files needs h5py: "
                          "pip install fastlstm[h5]") from error
    return h5py


def _cell_vars(group: Any) -> list[Any]:
    variables = group["cell"]["vars"]
    return [variables[k][()] for k in sorted(variables, key=int)]


def _load_h5(layers: Sequence[LSTM | Bidirectional | Masking], keys: Sequence[str],
             h5: Any) -> None:
    if "layers" not in h5:
        raise ValueError("not a Keras 3 weights file: it has no 'layers' group")
    groups = h5["layers"]
    for layer, key in zip(layers, keys, strict=True):
        if isinstance(layer, Masking):
            continue
        if key not in groups:
            raise ValueError(f"the Keras weights file has no layer {key!r} "
                             f"(it has {sorted(groups)})")
        if isinstance(layer, Bidirectional):
            weights = (_cell_vars(groups[key]["forward_layer"])
                       + _cell_vars(groups[key]["backward_layer"]))
        else:
            weights = _cell_vars(groups[key])
        layer.set_weights(weights)
    dataset = _h5py().Dataset
    for key in sorted(set(groups) - set(keys)):
        # visititems stops at the first non-None return value.
        if groups[key].visititems(lambda _, item: True if isinstance(item, dataset) else None):
            raise ValueError(f"the Keras weights file holds weights of layer {key!r}, "
                             f"which the fastlstm model does not have")


def load_keras_weights(target: LSTM | Bidirectional | Sequential,
                       path: str | os.PathLike[str]) -> None:
    """Load weights that Keras saved into a fastlstm layer or stack, without Keras.

    Parameters
    ----------
    target : fastlstm.LSTM, fastlstm.Bidirectional or fastlstm.Sequential
        Built or not; its layers must match the Keras model's LSTM,
        Bidirectional and Masking layers in order.
    path : str or os.PathLike
        A ``.weights.h5`` file (``model.save_weights``) or a ``.keras`` file.
    """
    layers = target.layers if isinstance(target, Sequential) else [target]
    if not isinstance(target, (Sequential, LSTM, Bidirectional)):
        raise TypeError(f"load_keras_weights: expected a fastlstm LSTM, Bidirectional or "
                        f"Sequential, got {type(target).__name__}")
    keys = _keys([type(layer).__name__ for layer in layers])
    path = os.fspath(path)
    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as archive:
            with _h5py().File(io.BytesIO(archive.read("model.weights.h5")), "r") as h5:
                _load_h5(layers, keys, h5)
    else:
        with _h5py().File(path, "r") as h5:
            _load_h5(layers, keys, h5)
