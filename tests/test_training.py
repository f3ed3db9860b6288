"""Gradients of ``LSTM(..., training=True)`` / ``LSTM.backward``.

Checked three ways: central finite differences of the NumPy reference
(float64, every input, initial state and weight), PyTorch autograd through
a step-by-step torch transcription of the same equations (every activation,
mask, direction; float32 and float64), and ``torch.nn.LSTM`` itself after
moving the weights.

Gradients are compared at the outputs' tolerances (the ``tol`` fixture):
over these sizes they hold with room to spare.
"""
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastlstm
from fastlstm import _kernel, reference

TORCH_ACTIVATIONS = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    # Keras 3's definition; torch's own hardsigmoid differentiates with a
    # float32 1/6 even in float64.
    "hard_sigmoid": lambda z: torch.nn.functional.relu6(z + 3) / 6,
    "relu": torch.relu,
    "linear": lambda z: z,
    # The rest as Keras 3 defines them (keras.activations, default arguments).
    "elu": torch.nn.functional.elu,
    "selu": torch.nn.functional.selu,
    "gelu": torch.nn.functional.gelu,             # approximate="none": the erf form
    "silu": torch.nn.functional.silu,
    "softplus": lambda z: torch.logaddexp(torch.zeros_like(z), z),
    "softsign": torch.nn.functional.softsign,
    "exponential": torch.exp,
    "relu6": torch.nn.functional.relu6,
    "leaky_relu": lambda z: torch.nn.functional.leaky_relu(z, 0.2),
    "hard_silu": lambda z: z * torch.nn.functional.relu6(z + 3) / 6,
    "mish": torch.nn.functional.mish,
}
B, T, F, U = 3, 5, 4, 3


def torch_lstm(x, h, c, kernel, recurrent_kernel, bias, mask=None, go_backwards=False,
               activation="tanh", recurrent_activation="sigmoid", input_masks=None,
               recurrent_masks=None):
    """Keras's LSTM written step by step in torch, for autograd.

    ``input_masks`` (1 or 4, B, F) / ``recurrent_masks`` (4, B, U) are dropout
    masks applied per gate block as Keras's LSTMCell does."""
    act, rec_act = TORCH_ACTIVATIONS[activation], TORCH_ACTIVATIONS[recurrent_activation]
    units = recurrent_kernel.shape[0]
    blocks = lambda w: torch.split(w, units, dim=-1)  # noqa: E731
    output = torch.zeros_like(h)
    sequence = []
    steps = range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])
    for t in steps:
        xt = x[:, t]
        xs = [xt * m for m in input_masks] if input_masks is not None else [xt]
        hs = [h * m for m in recurrent_masks] if recurrent_masks is not None else [h]
        z = [xs[g % len(xs)] @ k + hs[g % len(hs)] @ r + b
             for g, (k, r, b) in enumerate(zip(blocks(kernel), blocks(recurrent_kernel),
                                               blocks(bias), strict=True))]
        c_new = rec_act(z[1]) * c + rec_act(z[0]) * act(z[2])
        h_new = rec_act(z[3]) * act(c_new)
        if mask is None:
            h, c, output = h_new, c_new, h_new
        else:
            keep = torch.as_tensor(mask[:, t, None])
            h, c = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
            output = torch.where(keep, h_new, output)
        sequence.append(output)
    return torch.stack(sequence, 1), output, h, c


def _case(dtype, seed, with_mask, with_state):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, F)).astype(dtype)
    state = ([rng.normal(size=(B, U)).astype(dtype) for _ in range(2)]
             if with_state else None)
    mask = None
    if with_mask:
        mask = rng.random((B, T)) > 0.4
        mask[0] = False             # a row that never runs
        mask[1, -2:] = False        # trailing masked steps
    return x, state, mask


def _output_weights(layer, batch, timesteps, seed):
    """Random cotangents shaped like the layer's outputs (the loss is their
    dot product with the outputs)."""
    rng = np.random.default_rng(seed)
    shape = (batch, timesteps, layer.units) if layer.return_sequences else (batch, layer.units)
    weights = [rng.normal(size=shape), rng.normal(size=(batch, layer.units)),
               rng.normal(size=(batch, layer.units))]
    return weights if layer.return_state else weights[0]


def _as_list(value):
    return value if isinstance(value, list) else [value]


RETURN_MODES = list(itertools.product([False, True], [False, True]))


@pytest.mark.parametrize("return_sequences, return_state", RETURN_MODES)
@pytest.mark.parametrize("with_mask, with_state, go_backwards",
                         [(False, False, False), (True, True, False),
                          (True, False, True), (False, True, True)])
