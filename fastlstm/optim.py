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
import numpy as np


class _Optimizer:
    def __init__(self, learning_rate):
        if isinstance(learning_rate, bool) or not np.isscalar(learning_rate) \
                or not learning_rate > 0:
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
        self.learning_rate = float(learning_rate)
        self.iterations = 0
        self._state = None

    def _slots(self, params, grads, count):
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

    def __init__(self, learning_rate=0.01, momentum=0.0):
        super().__init__(learning_rate)
        if isinstance(momentum, bool) or not np.isscalar(momentum) or not 0 <= momentum < 1:
            raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)

    def step(self, params, grads):
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

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate)
        for value, name in ((beta_1, "beta_1"), (beta_2, "beta_2")):
            if isinstance(value, bool) or not np.isscalar(value) or not 0 <= value < 1:
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
        if isinstance(epsilon, bool) or not np.isscalar(epsilon) or not epsilon > 0:
            raise ValueError(f"epsilon must be a positive number, got {epsilon!r}")
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def step(self, params, grads):
        """Update ``params`` (list of arrays) in place from ``grads``."""
        means, variances = self._slots(params, grads, 2)
        t = self.iterations
        rate = (self.learning_rate * np.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t))
        for param, grad, mean, variance in zip(params, grads, means, variances, strict=True):
            mean += (1 - self.beta_1) * (grad - mean)
            variance += (1 - self.beta_2) * (np.square(grad) - variance)
            param -= (rate * mean / (np.sqrt(variance) + self.epsilon)).astype(param.dtype)
