"""Activation names accepted by the layer, their kernel codes, and NumPy forms.

The codes must match the enum in ``src/kernel/activations.h``.  The NumPy forms are
the definitions the reference implementation uses (Keras 3's).
"""
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

CODES = {"tanh": 0, "sigmoid": 1, "hard_sigmoid": 2, "relu": 3, "linear": 4}


def _sigmoid(x: NDArray[Any]) -> NDArray[Any]:
    result: NDArray[Any] = 1 / (1 + np.exp(-x))
    return result


def _hard_sigmoid(x: NDArray[Any]) -> NDArray[Any]:
    # Keras 3: relu6(x + 3) / 6.  np.clip keeps NaN, like the kernel.
    result: NDArray[Any] = np.clip(x + 3, 0, 6) / 6
    return result


def _relu(x: NDArray[Any]) -> NDArray[Any]:
    return np.where(x < 0, 0, x).astype(x.dtype)


FUNCTIONS: dict[str, Callable[[NDArray[Any]], NDArray[Any]]] = {
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "hard_sigmoid": _hard_sigmoid,
    "relu": _relu,
    "linear": lambda x: x,
}


def canonical(name: object, argument: str) -> str:
    """Return the activation's canonical name; ``None`` means ``"linear"``."""
    if name is None:
        return "linear"
    if not isinstance(name, str):
        raise TypeError(
            f"{argument} must be one of {sorted(CODES)} (a string), "
            f"got {type(name).__name__}")
    if name not in CODES:
        raise ValueError(
            f"{argument} must be one of {sorted(CODES)}, got {name!r}")
    return name
