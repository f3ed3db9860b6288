"""Keras 3's activations by name, in NumPy, for the layers of an imported
Keras model that run outside the LSTM kernel (Dense, Conv1D, Activation).

The elementwise ones are the LSTM kernel's too and keep their NumPy forms in
``activations.FUNCTIONS``; this table adds the two that are not elementwise,
softmax and log_softmax, written from Keras's definitions
(``keras.activations``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .activations import FUNCTIONS as KERNEL_FUNCTIONS

Array = NDArray[Any]

def _log_softmax(x: Array) -> Array:
    # keras.activations.log_softmax: over the last axis, shifted by the max.
    shifted = x - x.max(axis=-1, keepdims=True)
    return np.asarray(shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True)), x.dtype)


def _softmax(x: Array) -> Array:
    # keras.activations.softmax: over the last axis.
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True), x.dtype)


FUNCTIONS: dict[str, Callable[[Array], Array]] = {
    **KERNEL_FUNCTIONS, "softmax": _softmax, "log_softmax": _log_softmax,
}


def function(name: object, where: str) -> Callable[[Array], Array]:
    """The NumPy form of the activation Keras names ``name`` (None and
    "linear" are the identity); ``where`` names the layer in errors."""
    if name is None:
        name = "linear"
    if isinstance(name, dict):          # a serialized activation: {"class_name": "relu", ...}
        name = name.get("config", {}).get("name", name.get("class_name"))
    if not isinstance(name, str) or name not in FUNCTIONS:
        raise ValueError(f"{where}: activation must be one of {sorted(FUNCTIONS)}, "
                         f"got {name!r}")
    return FUNCTIONS[name]
