"""Activation names accepted by the layer, their kernel codes, and NumPy forms.

The codes must match the enum in ``src/kernel/activations.h``.  The NumPy forms are
the definitions the reference implementation uses (Keras 3's).
"""
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

CODES = {"tanh": 0, "sigmoid": 1, "hard_sigmoid": 2, "relu": 3, "linear": 4, "elu": 5,
         "selu": 6, "gelu": 7, "silu": 8, "softplus": 9, "softsign": 10, "exponential": 11,
         "relu6": 12, "leaky_relu": 13, "hard_silu": 14, "mish": 15}
# Keras 3's other names for the same functions (keras.activations.get("swish") is silu).
ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}

# keras.activations.selu's constants.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _sigmoid(x: NDArray[Any]) -> NDArray[Any]:
    result: NDArray[Any] = 1 / (1 + np.exp(-x))
    return result


def _hard_sigmoid(x: NDArray[Any]) -> NDArray[Any]:
    # Keras 3: relu6(x + 3) / 6.  np.clip keeps NaN, like the kernel.
    result: NDArray[Any] = np.clip(x + 3, 0, 6) / 6
    return result


def _relu(x: NDArray[Any]) -> NDArray[Any]:
    # np.maximum keeps NaN as the kernel's x < 0 ? 0 : x does (-0.0 gives
    # +0.0, an equal value) and is vectorised: np.where with a scalar
    # branches per element (about 50x slower on a random sign pattern).
    result: NDArray[Any] = np.maximum(x, x.dtype.type(0))
    return result


def _elu(x: NDArray[Any]) -> NDArray[Any]:
    # expm1 only where it is used: exp of a large positive x would warn.
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0))).astype(x.dtype, copy=False)


def _selu(x: NDArray[Any]) -> NDArray[Any]:
    negative = _SELU_ALPHA * np.expm1(np.minimum(x, 0))
    return (_SELU_SCALE * np.where(x > 0, x, negative)).astype(x.dtype, copy=False)


def _gelu(x: NDArray[Any]) -> NDArray[Any]:
    # Imported here: SciPy is most of `import fastlstm`'s time, and only
    # gelu needs it.
    from scipy.special import erfc
    # keras.activations.gelu defaults to approximate=False: the erf form,
    # 0.5 x (1 + erf(x / sqrt 2)), written as 0.5 x erfc(-x / sqrt 2), which
    # keeps its relative accuracy where 1 + erf cancels (x << 0).
    return np.asarray((0.5 * x * erfc(-x / np.sqrt(2))).astype(x.dtype, copy=False), x.dtype)


def _silu(x: NDArray[Any]) -> NDArray[Any]:
    return np.asarray(x * _sigmoid(x), x.dtype)


def _softplus(x: NDArray[Any]) -> NDArray[Any]:
    result: NDArray[Any] = np.logaddexp(np.zeros((), x.dtype), x)
    return result


def _softsign(x: NDArray[Any]) -> NDArray[Any]:
    return np.asarray(x / (1 + np.abs(x)), x.dtype)


def _relu6(x: NDArray[Any]) -> NDArray[Any]:
    result: NDArray[Any] = np.clip(x, 0, 6).astype(x.dtype, copy=False)
    return result


def _leaky_relu(x: NDArray[Any]) -> NDArray[Any]:
    # keras.activations.leaky_relu's default negative_slope is 0.2.
    return np.where(x > 0, x, 0.2 * x).astype(x.dtype, copy=False)


def _hard_silu(x: NDArray[Any]) -> NDArray[Any]:
    return np.asarray(x * _hard_sigmoid(x), x.dtype)


def _mish(x: NDArray[Any]) -> NDArray[Any]:
    return np.asarray(x * np.tanh(_softplus(x)), x.dtype)


FUNCTIONS: dict[str, Callable[[NDArray[Any]], NDArray[Any]]] = {
    "tanh": np.tanh, "sigmoid": _sigmoid, "hard_sigmoid": _hard_sigmoid, "relu": _relu,
    "linear": lambda x: x, "elu": _elu, "selu": _selu, "gelu": _gelu, "silu": _silu,
    "softplus": _softplus, "softsign": _softsign, "exponential": np.exp, "relu6": _relu6,
    "leaky_relu": _leaky_relu, "hard_silu": _hard_silu, "mish": _mish,
}
FUNCTIONS.update({alias: FUNCTIONS[name] for alias, name in ALIASES.items()})


def canonical(name: object, argument: str) -> str:
    """Return the activation's canonical name: ``None`` means ``"linear"``, and
    Keras's aliases ``"swish"`` and ``"hard_swish"`` are ``"silu"`` and ``"hard_silu"``
    (the names Keras serializes them under)."""
    if name is None:
        return "linear"
    known = sorted([*CODES, *ALIASES])
    if not isinstance(name, str):
        raise TypeError(
            f"{argument} must be one of {known} (a string), got {type(name).__name__}")
    if name not in CODES and name not in ALIASES:
        raise ValueError(f"{argument} must be one of {known}, got {name!r}")
    return ALIASES.get(name, name)
