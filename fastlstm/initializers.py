"""Weight initializers with Keras 3's definitions, reproducible from a seed."""
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

# A name from NAMES, or f(shape, dtype) returning an array of that shape.
Initializer = str | Callable[[tuple[int, ...], np.dtype[Any]], Any]

NAMES = ("glorot_uniform", "orthogonal", "zeros", "ones")


def _glorot_uniform(shape: tuple[int, ...], rng: np.random.Generator) -> NDArray[Any]:
    fan_in, fan_out = (shape[0], shape[1]) if len(shape) == 2 else (shape[0], shape[0])
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def _orthogonal(shape: tuple[int, ...], rng: np.random.Generator) -> NDArray[Any]:
    # Keras: QR of a normal matrix of the larger orientation, with the sign
    # of R's diagonal folded in so the distribution is uniform (Haar).
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    cols = shape[-1]
    a = rng.normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q.reshape(shape)


_FUNCTIONS: dict[str, Callable[[tuple[int, ...], np.random.Generator], NDArray[Any]]] = {
    "glorot_uniform": _glorot_uniform,
    "orthogonal": _orthogonal,
    "zeros": lambda shape, rng: np.zeros(shape),
    "ones": lambda shape, rng: np.ones(shape),
}


def check(initializer: object, argument: str) -> Initializer:
    """Validate an initializer: one of ``NAMES`` or a callable ``f(shape, dtype)``."""
    if callable(initializer):
        return initializer
    if isinstance(initializer, str) and initializer in _FUNCTIONS:
        return initializer
    raise ValueError(
        f"{argument} must be one of {list(NAMES)} or a callable "
        f"f(shape, dtype), got {initializer!r}")


def initialize(initializer: Initializer, shape: Sequence[int], dtype: DTypeLike,
               rng: np.random.Generator) -> NDArray[Any]:
    """Draw an array of ``shape``; ``rng`` is a ``numpy.random.Generator``."""
    if callable(initializer):
        values = np.asarray(initializer(tuple(shape), np.dtype(dtype)))
        if values.shape != tuple(shape):
            raise ValueError(
                f"initializer {initializer!r} returned shape {values.shape}, "
                f"expected {tuple(shape)}")
    else:
        values = _FUNCTIONS[initializer](tuple(shape), rng)
    return np.ascontiguousarray(values, dtype=dtype)
