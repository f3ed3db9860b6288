"""fastlstm's own file format: a layer or stack's config (JSON) and weights
in one ``.npz``, no pickle.  ``fastlstm.load`` (in ``fastlstm.models``)
builds the object again from what ``read`` returns."""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import keras_io


def save(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write the config and the weights (when built) of a fastlstm layer or
    stack ``obj`` to ``path`` (.npz)."""
    try:
        config = json.dumps(keras_io.to_dict(obj))
    except TypeError as error:  # a callable initializer
        raise TypeError(f"save: the config of {obj!r} is not JSON-serialisable "
                        f"(callable initializers cannot be saved): {error}") from None
    arrays = {"config": np.array(config)}
    if obj.built:
        arrays.update({f"weight_{i}": w for i, w in enumerate(obj.get_weights())})
    # NumPy's stub types every keyword as savez's allow_pickle flag.
    np.savez(os.fspath(path), **arrays)  # type: ignore[arg-type]


def read(path: str | os.PathLike[str]) -> tuple[Any, list[NDArray[Any]]]:
    """The config (``{"class_name": ..., "config": ...}``) and the weights
    that ``save`` wrote to ``path``."""
    with np.load(os.fspath(path), allow_pickle=False) as data:
        if "config" not in data.files:
            raise ValueError(f"{path} is not a fastlstm file: it has no 'config' entry")
        config = json.loads(str(data["config"]))
        count = sum(name.startswith("weight_") for name in data.files)
        weights = [data[f"weight_{i}"] for i in range(count)]
    return config, weights
