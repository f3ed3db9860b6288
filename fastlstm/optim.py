"""Minimal optimizers for NumPy parameters: SGD with momentum, and Adam.

Enough to train small models with ``LSTM.backward``: an optimizer updates a
list of arrays in place from a list of gradients of the same shapes.  Its
state (momentum, moment estimates) belongs to the positions in that list,
so pass the same list, in the same order, at every step.

Examples
--------
>>> import numpy as np, fastlstm
>>> from fastlstm.optim import Adam
>>> layer, optimizer = fastlstm.LSTM(8, seed=0), Adam(learning_rate=0.01)
>>> x = np.ones((4, 5, 3))
>>> out = layer(x, training=True)
>>> _ = layer.backward(2 * out)              # loss = sum(out ** 2)
>>> weights = layer.get_weights()
>>> optimizer.step(weights, layer.grads)
>>> layer.set_weights(weights)
"""
from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _number(value: object, name: str, valid: Callable[[float], bool], expected: str) -> float:
    """``value`` as a float, or a ValueError when it is not a real number
    (bools excluded) for which ``valid`` holds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not valid(float(value)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return float(value)


class _Optimizer:
    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = _number(learning_rate, "learning_rate", lambda v: v > 0,
                                     "a positive number")
        self.iterations = 0
        self._state: list[list[NDArray[Any]]] | None = None

    def _slots(self, params: Sequence[NDArray[Any]], grads: Sequence[ArrayLike],
               count: int) -> list[list[NDArray[Any]]]:
        """Check the lists and return ``count`` state arrays per parameter."""
        if len(params) != len(grads):
            raise ValueError(
                f"params and grads must have the same length, got {len(params)} and "
                f"{len(grads)}")
        for index, (param, grad) in enumerate(zip(params, grads, strict=True)):
            if np.shape(param) != np.shape(grad):
                raise ValueError(
                    f"grads[{index}] must have the shape of params[{index}] "
                    f"{np.shape(param)}, got {np.shape(grad)}")
            if not isinstance(param, np.ndarray) or not param.flags.writeable:
                raise TypeError(f"params[{index}] must be a writeable NumPy array")
        if self._state is None:
            self._state = [[np.zeros_like(p) for p in params] for _ in range(count)]
        elif [s.shape for s in self._state[0]] != [p.shape for p in params]:
            raise ValueError("params changed shape or count since the first step")
        self.iterations += 1
        return self._state


class SGD(_Optimizer):
    """Stochastic gradient descent with (heavy-ball) momentum, as
    ``torch.optim.SGD``: ``v = momentum * v + g``; ``p -= learning_rate * v``.
    """

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0) -> None:
        super().__init__(learning_rate)
        self.momentum = _number(momentum, "momentum", lambda v: 0 <= v < 1,
                                "a number in [0, 1)")

    def step(self, params: Sequence[NDArray[Any]], grads: Sequence[ArrayLike]) -> None:
        """Update ``params`` (list of arrays) in place from ``grads``."""
        (velocities,) = self._slots(params, grads, 1)
        for param, grad, velocity in zip(params, grads, velocities, strict=True):
            velocity *= self.momentum
            velocity += grad
            param -= self.learning_rate * velocity


class Adam(_Optimizer):
    """Adam, as ``keras.optimizers.Adam``: bias corrections folded into the
    step size, ``epsilon`` added to ``sqrt(v)``.
    """

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7) -> None:
        super().__init__(learning_rate)
        self.beta_1, self.beta_2 = (_number(value, name, lambda v: 0 <= v < 1, "a number in [0, 1)")
                                    for value, name in ((beta_1, "beta_1"), (beta_2, "beta_2")))
        self.epsilon = _number(epsilon, "epsilon", lambda v: v > 0, "a positive number")

    def step(self, params: Sequence[NDArray[Any]], grads: Sequence[ArrayLike]) -> None:
        """Update ``params`` (list of arrays) in place from ``grads``."""
        means, variances = self._slots(params, grads, 2)
        t = self.iterations
        rate = (self.learning_rate * np.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t))
        for param, grad, mean, variance in zip(params, grads, means, variances, strict=True):
            mean += (1 - self.beta_1) * (grad - mean)
            variance += (1 - self.beta_2) * (np.square(grad) - variance)
            param -= (rate * mean / (np.sqrt(variance) + self.epsilon)).astype(param.dtype)