def test_finite_differences(make_weights, return_sequences, return_state, with_mask,
                            with_state, go_backwards):
    x, state, mask = _case(np.float64, 1, with_mask, with_state)
    layer = fastlstm.LSTM(U, return_sequences=return_sequences, return_state=return_state,
                          go_backwards=go_backwards, dtype="float64")
    weights = make_weights(F, U, np.float64, seed=2)
    layer.set_weights(weights)
    cotangents = _output_weights(layer, B, T, seed=3)
    layer(x, mask=mask, initial_state=state, training=True)
    d_x, d_h0, d_c0 = layer.backward(cotangents)

    h0, c0 = state if state is not None else (np.zeros((B, U)), np.zeros((B, U)))
    arrays = [x, h0, c0] + weights
    analytic = [d_x, d_h0, d_c0] + layer.grads

    def loss():
        sequence, last, h, c = reference.lstm(
            x, *weights, initial_state=[h0, c0], mask=mask, go_backwards=go_backwards)
        outputs = [sequence if return_sequences else last, h, c][:3 if return_state else 1]
        return sum(np.vdot(o, w) for o, w in zip(outputs, _as_list(cotangents), strict=True))

    eps = 1e-6
    for array, gradient in zip(arrays, analytic, strict=True):
        numeric = np.empty_like(array)
        for index in np.ndindex(array.shape):
            saved = array[index]
            array[index] = saved + eps
            plus = loss()
            array[index] = saved - eps
            minus = loss()
            array[index] = saved
            numeric[index] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation, recurrent_activation",
                         [("tanh", "sigmoid"), ("relu", "hard_sigmoid"),
                          ("linear", "tanh"), ("sigmoid", "linear")])
@pytest.mark.parametrize("with_mask, with_state, go_backwards",
                         [(False, False, False), (True, True, False), (True, True, True)])
@pytest.mark.parametrize("return_sequences, return_state", RETURN_MODES)
def test_matches_torch_autograd(make_weights, tol, dtype, activation, recurrent_activation,
                                with_mask, with_state, go_backwards, return_sequences,
                                return_state):
    x, state, mask = _case(dtype, 4, with_mask, with_state)
    layer = fastlstm.LSTM(U, activation=activation,
                          recurrent_activation=recurrent_activation,
                          return_sequences=return_sequences, return_state=return_state,
                          go_backwards=go_backwards, dtype=dtype)
    weights = make_weights(F, U, dtype, seed=5)
    layer.set_weights(weights)
    cotangents = _output_weights(layer, B, T, seed=6)
    outputs = _as_list(layer(x, mask=mask, initial_state=state, training=True))
    saved = [w.copy() for w in _as_list(cotangents)]
    grads = layer.backward(cotangents) + layer.grads
    for before, after in zip(saved, _as_list(cotangents), strict=True):
        np.testing.assert_array_equal(before, after)    # never written to

    h0, c0 = state if state is not None else (np.zeros((B, U), dtype),) * 2
    leaves = [torch.tensor(a, requires_grad=True) for a in [x, h0, c0] + weights]
    sequence, last, h, c = torch_lstm(*leaves, mask=mask, go_backwards=go_backwards,
                                      activation=activation,
                                      recurrent_activation=recurrent_activation)
    expected = [sequence if return_sequences else last, h, c][:len(outputs)]
    loss = sum((e * torch.tensor(w, dtype=e.dtype)).sum()
               for e, w in zip(expected, _as_list(cotangents), strict=True))
    loss.backward()
    for ours, theirs in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(ours, theirs.detach().numpy(),
                                   **tol(dtype))
    for ours, leaf in zip(grads, leaves, strict=True):
        np.testing.assert_allclose(ours, leaf.grad.numpy(), **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_matches_torch_nn_lstm(make_weights, tol, dtype, go_backwards):
    """``torch.nn.LSTM`` on the same weights; go_backwards is its reversed
    input with the outputs in processing order."""
    batch, timesteps, features, units = 4, 9, 6, 5
    rng = np.random.default_rng(7)
    x = rng.normal(size=(batch, timesteps, features)).astype(dtype)
    h0, c0 = (rng.normal(size=(batch, units)).astype(dtype) for _ in range(2))
    kernel, recurrent_kernel, bias = make_weights(features, units, dtype, seed=8)
    layer = fastlstm.LSTM(units, return_sequences=True, return_state=True,
                          go_backwards=go_backwards, dtype=dtype)
    layer.set_weights([kernel, recurrent_kernel, bias])
    cotangents = [rng.normal(size=(batch, timesteps, units)),
                  rng.normal(size=(batch, units)), rng.normal(size=(batch, units))]
    layer(x, initial_state=[h0, c0], training=True)
    d_x, d_h0, d_c0 = layer.backward(cotangents)

    torch_dtype = torch.float32 if dtype == np.float32 else torch.float64
    lstm = torch.nn.LSTM(features, units, batch_first=True, dtype=torch_dtype)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.tensor(kernel.T))
        lstm.weight_hh_l0.copy_(torch.tensor(recurrent_kernel.T))
        lstm.bias_ih_l0.copy_(torch.tensor(bias))
        lstm.bias_hh_l0.zero_()
    xt = torch.tensor(x, requires_grad=True)
    states = [torch.tensor(s[None], requires_grad=True) for s in (h0, c0)]
    sequence, (h, c) = lstm(xt.flip(1) if go_backwards else xt, tuple(states))
    loss = sum((o * torch.tensor(w, dtype=torch_dtype)).sum()
               for o, w in zip([sequence, h[0], c[0]], cotangents, strict=True))
    loss.backward()
    tolerance = tol(dtype)
    np.testing.assert_allclose(d_x, xt.grad.numpy(), **tolerance)
    np.testing.assert_allclose(d_h0, states[0].grad[0].numpy(), **tolerance)
    np.testing.assert_allclose(d_c0, states[1].grad[0].numpy(), **tolerance)
    for ours, theirs in zip(layer.grads, [lstm.weight_ih_l0.grad.T, lstm.weight_hh_l0.grad.T,
                                          lstm.bias_ih_l0.grad], strict=True):
        np.testing.assert_allclose(ours, theirs.numpy(), **tolerance)


