"""``fastlstm.optim``: update rules against PyTorch's SGD and Keras's Adam,
and a small model trained end to end with ``LSTM.backward``."""
import numpy as np
import pytest
import torch

import fastlstm
from fastlstm.optim import SGD, Adam


def _problem(seed):
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=(3, 4)), rng.normal(size=5)]
    grads = [[rng.normal(size=p.shape) for p in params] for _ in range(4)]
    return params, grads


def test_sgd_matches_torch(tol):
    params, steps = _problem(0)
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    theirs = torch.optim.SGD(tensors, lr=0.1, momentum=0.9)
    ours = SGD(learning_rate=0.1, momentum=0.9)
    for grads in steps:
        ours.step(params, grads)
        for t, g in zip(tensors, grads, strict=True):
            t.grad = torch.tensor(g)
        theirs.step()
    for p, t in zip(params, tensors, strict=True):
        np.testing.assert_allclose(p, t.detach().numpy(), **tol(np.float64))


def test_adam_matches_keras(tol):
    import keras

    params, steps = _problem(1)
    variables = [keras.Variable(p, dtype="float64") for p in params]
    # Keras keeps the learning rate in a float32 variable: pick one float32
    # holds exactly.
    theirs = keras.optimizers.Adam(learning_rate=0.0625)
    ours = Adam(learning_rate=0.0625)
    for grads in steps:
        ours.step(params, grads)
        theirs.apply_gradients([(keras.ops.convert_to_tensor(g), v)
                                for g, v in zip(grads, variables, strict=True)])
    for p, v in zip(params, variables, strict=True):
        np.testing.assert_allclose(p, keras.ops.convert_to_numpy(v), **tol(np.float64))


@pytest.mark.parametrize("optimizer, match", [
    (lambda: SGD(learning_rate=0), "learning_rate"),
    (lambda: SGD(momentum=1.0), "momentum"),
    (lambda: Adam(beta_2=1.5), "beta_2"),
    (lambda: Adam(epsilon=0), "epsilon"),
])
def test_bad_hyperparameters(optimizer, match):
    with pytest.raises(ValueError, match=match):
        optimizer()


def test_step_checks_its_lists():
    optimizer = SGD()
    with pytest.raises(ValueError, match="same length"):
        optimizer.step([np.zeros(2)], [])
    with pytest.raises(ValueError, match=r"grads\[0\] must have the shape"):
        optimizer.step([np.zeros(2)], [np.zeros(3)])
    optimizer.step([np.zeros(2)], [np.ones(2)])
    with pytest.raises(ValueError, match="changed shape"):
        optimizer.step([np.zeros(3)], [np.ones(3)])


def test_learns_to_echo_a_delayed_input():
    """LSTM(16) + a linear read-out learns y[t] = x[t - 2] on random +-1
    sequences; predicting zero scores a mean squared error of about 1."""
    rng = np.random.default_rng(0)
    delay, batch, steps = 2, 32, 12
    layer = fastlstm.LSTM(16, return_sequences=True, seed=0)
    readout = [rng.normal(scale=0.1, size=(16, 1)).astype(np.float32),
               np.zeros(1, np.float32)]
    optimizer = Adam(learning_rate=0.02)
    layer.build(1)
    for _ in range(150):
        x = rng.choice([-1.0, 1.0], size=(batch, steps, 1)).astype(np.float32)
        target = np.zeros_like(x)
        target[:, delay:] = x[:, :-delay]
        hidden = layer(x, training=True)
        error = hidden @ readout[0] + readout[1] - target
        loss = float(np.mean(error**2))
        d_prediction = 2 * error / error.size
        layer.backward(d_prediction @ readout[0].T)
        grads = layer.grads + [np.einsum("btu,bto->uo", hidden, d_prediction),
                               d_prediction.sum(axis=(0, 1))]
        params = layer.get_weights() + readout
        optimizer.step(params, grads)
        layer.set_weights(params[:3])
    assert loss < 0.02, loss
