"""Bad input gets a ValueError or TypeError naming the argument, what was
expected and what was given."""
import numpy as np
import pytest

import fastlstm


@pytest.fixture
def layer():
    built = fastlstm.LSTM(4)
    built.build(3)
    return built


X = np.zeros((2, 5, 3), np.float32)


@pytest.mark.parametrize("x,error,message", [
    (np.zeros((5, 3)), ValueError, r"x of shape \(batch, timesteps, features\), got shape \(5, 3\)"),
    (np.zeros((1, 2, 5, 3)), ValueError, r"got shape \(1, 2, 5, 3\) \(rank 4\)"),
    (np.zeros((2, 5, 7)), ValueError, r"\(batch, timesteps, 3\), got \(2, 5, 7\)"),
    (np.array([[["a", "b", "c"]]]), TypeError, r"x must hold bool, integer or float values, got dtype <U1"),
    (np.array([[[None, 1, 2]]], dtype=object), TypeError, r"x must hold .* got dtype object"),
    (np.zeros((2, 5, 3), np.complex64), TypeError, r"x must hold .* got dtype complex64"),
    ([[[1.0, 2.0, 3.0]], [[1.0, 2.0]]], ValueError, r"x must be a rectangular numeric array"),
])
def test_bad_inputs(layer, x, error, message):
    with pytest.raises(error, match=message):
        layer(x)


def test_zero_features_refused():
    with pytest.raises(ValueError, match=r"\(batch, timesteps, features\), got \(2, 5, 0\)"):
        fastlstm.LSTM(3)(np.zeros((2, 5, 0)))


@pytest.mark.parametrize("mask,error,message", [
    (np.ones((2, 4), bool), ValueError, r"mask must have shape \(batch, timesteps\) = \(2, 5\), got \(2, 4\)"),
    (np.ones((5, 2), bool), ValueError, r"= \(2, 5\), got \(5, 2\)"),
    (np.ones((2, 5)), TypeError, r"mask must hold bool .* got dtype float64"),
    (np.full((2, 5), "x"), TypeError, r"mask must hold bool, integer or float values, got dtype <U1"),
])
def test_bad_masks(layer, mask, error, message):
    with pytest.raises(error, match=message):
        layer(X, mask=mask)


def test_integer_mask_accepted(layer):
    mask = np.array([[1, 0, 1, 1, 0], [0, 0, 1, 1, 1]])
    np.testing.assert_array_equal(layer(X, mask=mask), layer(X, mask=mask.astype(bool)))


@pytest.mark.parametrize("state,message", [
    (np.zeros((2, 4)), r"initial_state must be a list \[h, c\] .* got ndarray"),
    ([np.zeros((2, 4))], r"initial_state must be a list \[h, c\] .* got a list of 1"),
    ([np.zeros((2, 4)), np.zeros((2, 3))], r"initial_state\[c\] must have shape \(batch, units\) = \(2, 4\), got \(2, 3\)"),
    ([np.zeros((3, 4)), np.zeros((2, 4))], r"initial_state\[h\] must have shape .* got \(3, 4\)"),
])
def test_bad_initial_state(layer, state, message):
    with pytest.raises(ValueError, match=message):
        layer(X, initial_state=state)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(units=0), ValueError, r"units must be a positive integer <= \d+, got 0"),
    (dict(units=-3), ValueError, r"units must be a positive integer"),
    (dict(units=2.5), TypeError, r"units must be a positive integer, got 2.5"),
    (dict(units=True), TypeError, r"units must be a positive integer, got True"),
    (dict(units=2**30), ValueError, r"units must be a positive integer <= 536870911"),
    (dict(units=4, activation="softmax"), ValueError,
     r"activation must be one of .* got 'softmax'"),
    (dict(units=4, recurrent_activation=3), TypeError, r"recurrent_activation must be one of"),
    (dict(units=4, dtype="int32"), ValueError, r"dtype must be 'float32' or 'float64', got 'int32'"),
    (dict(units=4, dtype="banana"), ValueError, r"dtype must be 'float32' or 'float64'"),
    (dict(units=4, kernel_initializer="he_normal"), ValueError, r"kernel_initializer must be one of"),
    (dict(units=4, seed=1.5), TypeError, r"seed must be an int or None, got 1.5"),
])
def test_bad_constructor_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        fastlstm.LSTM(**kwargs)


def test_none_activation_means_linear():
    assert fastlstm.LSTM(2, activation=None).activation == "linear"


@pytest.mark.parametrize("shape", [0, (None, 4, 0), (), "3"])
def test_bad_build(shape):
    with pytest.raises((ValueError, TypeError), match="input_dim|input_shape"):
        fastlstm.LSTM(2).build(shape)


@pytest.mark.parametrize("weights,message", [
    ([np.zeros((3, 16)), np.zeros((4, 16))], r"weights must be a list of 3 arrays .* got a list of 2"),
    ([np.zeros((3, 16)), np.zeros((4, 16)), np.zeros(15)], r"weights\[2\] must have shape \(16,\), got \(15,\)"),
    ([np.zeros((2, 16)), np.zeros((4, 16)), np.zeros(16)], r"weights\[0\] must have shape \(3, 16\), got \(2, 16\)"),
    ([np.zeros((3, 16)), np.zeros((16, 4)), np.zeros(16)], r"weights\[1\] must have shape \(4, 16\), got \(16, 4\)"),
    (np.zeros(3), r"weights must be a list of 3 arrays"),
])
def test_bad_set_weights(layer, weights, message):
    with pytest.raises(ValueError, match=message):
        layer.set_weights(weights)
    assert layer.kernel.shape == (3, 16)       # unchanged


def test_set_weights_on_unbuilt_layer_checks_the_kernel():
    with pytest.raises(ValueError, match=r"weights\[0\] must have shape \(input_dim, 16\)"):
        fastlstm.LSTM(4).set_weights([np.zeros(16), np.zeros((4, 16)), np.zeros(16)])
    with pytest.raises(ValueError, match=r"weights\[0\] must have shape \(input_dim, 16\), got \(\)"):
        fastlstm.LSTM(4).set_weights([])
    with pytest.raises(ValueError, match=r"weights\[0\] must have shape \(input_dim, 16\), got \(3, 12\)"):
        fastlstm.LSTM(4).set_weights([np.zeros((3, 12)), np.zeros((4, 16)), np.zeros(16)])
    layer = fastlstm.LSTM(4)
    with pytest.raises(ValueError):
        layer.set_weights([np.zeros((0, 16)), np.zeros((4, 16)), np.zeros(16)])
    assert not layer.built