def test_training_forward_equals_inference(make_weights, tol):
    x, state, mask = _case(np.float32, 9, True, True)
    layer = fastlstm.LSTM(U, return_sequences=True, return_state=True)
    layer.set_weights(make_weights(F, U, np.float32, seed=10))
    inference = layer(x, mask=mask, initial_state=state)
    trained = layer(x, mask=mask, initial_state=state, training=True)
    for a, b in zip(trained, inference, strict=True):
        np.testing.assert_allclose(a, b, **tol(np.float32))


def test_no_bias_and_none_cotangents(make_weights, tol):
    """use_bias=False drops the bias gradient; None entries are zero
    cotangents; backward can be repeated (also without the input gradient)
    and leaves the inputs alone."""
    x, state, _ = _case(np.float64, 11, False, True)
    kernel, recurrent_kernel, _ = make_weights(F, U, np.float64, seed=12)
    layer = fastlstm.LSTM(U, use_bias=False, return_state=True, dtype="float64")
    layer.set_weights([kernel, recurrent_kernel])
    x_before = x.copy()
    layer(x, initial_state=state, training=True)
    d_c = np.random.default_rng(13).normal(size=(B, U))
    first = layer.backward([None, None, d_c])
    grads = layer.grads
    without_input = layer.backward([None, None, d_c], input_gradient=False)
    assert without_input[0] is None
    for a, b in zip(first[1:] + grads, without_input[1:] + layer.grads, strict=True):
        np.testing.assert_array_equal(a, b)
    second = layer.backward([np.zeros((B, U)), None, d_c])
    assert len(grads) == 2
    np.testing.assert_array_equal(x, x_before)
    for a, b in zip(first + grads, second + layer.grads, strict=True):
        np.testing.assert_array_equal(a, b)
    leaves = [torch.tensor(a, requires_grad=True)
              for a in [x, *state, kernel, recurrent_kernel]]
    *_, c = torch_lstm(*leaves, torch.zeros(4 * U, dtype=torch.float64))
    (c * torch.tensor(d_c)).sum().backward()
    for ours, leaf in zip(first + grads, leaves, strict=True):
        np.testing.assert_allclose(ours, leaf.grad.numpy(), **tol(np.float64))


@pytest.mark.parametrize("batch, timesteps", [(0, 3), (2, 0)])
def test_empty_inputs(batch, timesteps):
    layer = fastlstm.LSTM(2, return_sequences=True, return_state=True, dtype="float64")
    x = np.zeros((batch, timesteps, 3))
    state = [np.ones((batch, 2)), np.ones((batch, 2))]
    layer(x, initial_state=state, training=True)
    d_h, d_c = np.full((batch, 2), 2.0), np.full((batch, 2), 3.0)
    d_x, d_h0, d_c0 = layer.backward([np.ones((batch, timesteps, 2)), d_h, d_c])
    assert d_x.shape == x.shape and not d_x.any()
    np.testing.assert_array_equal(d_h0, d_h)   # the states pass through untouched
    np.testing.assert_array_equal(d_c0, d_c)
    assert not any(g.any() for g in layer.grads)


def test_backward_errors():
    layer = fastlstm.LSTM(2, return_state=True)
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(None)
    layer(np.ones((2, 3, 4)))             # inference records nothing
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(None)
    layer(np.ones((2, 3, 4)), training=True)
    with pytest.raises(ValueError, match="d_outputs must be a list"):
        layer.backward(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"d_outputs\[1\] must have shape \(2, 2\)"):
        layer.backward([None, np.ones((2, 3)), None])
    with pytest.raises(TypeError, match="d_outputs"):
        layer.backward([None, None, np.array([["a", "b"]] * 2)])


# ------------------------------------------------------------------ dropout
DROPOUT_CASES = [(0.3, 0.0), (0.0, 0.4), (0.25, 0.5)]


