"""Activation names accepted by the layer, their kernel codes, and NumPy forms.

The codes must match the enum in ``src/lstm_cell.h``.  The NumPy forms are
the definitions the reference implementation uses (Keras 3's).
"""
import numpy as np

CODES = {"tanh": 0, "sigmoid": 1, "hard_sigmoid": 2, "relu": 3, "linear": 4}


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _hard_sigmoid(x):
    # Keras 3: relu6(x + 3) / 6.  np.clip keeps NaN, like the kernel.
    return np.clip(x + 3, 0, 6) / 6


def _relu(x):
    return np.where(x < 0, 0, x).astype(x.dtype)


FUNCTIONS = {
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "hard_sigmoid": _hard_sigmoid,
    "relu": _relu,
    "linear": lambda x: x,
}


def canonical(name, argument):
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
