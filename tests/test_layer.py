"""The LSTM layer's API: the seed tutorials, weights, initializers, and
the promises about the caller's arrays."""
import numpy as np
import pytest

import fastlstm
from fastlstm.reference import lstm as reference


def tutorial_inputs():
    """The first tutorial's X: 100 one-hot sequences of 4 digits in 0..9."""
    digits = np.random.default_rng(7).integers(0, 10, size=(100, 4))
    return np.eye(10, dtype=np.float32)[digits]


# ------------------------------------------------------------------ tutorials
def test_tutorial_four_return_modes():
    x = tutorial_inputs()
    assert x.shape == (100, 4, 10)
    weights = fastlstm.LSTM(16, seed=0)
    weights.build(x.shape)
    results = {}
    for sequences in (False, True):
        for state in (False, True):
            layer = fastlstm.LSTM(16, return_sequences=sequences, return_state=state)
            layer.set_weights(weights.get_weights())
            assert layer.count_params() == 1728
            results[sequences, state] = layer(x)

    state_h = results[False, False]
    assert isinstance(state_h, np.ndarray) and state_h.shape == (100, 16)

    sequence = results[True, False]
    assert sequence.shape == (100, 4, 16)

    output, h, c = results[False, True]
    assert [a.shape for a in (output, h, c)] == [(100, 16)] * 3
    np.testing.assert_array_equal(output, h)       # the same state, twice
    assert not np.array_equal(h, c)

    sequence2, h2, c2 = results[True, True]
    assert sequence2.shape == (100, 4, 16)
    np.testing.assert_array_equal(sequence2[:, -1], h2)
    # every mode computes the same numbers
    np.testing.assert_array_equal(state_h, h)
    np.testing.assert_array_equal(sequence, sequence2)
    np.testing.assert_array_equal(sequence[:, -1], state_h)
    np.testing.assert_array_equal(c, c2)


def test_tutorial_one_unit_three_steps():
    """The second tutorial: Input(shape=(3, 1)), LSTM(1), data 0.1, 0.2, 0.3."""
    data = np.array([0.1, 0.2, 0.3]).reshape((1, 3, 1))
    assert fastlstm.LSTM(1)(data).shape == (1, 1)
    assert fastlstm.LSTM(1, return_sequences=True)(data).shape == (1, 3, 1)
    lstm1, state_h, state_c = fastlstm.LSTM(1, return_state=True)(data)
    assert lstm1.shape == state_h.shape == state_c.shape == (1, 1)
    layer = fastlstm.LSTM(1, return_sequences=True, return_state=True, seed=3)
    lstm1, state_h, state_c = layer(data)
    assert lstm1.shape == (1, 3, 1)
    np.testing.assert_array_equal(lstm1[:, -1], state_h)
    expected = reference(data, *layer.get_weights())
    np.testing.assert_allclose(lstm1, expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state_c, expected[3], rtol=1e-5, atol=1e-6)


# -------------------------------------------------------------------- weights
def test_weights_layout_and_count():
    layer = fastlstm.LSTM(5)
    layer.build((None, 7, 3))
    kernel, recurrent_kernel, bias = layer.get_weights()
    assert kernel.shape == (3, 20) and recurrent_kernel.shape == (5, 20) and bias.shape == (20,)
    assert layer.count_params() == 3 * 20 + 5 * 20 + 20
    assert all(w.dtype == np.float32 for w in layer.get_weights())
    np.testing.assert_array_equal(layer.kernel, kernel)
    np.testing.assert_array_equal(layer.recurrent_kernel, recurrent_kernel)
    np.testing.assert_array_equal(layer.bias, bias)


def test_no_bias():
    layer = fastlstm.LSTM(4, use_bias=False, seed=1)
    x = np.random.default_rng(0).normal(size=(2, 3, 5))
    out = layer(x)
    weights = layer.get_weights()
    assert len(weights) == 2 and layer.bias is None
    assert layer.count_params() == 5 * 16 + 4 * 16
    np.testing.assert_allclose(out, reference(x, *weights)[1], rtol=1e-5, atol=1e-6)


def test_set_weights_roundtrip_and_builds_unbuilt_layer(make_weights):
    weights = make_weights(6, 3, np.float64)
    layer = fastlstm.LSTM(3)
    layer.set_weights(weights)
    assert layer.built and layer.input_dim == 6
    for got, want in zip(layer.get_weights(), weights, strict=True):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want.astype(np.float32))
    # get_weights returns copies: editing them does not change the layer
    layer.get_weights()[0][...] = 0
    assert np.any(layer.kernel != 0)


def test_weights_cannot_be_edited_in_place():
    layer = fastlstm.LSTM(2)
    layer.build(3)
    with pytest.raises(ValueError):
        layer.kernel[0, 0] = 1.0


def test_set_weights_does_not_alias_callers_arrays(make_weights):
    weights = make_weights(3, 2)
    layer = fastlstm.LSTM(2)
    layer.set_weights(weights)
    weights[0][...] = 0
    assert np.any(layer.kernel != 0)


def test_unbuilt_layer_has_no_weights():
    layer = fastlstm.LSTM(3)
    for call in (layer.get_weights, layer.count_params, lambda: layer.kernel):
        with pytest.raises(ValueError, match="no weights yet"):
            call()