@pytest.mark.parametrize("rate, recurrent_rate", DROPOUT_CASES)
@pytest.mark.parametrize("with_mask", [False, True])
def test_dropout_matches_keras(make_weights, tol, rate, recurrent_rate, with_mask):
    """Keras 3's LSTM (torch backend) fed the masks our layer drew gives the
    same outputs and the same gradients for inputs and weights."""
    _dropout_against_keras(make_weights, tol, np.float32, rate, recurrent_rate, with_mask)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_matches_keras_every_isa(isa, make_weights, tol, dtype):
    """The same, per instruction set and dtype, with both kinds of dropout."""
    _dropout_against_keras(make_weights, tol, dtype, 0.25, 0.5, True)


def _dropout_against_keras(make_weights, tol, dtype, rate, recurrent_rate, with_mask):
    import keras

    # Keras's step-by-step LSTM (the one that takes dropout masks) is itself
    # off by 2e-8 to 5e-8 in float64 (measured against the NumPy reference
    # without dropout, implementations 1 and 2, torch backend): compared at
    # float32's tolerance.  float64 dropout is held at 1e-10 against the
    # NumPy reference and torch autograd in test_dropout_every_isa.
    keras_tol = tol(np.float32)

    x, state, mask = _case(dtype, 14, with_mask, True)
    weights = make_weights(F, U, dtype, seed=15)
    layer = fastlstm.LSTM(U, return_sequences=True, return_state=True, dropout=rate,
                          recurrent_dropout=recurrent_rate, seed=16, dtype=dtype)
    layer.set_weights(weights)
    cotangents = _output_weights(layer, B, T, seed=17)
    outputs = layer(x, mask=mask, initial_state=state, training=True)
    grads = layer.backward(cotangents)[:1] + layer.grads
    input_masks, recurrent_masks = layer._tape.input_masks, layer._tape.recurrent_masks
    # Keras's shapes: one (B, F) input mask without recurrent dropout, else a
    # list of four per gate (its implementation 1); four recurrent masks.
    assert (input_masks is None) == (rate == 0)
    assert (recurrent_masks is None) == (recurrent_rate == 0)
    if input_masks is not None:
        assert input_masks.shape == ((4 if recurrent_rate else 1), B, F)
        kept = input_masks != 0
        np.testing.assert_allclose(input_masks[kept], 1 / (1 - rate), **tol(dtype))

    klayer = keras.layers.LSTM(U, return_sequences=True, return_state=True, dropout=rate,
                               recurrent_dropout=recurrent_rate, seed=16,
                               dtype=np.dtype(dtype).name)
    klayer.build((B, T, F))
    klayer.set_weights(weights)
    to_keras = lambda masks: (  # noqa: E731
        None if masks is None else
        torch.tensor(masks[0]) if len(masks) == 1 else [torch.tensor(m) for m in masks])
    klayer.cell.get_dropout_mask = lambda step_input: to_keras(input_masks)
    klayer.cell.get_recurrent_dropout_mask = lambda step_input: to_keras(recurrent_masks)
    xt = torch.tensor(x, requires_grad=True)
    expected = klayer(xt, mask=None if mask is None else torch.tensor(mask),
                      initial_state=[torch.tensor(s) for s in state], training=True)
    loss = sum((e * torch.tensor(w, dtype=e.dtype)).sum()
               for e, w in zip(expected, cotangents, strict=True))
    loss.backward()
    for ours, theirs in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), **keras_tol)
    keras_grads = [xt.grad] + [v.value.grad for v in klayer.weights]
    for ours, theirs in zip(grads, keras_grads, strict=True):
        np.testing.assert_allclose(ours, theirs.numpy(), **keras_tol)


@pytest.mark.parametrize("rate, recurrent_rate", DROPOUT_CASES)
def test_dropout_gradients_match_torch_autograd(make_weights, tol, rate, recurrent_rate):
    x, state, mask = _case(np.float64, 18, True, True)
    weights = make_weights(F, U, np.float64, seed=19)
    layer = fastlstm.LSTM(U, return_sequences=True, go_backwards=True, dropout=rate,
                          recurrent_dropout=recurrent_rate, seed=20, dtype="float64")
    layer.set_weights(weights)
    cotangent = _output_weights(layer, B, T, seed=21)
    layer(x, mask=mask, initial_state=state, training=True)
    grads = layer.backward(cotangent) + layer.grads
    tape = layer._tape
    leaves = [torch.tensor(a, requires_grad=True) for a in [x, *state] + weights]
    to_torch = lambda masks: None if masks is None else torch.tensor(masks)  # noqa: E731
    sequence, *_ = torch_lstm(*leaves, mask=mask, go_backwards=True,
                              input_masks=to_torch(tape.input_masks),
                              recurrent_masks=to_torch(tape.recurrent_masks))
    (sequence * torch.tensor(cotangent)).sum().backward()
    for ours, leaf in zip(grads, leaves, strict=True):
        np.testing.assert_allclose(ours, leaf.grad.numpy(), **tol(np.float64))


