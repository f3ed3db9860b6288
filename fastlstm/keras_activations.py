"""Keras 3's activations by name, in NumPy, for the layers of an imported
Keras model that run outside the LSTM kernel (Dense, Conv1D, Activation).

The kernel's own activations (``activations.CODES``) keep their NumPy forms
in ``activations.FUNCTIONS``; this table adds the rest of what Keras 3
accepts by name, each written from Keras's definition (``keras.activations``)
with its default arguments.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .activations import FUNCTIONS as KERNEL_FUNCTIONS

Array = NDArray[Any]

# keras.activations.selu's constants.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _elu(x: Array) -> Array:
    # expm1 only where it is used: exp of a large positive x would warn.
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0))).astype(x.dtype, copy=False)


def _selu(x: Array) -> Array:
    negative = _SELU_ALPHA * np.expm1(np.minimum(x, 0))
    return (_SELU_SCALE * np.where(x > 0, x, negative)).astype(x.dtype, copy=False)


def _gelu(x: Array) -> Array:
    # Imported here: SciPy is most of `import fastlstm`'s time, and only
    # gelu needs it.
    from scipy.special import erf
    # keras.activations.gelu defaults to approximate=False: the erf form.
    return np.asarray((0.5 * x * (1 + erf(x / np.sqrt(2)))).astype(x.dtype, copy=False), x.dtype)


def _silu(x: Array) -> Array:
    return np.asarray(x * KERNEL_FUNCTIONS["sigmoid"](x), x.dtype)


def _softplus(x: Array) -> Array:
    return np.logaddexp(np.zeros((), x.dtype), x)


def _softsign(x: Array) -> Array:
    return np.asarray(x / (1 + np.abs(x)), x.dtype)


def _relu6(x: Array) -> Array:
    return np.clip(x, 0, 6).astype(x.dtype, copy=False)


def _leaky_relu(x: Array) -> Array:
    # keras.activations.leaky_relu's default negative_slope is 0.2.
    return np.where(x > 0, x, 0.2 * x).astype(x.dtype, copy=False)


def _hard_silu(x: Array) -> Array:
    return np.asarray(x * (np.clip(x + 3, 0, 6) / 6).astype(x.dtype, copy=False), x.dtype)


def _mish(x: Array) -> Array:
    return x * np.tanh(_softplus(x))


def _log_softmax(x: Array) -> Array:
    # keras.activations.log_softmax: over the last axis, shifted by the max.
    shifted = x - x.max(axis=-1, keepdims=True)
    return np.asarray(shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True)), x.dtype)


def _softmax(x: Array) -> Array:
    # keras.activations.softmax: over the last axis.
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True), x.dtype)


FUNCTIONS: dict[str, Callable[[Array], Array]] = {
    **KERNEL_FUNCTIONS,
    "elu": _elu, "selu": _selu, "gelu": _gelu, "silu": _silu, "swish": _silu,
    "softplus": _softplus, "softsign": _softsign, "exponential": np.exp, "relu6": _relu6,
    "leaky_relu": _leaky_relu, "hard_silu": _hard_silu, "hard_swish": _hard_silu,
    "mish": _mish, "softmax": _softmax, "log_softmax": _log_softmax,
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
