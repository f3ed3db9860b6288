"""Configs and files: Keras-style config dicts, and ``save``/``load`` of a
layer or stack as one ``.npz`` (JSON config + weights, no pickle)."""
from __future__ import annotations

import inspect
import json
import os
import re
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from . import quantization

if TYPE_CHECKING:
    from .bidirectional import Bidirectional
    from .layer import LSTM
    from .masking import Masking
    from .sequential import Sequential

# What save writes and load reads.
Model = Union["LSTM", "Bidirectional", "Masking", "Sequential"]

# Keras LSTM config keys with no effect on inference outputs: dropped when a
# constructor does not take them.
_INFERENCE_NEUTRAL = {
    "name", "trainable", "unroll", "use_cudnn", "dropout", "recurrent_dropout",
    "kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
    "activity_regularizer", "kernel_constraint", "recurrent_constraint",
    "bias_constraint",
}
_INITIALIZER_KEYS = ("kernel_initializer", "recurrent_initializer", "bias_initializer")


def snake_case(name: str) -> str:
    """Keras's ``to_snake_case``: "GlorotUniform" → "glorot_uniform", "LSTM" → "lstm"."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


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


def to_dict(obj: Model) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}`` of a fastlstm layer or stack."""
    return {"class_name": type(obj).__name__, "config": obj.get_config()}


def from_dict(value: object) -> Model:
    """The (unbuilt) object described by ``to_dict``'s result."""
    from .bidirectional import Bidirectional
    from .layer import LSTM
    from .masking import Masking
    from .sequential import Sequential
    classes = {cls.__name__: cls for cls in (LSTM, Bidirectional, Masking, Sequential)}
    if not isinstance(value, dict) or value.get("class_name") not in classes:
        name = value.get("class_name") if isinstance(value, dict) else type(value).__name__
        raise ValueError(f"expected the config of one of {sorted(classes)}, got {name!r}")
    return classes[value["class_name"]].from_config(value["config"])


def save(obj: Model, path: str | os.PathLike[str]) -> None:
    """Write ``obj``'s config and weights (when built) to ``path`` (.npz)."""
    try:
        config = json.dumps(to_dict(obj))
    except TypeError as error:  # a callable initializer
        raise TypeError(f"save: the config of {obj!r} is not JSON-serialisable "
                        f"(callable initializers cannot be saved): {error}") from None
    arrays = {"config": np.array(config)}
    if obj.built:
        arrays.update({f"weight_{i}": w for i, w in enumerate(obj.get_weights())})
        arrays.update(quantization.file_entries(obj))   # int8 layers' own weights
    # NumPy's stub types every keyword as savez's allow_pickle flag.
    np.savez(os.fspath(path), **arrays)  # type: ignore[arg-type]


def load(path: str | os.PathLike[str]) -> Model:
    """Read a layer or stack written by ``save``.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npz`` file written by ``LSTM.save``, ``Bidirectional.save`` or
        ``Sequential.save``.

    Examples
    --------
    >>> import numpy as np, fastlstm, tempfile, os
    >>> layer = fastlstm.LSTM(4, seed=0)
    >>> layer.build(3)
    >>> path = os.path.join(tempfile.mkdtemp(), "layer.npz")
    >>> layer.save(path)
    >>> x = np.ones((2, 5, 3), np.float32)
    >>> bool((fastlstm.load(path)(x) == layer(x)).all())
    True
    """
    with np.load(os.fspath(path), allow_pickle=False) as data:
        if "config" not in data.files:
            raise ValueError(f"{path} is not a fastlstm file: it has no 'config' entry")
        obj = from_dict(json.loads(str(data["config"])))
        count = sum(name.startswith("weight_") for name in data.files)
        weights = [data[f"weight_{i}"] for i in range(count)]
        if weights:
            obj.set_weights(weights)
        quantization.restore(obj, data, path)
    return obj