def test_dropout_is_reproducible_and_training_only(make_weights, tol):
    x = np.random.default_rng(22).normal(size=(8, 6, F))
    weights = make_weights(F, U, np.float64, seed=23)

    def layer(seed):
        result = fastlstm.LSTM(U, return_sequences=True, dropout=0.5, recurrent_dropout=0.5,
                               seed=seed, dtype="float64")
        result.set_weights(weights)
        return result

    first, again, other = layer(1), layer(1), layer(2)
    runs = [first(x, training=True), first(x, training=True)]
    np.testing.assert_array_equal(runs[0], again(x, training=True))   # same seed
    np.testing.assert_array_equal(runs[1], again(x, training=True))
    assert not np.allclose(runs[0], runs[1])              # fresh masks per call
    assert not np.allclose(runs[0], other(x, training=True))
    plain = reference.lstm(x, *weights)[0]
    np.testing.assert_allclose(first(x), plain, **tol(np.float64))   # inference: none
    # One mask per gate block and sequence, kept entries scaled by 1 / (1 - rate).
    masks = first._tape.input_masks
    assert masks.shape == (4, 8, F) and set(np.unique(masks)) == {0.0, 2.0}


@pytest.mark.parametrize("argument", ["dropout", "recurrent_dropout"])
@pytest.mark.parametrize("value, error", [(1.0, ValueError), (-0.1, ValueError),
                                          ("0.5", TypeError), (True, TypeError)])
def test_dropout_rate_validation(argument, value, error):
    with pytest.raises(error, match=argument):
        fastlstm.LSTM(2, **{argument: value})


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 4), timesteps=st.integers(1, 6), features=st.integers(1, 4),
       units=st.integers(1, 5), go_backwards=st.booleans(), use_mask=st.booleans(),
       recurrent_rate=st.sampled_from([0.0, 0.5]), seed=st.integers(0, 2**16))
def test_gradients_over_shapes_and_flags(batch, timesteps, features, units, go_backwards,
                                         use_mask, recurrent_rate, seed):
    """Random sizes and flags, float64, every output used: torch autograd."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, timesteps, features))
    state = [rng.normal(size=(batch, units)) for _ in range(2)]
    mask = rng.random((batch, timesteps)) > 0.3 if use_mask else None
    weights = [rng.uniform(-0.5, 0.5, shape) for shape in
               [(features, 4 * units), (units, 4 * units), (4 * units,)]]
    layer = fastlstm.LSTM(units, return_sequences=True, return_state=True,
                          go_backwards=go_backwards, recurrent_dropout=recurrent_rate,
                          seed=seed, dtype="float64")
    layer.set_weights(weights)
    cotangents = [rng.normal(size=(batch, timesteps, units)),
                  rng.normal(size=(batch, units)), rng.normal(size=(batch, units))]
    layer(x, mask=mask, initial_state=state, training=True)
    grads = layer.backward(cotangents) + layer.grads
    recurrent_masks = layer._tape.recurrent_masks
    leaves = [torch.tensor(a, requires_grad=True) for a in [x, *state] + weights]
    sequence, _, h, c = torch_lstm(
        *leaves, mask=mask, go_backwards=go_backwards,
        recurrent_masks=None if recurrent_masks is None else torch.tensor(recurrent_masks))
    loss = sum((o * torch.tensor(w)).sum()
               for o, w in zip([sequence, h, c], cotangents, strict=True))
    loss.backward()
    for ours, leaf in zip(grads, leaves, strict=True):
        np.testing.assert_allclose(ours, leaf.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_propagate_like_the_reference(make_weights, dtype):
    """Non-finite inputs give the reference's NaN pattern and never leak
    into the rows (samples) that do not contain them."""
    x = np.random.default_rng(24).normal(size=(4, 4, F)).astype(dtype)
    x[0, 1, 0] = np.nan
    x[1, 2, :] = np.inf
    x[2, 0, 1] = -np.inf
    weights = make_weights(F, U, dtype, seed=25)
    layer = fastlstm.LSTM(U, return_sequences=True, dtype=dtype)
    layer.set_weights(weights)
    with np.errstate(invalid="ignore", over="ignore"):
        expected = reference.lstm(x, *weights)[0]
    out = layer(x, training=True)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    d_x = layer.backward(np.ones_like(out))[0]
    assert np.isnan(d_x[0]).any()
    assert np.isfinite(d_x[3]).all() and np.isfinite(out[3]).all()


# ------------------------------------------- packed path: ISAs, threads, shapes
# (the `isa` fixture, one instruction set at a time, is in conftest.py)


def _record_and_backprop(weights, x, state, mask, cotangents, go_backwards=False,
                         num_threads=None, activation="tanh", recurrent_activation="sigmoid",
                         dropout=0.0, recurrent_dropout=0.0):
    """fastlstm's outputs and every gradient (dx, dh0, dc0, weights), and the tape."""
    layer = fastlstm.LSTM(weights[1].shape[0], return_sequences=True, return_state=True,
                          go_backwards=go_backwards, dtype=x.dtype, num_threads=num_threads,
                          activation=activation, recurrent_activation=recurrent_activation,
                          dropout=dropout, recurrent_dropout=recurrent_dropout, seed=0)
    layer.set_weights(weights)
    outputs = layer(x, mask=mask, initial_state=state, training=True)
    grads = layer.backward([c.copy() for c in cotangents]) + layer.grads
    return outputs + grads, layer._tape