# --------------------------------------------------------------- initializers
def test_default_initializers_follow_keras():
    layer = fastlstm.LSTM(8, seed=0)
    layer.build(5)
    kernel, recurrent_kernel, bias = layer.get_weights()
    limit = np.sqrt(6 / (5 + 32))                       # glorot_uniform
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.8 * limit
    # orthogonal (8, 32): rows are orthonormal
    np.testing.assert_allclose(recurrent_kernel @ recurrent_kernel.T, np.eye(8), atol=1e-5)
    # zeros with unit_forget_bias: ones in the forget block only
    np.testing.assert_array_equal(bias, np.r_[np.zeros(8), np.ones(8), np.zeros(16)])


def test_initializer_options():
    layer = fastlstm.LSTM(3, kernel_initializer="ones", recurrent_initializer="zeros",
                          bias_initializer="ones", unit_forget_bias=False)
    layer.build(2)
    np.testing.assert_array_equal(layer.kernel, np.ones((2, 12)))
    np.testing.assert_array_equal(layer.recurrent_kernel, np.zeros((3, 12)))
    np.testing.assert_array_equal(layer.bias, np.ones(12))
    custom = fastlstm.LSTM(3, kernel_initializer=lambda shape, dtype: np.full(shape, 0.5, dtype))
    custom.build(2)
    np.testing.assert_array_equal(custom.kernel, np.full((2, 12), 0.5))


def test_seed_reproducible():
    def weights(seed):
        layer = fastlstm.LSTM(4, seed=seed)
        layer.build(3)
        return layer.get_weights()

    for a, b in zip(weights(1), weights(1), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(weights(1)[0], weights(2)[0])


# ------------------------------------------------------- inputs, dtypes, edges
def test_float64_layer(make_weights, tol):
    weights = make_weights(4, 3, np.float64)
    layer = fastlstm.LSTM(3, dtype="float64", return_sequences=True)
    layer.set_weights(weights)
    x = np.random.default_rng(1).normal(size=(2, 5, 4))
    out = layer(x)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, reference(x, *weights)[0], **tol(np.float64))


@pytest.mark.parametrize("values", [
    lambda x: x.astype(bool), lambda x: (x * 3).astype(np.int16),
    lambda x: x.astype(np.float16), lambda x: x.tolist()])
def test_array_likes_are_cast(values, make_weights, tol):
    weights = make_weights(3, 2)
    layer = fastlstm.LSTM(2)
    layer.set_weights(weights)
    x = values(np.random.default_rng(2).uniform(-1, 1, (4, 5, 3)))
    expected = reference(np.asarray(x, np.float32), *weights)[1]
    np.testing.assert_allclose(layer(x), expected, **tol(np.float32))


def test_layouts_and_readonly_inputs_are_not_written(make_weights):
    weights = make_weights(3, 4)
    layer = fastlstm.LSTM(4, return_sequences=True, return_state=True)
    layer.set_weights(weights)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 6, 3)).astype(np.float32)
    h0, c0 = rng.normal(size=(2, 5, 4)).astype(np.float32)
    mask = rng.random((5, 6)) > 0.3
    expected = layer(x, mask=mask, initial_state=[h0, c0])

    fortran = np.asfortranarray(x)
    strided = np.repeat(x, 2, axis=1)[:, ::2]
    frozen = x.copy()
    frozen.flags.writeable = False
    h_frozen, c_frozen = h0.copy(), c0.copy()
    h_frozen.flags.writeable = c_frozen.flags.writeable = False
    for variant in (fortran, strided, frozen):
        got = layer(variant, mask=mask, initial_state=[h_frozen, c_frozen])
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(frozen, x)
    np.testing.assert_array_equal(h_frozen, h0)
    # a writable caller's state is not used as the kernel's buffer either
    h_copy, c_copy = h0.copy(), c0.copy()
    layer(x, initial_state=[h_copy, c_copy])
    np.testing.assert_array_equal(h_copy, h0)
    np.testing.assert_array_equal(c_copy, c0)


@pytest.mark.parametrize("sequences", [False, True])
def test_empty_batch(sequences):
    layer = fastlstm.LSTM(3, return_sequences=sequences, return_state=True)
    out, h, c = layer(np.zeros((0, 5, 2)))
    assert out.shape == ((0, 5, 3) if sequences else (0, 3))
    assert h.shape == c.shape == (0, 3)


def test_zero_timesteps_keeps_the_initial_state():
    """No step ran: the output is zeros (as for an all-masked sequence) and the
    states are the initial ones."""
    layer = fastlstm.LSTM(3, return_sequences=True, return_state=True)
    h0 = np.full((2, 3), 0.5, np.float32)
    c0 = np.full((2, 3), -0.25, np.float32)
    seq, h, c = layer(np.zeros((2, 0, 4)), initial_state=[h0, c0])
    assert seq.shape == (2, 0, 3)
    np.testing.assert_array_equal(h, h0)
    np.testing.assert_array_equal(c, c0)
    last, _, _ = fastlstm.LSTM(3, return_state=True)(np.zeros((2, 0, 4)),
                                                     initial_state=[h0, c0])
    np.testing.assert_array_equal(last, np.zeros((2, 3)))


def test_nan_input_propagates_without_crashing():
    x = np.zeros((2, 3, 4))
    x[0, 1, 2] = np.nan
    out = fastlstm.LSTM(3, seed=0)(x)
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()


def test_repr():
    layer = fastlstm.LSTM(3)
    assert "units=3" in repr(layer)
    layer.build(2)
    assert "input_dim=2" in repr(layer)
