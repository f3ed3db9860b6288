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

import os
from collections.abc import Sequence
from typing import Any

from . import keras_files
from .bidirectional import Bidirectional
from .keras_model import Model
from .layer import LSTM
from .masking import Masking
from .sequential import Sequential
from .serialization import snake_case

# Keras configs are JSON: nested dicts and lists.
Config = dict[str, Any]
# What from_keras returns: a layer, or a stack for a model.
Imported = LSTM | Bidirectional | Model

_INITIALIZER_KEYS = ("kernel_initializer", "recurrent_initializer", "bias_initializer")


# ------------------------------------------------------------------ configs
def _without_initializers(value: Any) -> Any:
    """Drop initializer keys (weights come from the model, and Keras allows
    initializers that fastlstm does not have)."""
    if isinstance(value, dict):
        return {k: _without_initializers(v) for k, v in value.items()
                if k not in _INITIALIZER_KEYS}
    return value


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
    from . import keras_import
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not path.endswith((".keras", ".h5", ".hdf5")):
            raise ValueError(
                f"from_keras reads .keras files and legacy .h5 full-model files, got "
                f"{path!r}")
        if path.endswith(".weights.h5"):
            raise ValueError(
                f"from_keras: {path} holds weights only; build the model and call "
                f"fastlstm.load_keras_weights(model, {path!r})")
        return keras_import.model_from_file(path)
    class_name = _keras_class(source)
    if class_name == "LSTM":
        return LSTM.from_keras(source)
    layer: Imported
    if class_name == "Bidirectional":
        layer = Bidirectional.from_config(_without_initializers(source.get_config()))
        weights = source.get_weights()
    elif class_name in ("Sequential", "Functional"):
        return keras_import.model_from_live(source)
    else:
        raise TypeError(f"from_keras: {class_name} is not supported; fastlstm takes an "
                        f"LSTM or Bidirectional layer, or a Sequential or functional model")
    if weights:
        layer.set_weights(weights)
    return layer


# -------------------------------------------------------------------- files
def _lstm_shapes(layer: LSTM) -> list[tuple[int | None, ...]]:
    """What the file must hold for ``layer`` (input size free when unbuilt)."""
    units = layer.units
    shapes: list[tuple[int | None, ...]] = [(layer.input_dim, 4 * units), (units, 4 * units)]
    return shapes + [(4 * units,)] if layer.use_bias else shapes


def _read_lstm(group: Any, layer: LSTM, where: str) -> list[Any]:
    variables = keras_files.path(group, "cell/vars", where)
    shapes = _lstm_shapes(layer)
    if sorted(variables) != [str(i) for i in range(len(shapes))]:
        raise ValueError(f"{where}: {variables.name} must hold variables "
                         f"{list(range(len(shapes)))} for {layer!r}, got {sorted(variables)[:10]}")
    return [keras_files.read_dataset(keras_files.child(variables, str(i), where), shape, where)
            for i, shape in enumerate(shapes)]


def _load_h5(layers: Sequence[LSTM | Bidirectional | Masking], keys: Sequence[str],
             h5: Any, where: str, by_name: bool) -> None:
    if "layers" not in h5:
        raise ValueError(f"{where}: not a Keras 3 weights file: it has no 'layers' group")
    groups = keras_files.child(h5, "layers", where)
    for layer, key in zip(layers, keys, strict=True):
        if isinstance(layer, Masking):
            continue
        if key not in groups:
            raise ValueError(f"{where}: the Keras weights file has no layer {key!r} "
                             f"(it has {sorted(groups)[:20]})")
        group = keras_files.child(groups, key, where)
        if isinstance(layer, Bidirectional):
            weights = (_read_lstm(keras_files.child(group, "forward_layer", where),
                                  layer.forward_layer, where)
                       + _read_lstm(keras_files.child(group, "backward_layer", where),
                                    layer.backward_layer, where))
        else:
            weights = _read_lstm(group, layer, where)
        layer.set_weights(weights)
    if by_name:
        return
    dataset = keras_files.h5py_module().Dataset
    for key in sorted(set(groups) - set(keys)):
        # visititems stops at the first non-None return value.
        if groups[key].visititems(lambda _, item: True if isinstance(item, dataset) else None):
            raise ValueError(f"{where}: the Keras weights file holds weights of layer "
                             f"{key!r}, which the fastlstm model does not have (pass "
                             f"by_name=True to load only the layers the model has)")


def load_keras_weights(target: LSTM | Bidirectional | Sequential | Model,
                       path: str | os.PathLike[str], by_name: bool = False,
                       skip_mismatch: bool = False) -> None:
    """Load weights that Keras saved into a fastlstm layer, stack or model, without Keras.

    Parameters
    ----------
    target : fastlstm.LSTM, Bidirectional, Sequential or Model
        A layer or stack, built or not, whose layers match the Keras
        model's LSTM, Bidirectional and Masking layers in order; or a
        ``fastlstm.Model`` (from ``fastlstm.from_keras``).
    path : str or os.PathLike
        A ``.weights.h5`` file (``model.save_weights``), a ``.keras`` file,
        or for a ``fastlstm.Model`` also a legacy ``.h5`` file.
    by_name : bool, default False
        Take from a file holding more layers than the target the weights
        of the layers the target has: for a layer or stack by Keras's
        weight keys (``lstm``, ``lstm_1``, ..., ``bidirectional``), for a
        ``Model`` by layer name.  Without it, a file with other layers'
        weights is refused.
    skip_mismatch : bool, default False
        For a ``Model``: leave the layers whose weights the file lacks or
        holds in other shapes as they are, instead of refusing the file.
    """
    path = os.fspath(path)
    if isinstance(target, Model):
        from . import keras_import
        keras_import.load_into_model(target, path, by_name, skip_mismatch)
        return
    if not isinstance(target, (Sequential, LSTM, Bidirectional)):
        raise TypeError(f"load_keras_weights: expected a fastlstm LSTM, Bidirectional, "
                        f"Sequential or Model, got {type(target).__name__}")
    layers = target.layers if isinstance(target, Sequential) else [target]
    keys = _keys([type(layer).__name__ for layer in layers])
    if path.endswith(".keras"):
        _, weights = keras_files.read_keras_archive(path)
        with keras_files.damaged_as_value_error(path), keras_files.open_h5(weights) as h5:
            _load_h5(layers, keys, h5, f"{path}: model.weights.h5", by_name)
    else:
        with keras_files.damaged_as_value_error(path), keras_files.open_h5(path) as h5:
            _load_h5(layers, keys, h5, path, by_name)