# Units below, at and between the vector widths (W = 16 / 8 / 4 floats and
# 4 W per backward group), batch 1, batches with partial row tiles, and 128
# features (512-byte rows, which the packed path pads).
PACKED_SHAPES = [(1, 7, 3, 1), (5, 6, 4, 13), (7, 5, 3, 33), (3, 4, 5, 70), (13, 3, 2, 16),
                 (2, 3, 128, 32)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", PACKED_SHAPES, ids=str)
@pytest.mark.parametrize("with_mask, go_backwards", [(False, False), (True, True)])
def test_packed_path_matches_torch_autograd(isa, tol, dtype, shape, with_mask, go_backwards):
    """Every instruction set's tiles, float32 and float64, against torch
    autograd, with odd sizes, masks and go_backwards."""
    batch, timesteps, features, units = shape
    rng = np.random.default_rng(26)
    x = rng.normal(size=(batch, timesteps, features)).astype(dtype)
    state = [rng.normal(size=(batch, units)).astype(dtype) for _ in range(2)]
    mask = None
    if with_mask:
        mask = rng.random((batch, timesteps)) > 0.3
        mask[0, -1] = False          # a trailing masked step
    weights = [(rng.uniform(-0.5, 0.5, s) / np.sqrt(units)).astype(dtype)
               for s in [(features, 4 * units), (units, 4 * units), (4 * units,)]]
    cotangents = [rng.normal(size=(batch, timesteps, units)),
                  rng.normal(size=(batch, units)), rng.normal(size=(batch, units))]
    ours, tape = _record_and_backprop(weights, x, state, mask, cotangents, go_backwards)
    assert tape.packed.isa == isa

    leaves = [torch.tensor(a, requires_grad=True) for a in [x, *state] + weights]
    sequence, _, h, c = torch_lstm(*leaves, mask=mask, go_backwards=go_backwards)
    loss = sum((o * torch.tensor(w, dtype=o.dtype)).sum()
               for o, w in zip([sequence, h, c], cotangents, strict=True))
    loss.backward()
    expected = [sequence, h, c] + [leaf.grad for leaf in leaves]
    for a, e in zip(ours, expected, strict=True):
        np.testing.assert_allclose(a, e.detach().numpy(), **tol(dtype))


@pytest.mark.parametrize("activation, recurrent_activation",
                         [("relu", "hard_sigmoid"), ("linear", "tanh"), ("sigmoid", "linear")])
def test_packed_path_every_activation(isa, tol, activation, recurrent_activation):
    """The SIMD tiles' general activation code (not the tanh/sigmoid path)."""
    rng = np.random.default_rng(27)
    batch, timesteps, features, units = 4, 5, 3, 19
    x = rng.normal(size=(batch, timesteps, features)).astype(np.float32)
    state = [rng.normal(size=(batch, units)).astype(np.float32) for _ in range(2)]
    mask = rng.random((batch, timesteps)) > 0.3
    weights = [(rng.uniform(-0.3, 0.3, s) / np.sqrt(units)).astype(np.float32)
               for s in [(features, 4 * units), (units, 4 * units), (4 * units,)]]
    cotangents = [rng.normal(size=(batch, timesteps, units)),
                  rng.normal(size=(batch, units)), rng.normal(size=(batch, units))]
    ours, _ = _record_and_backprop(weights, x, state, mask, cotangents,
                                   activation=activation,
                                   recurrent_activation=recurrent_activation)
    leaves = [torch.tensor(a, requires_grad=True) for a in [x, *state] + weights]
    sequence, _, h, c = torch_lstm(*leaves, mask=mask, activation=activation,
                                   recurrent_activation=recurrent_activation)
    loss = sum((o * torch.tensor(w, dtype=o.dtype)).sum()
               for o, w in zip([sequence, h, c], cotangents, strict=True))
    loss.backward()
    expected = [sequence, h, c] + [leaf.grad for leaf in leaves]
    for a, e in zip(ours, expected, strict=True):
        np.testing.assert_allclose(a, e.detach().numpy(), **tol(np.float32))


# (batch, timesteps, features, units), each big enough for a team of threads.
THREAD_SHAPES = [(37, 20, 7, 45), (3, 60, 5, 77), (8, 30, 6, 128)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", THREAD_SHAPES, ids=str)
@pytest.mark.parametrize("with_mask", [False, True])
def test_packed_path_threads_bitwise_identical(isa, shape, with_mask, dtype):
    batch, timesteps, features, units = shape
    assert _kernel.plan(batch, timesteps, features, units, 3, training=True) == (3, "rows")
    rng = np.random.default_rng(28)
    x = rng.normal(size=(batch, timesteps, features)).astype(dtype)
    state = [rng.normal(size=(batch, units)).astype(dtype) for _ in range(2)]
    mask = rng.random((batch, timesteps)) > 0.2 if with_mask else None
    weights = [(rng.uniform(-0.5, 0.5, s) / np.sqrt(units)).astype(dtype)
               for s in [(features, 4 * units), (units, 4 * units), (4 * units,)]]
    cotangents = [rng.normal(size=(batch, timesteps, units)).astype(dtype),
                  rng.normal(size=(batch, units)).astype(dtype),
                  rng.normal(size=(batch, units)).astype(dtype)]
    runs = [_record_and_backprop(weights, x, state, mask, cotangents, num_threads=n)[0]
            for n in (1, 2, 3)]
    for n, run in zip((2, 3), runs[1:], strict=True):
        for a, b in zip(runs[0], run, strict=True):
            assert np.array_equal(a, b), f"num_threads={n} differs from num_threads=1"


def test_small_problems_run_on_one_thread():
    def threads(batch, timesteps, units):
        return _kernel.plan(batch, timesteps, 64, units, 2, training=True)[0]

    assert threads(100, 4, 16) == 1      # a team costs more than it saves
    assert threads(1, 1000, 128) == 1    # one row
    assert threads(8, 1000, 128) == 2


def test_one_pack_for_every_dropout(make_weights):
    """Training with or without dropout runs on the layer's pack, which
    training and inference calls share."""
    x = np.random.default_rng(29).normal(size=(2, 3, F)).astype(np.float32)
    for dropout, recurrent_dropout in [(0, 0), (0.5, 0), (0, 0.5), (0.5, 0.5)]:
        layer = fastlstm.LSTM(U, dropout=dropout, recurrent_dropout=recurrent_dropout)
        layer.set_weights(make_weights(F, U, np.float32, seed=30))
        layer(x, training=True)
        pack = layer._packed
        assert pack is layer._tape.packed
        layer(x)
        layer(x, training=True)
        assert layer._packed is pack


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("units", [3, 19])
def test_dropout_every_isa(isa, tol, dtype, units):
    """Dropout on each instruction set's tiles (per-gate copies of x and h,
    the per-gate backward product), float32 and float64, units below and
    between vector widths, with a mask and go_backwards: outputs against the
    NumPy reference given the same masks, gradients against torch autograd."""
    rng = np.random.default_rng(31)
    x = rng.normal(size=(B, T, F)).astype(dtype)
    state = [rng.normal(size=(B, units)).astype(dtype) for _ in range(2)]
    mask = rng.random((B, T)) > 0.3
    weights = [rng.uniform(-0.5, 0.5, s).astype(dtype)
               for s in [(F, 4 * units), (units, 4 * units), (4 * units,)]]
    cotangents = [rng.normal(size=(B, T, units)).astype(dtype),
                  rng.normal(size=(B, units)).astype(dtype),
                  rng.normal(size=(B, units)).astype(dtype)]
    layer = fastlstm.LSTM(units, return_sequences=True, return_state=True, go_backwards=True,
                          dropout=0.2, recurrent_dropout=0.4, seed=32, dtype=dtype)
    layer.set_weights(weights)
    outputs = layer(x, mask=mask, initial_state=state, training=True)
    grads = layer.backward([c.copy() for c in cotangents]) + layer.grads
    tape = layer._tape
    assert tape.packed.isa == isa
    masks = dict(input_masks=tape.input_masks, recurrent_masks=tape.recurrent_masks)
    sequence, _, h, c = reference.lstm(x, *weights, initial_state=state, mask=mask,
                                       go_backwards=True, **masks)
    for ours, expected in zip(outputs, [sequence, h, c], strict=True):
        np.testing.assert_allclose(ours, expected, **tol(dtype))
    leaves = [torch.tensor(a, requires_grad=True) for a in [x, *state] + weights]
    sequence, _, h, c = torch_lstm(*leaves, mask=mask, go_backwards=True,
                                   **{k: torch.tensor(v) for k, v in masks.items()})
    loss = sum((o * torch.tensor(w)).sum()
               for o, w in zip([sequence, h, c], cotangents, strict=True))
    loss.backward()
    for ours, leaf in zip(grads, leaves, strict=True):
        np.testing.assert_allclose(ours, leaf.grad.numpy(), **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_threads_bitwise_identical(isa, dtype):
    """With input and recurrent dropout (the same masks: same seed), 1, 2 and
    3 threads give the same bits, every output and gradient."""
    batch, timesteps, features, units = THREAD_SHAPES[0]
    rng = np.random.default_rng(33)
    x = rng.normal(size=(batch, timesteps, features)).astype(dtype)
    state = [rng.normal(size=(batch, units)).astype(dtype) for _ in range(2)]
    mask = rng.random((batch, timesteps)) > 0.2
    weights = [(rng.uniform(-0.5, 0.5, s) / np.sqrt(units)).astype(dtype)
               for s in [(features, 4 * units), (units, 4 * units), (4 * units,)]]
    cotangents = [rng.normal(size=(batch, timesteps, units)).astype(dtype),
                  rng.normal(size=(batch, units)).astype(dtype),
                  rng.normal(size=(batch, units)).astype(dtype)]
    runs = [_record_and_backprop(weights, x, state, mask, cotangents, num_threads=n,
                                 dropout=0.25, recurrent_dropout=0.5)
            for n in (1, 2, 3)]
    tape = runs[0][1]
    assert tape.recurrent_masks is not None and len(tape.input_masks) == 4
    for n, (run, _) in zip((2, 3), runs[1:], strict=True):
        for a, b in zip(runs[0][0], run, strict=True):
            assert np.array_equal(a, b), f"num_threads={n} differs from num_threads=1"


# ------------------------------------- every elementwise activation Keras 3 names
NEW_ACTIVATIONS = ["elu", "selu", "gelu", "silu", "softplus", "softsign", "exponential",
                   "relu6", "leaky_relu", "hard_silu", "mish"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NEW_ACTIVATIONS)
def test_training_gradients_match_torch_autograd(isa, tol, activation_problem, name, dtype):
    """The packed tiles' forward record and backward step (the outputs of
    gelu, silu, hard_silu and mish do not determine their inputs: those
    record the inputs)."""
    x, weights, state, mask = activation_problem(dtype, 43, name, (B, T, F, U))
    rng = np.random.default_rng(44)
    cotangents = [rng.normal(size=(B, T, U)).astype(dtype),
                  rng.normal(size=(B, U)).astype(dtype), rng.normal(size=(B, U)).astype(dtype)]
    ours, tape = _record_and_backprop(weights, x, state, mask, cotangents, activation=name,
                                      recurrent_activation=name)
    assert tape.packed.isa == isa
    expected = _torch_outputs_and_grads(name, x, state, weights, mask, cotangents)
    for a, e in zip(ours, expected, strict=True):
        tolerance = tol(dtype)
        if name == "exponential" and dtype == np.float32:
            # Outputs reach 260 here: gradient entries are sums of terms that
            # large, so float32 rounds them to 1e-5 of the largest entry.
            tolerance = dict(tolerance, atol=1e-5 * np.abs(e).max())
        np.testing.assert_allclose(a, e, **tolerance)


def _torch_outputs_and_grads(name, x, state, weights, mask, cotangents, **masks):
    leaves = [torch.tensor(a, requires_grad=True) for a in [x, *state] + weights]
    sequence, _, h, c = torch_lstm(*leaves, mask=mask, activation=name,
                                   recurrent_activation=name, **masks)
    loss = sum((o * torch.tensor(w, dtype=o.dtype)).sum()
               for o, w in zip([sequence, h, c], cotangents, strict=True))
    loss.backward()
    return [t.detach().numpy() for t in [sequence, h, c] + [leaf.grad for leaf in leaves]]


@pytest.mark.parametrize("name", ["gelu", "mish", "elu"])
def test_recurrent_dropout_path_gradients(tol, activation_problem, name):
    """Recurrent dropout (the masked-h variant of the packed tiles) keeps
    the inputs of gelu/mish gates for the backward step too."""
    x, weights, state, mask = activation_problem(np.float64, 45, name, (B, T, F, U))
    layer = fastlstm.LSTM(U, return_sequences=True, return_state=True, activation=name,
                          recurrent_activation=name, recurrent_dropout=0.3, seed=3,
                          dtype="float64")
    layer.set_weights(weights)
    rng = np.random.default_rng(46)
    cotangents = [rng.normal(size=(B, T, U)), rng.normal(size=(B, U)),
                  rng.normal(size=(B, U))]
    outputs = layer(x, mask=mask, initial_state=state, training=True)
    grads = layer.backward([c.copy() for c in cotangents]) + layer.grads
    tape = layer._tape
    assert tape.recurrent_masks is not None
    expected = _torch_outputs_and_grads(name, x, state, weights, mask, cotangents,
                                        recurrent_masks=torch.tensor(tape.recurrent_masks))
    for a, e in zip(list(outputs) + grads, expected, strict=True):
        np.testing.assert_allclose(a, e, **tol(np.float64))
