"""The compiled forward pass against the NumPy reference over a grid of
shapes, flags, dtypes and activations (through the layer, the kernel's only
caller)."""
import itertools

import numpy as np
import pytest

import fastlstm
from fastlstm.activations import CODES
from fastlstm.reference import lstm as reference


def run_both(weights, x, *, dtype, mask=None, state=None, go_backwards=False,
             activation="tanh", recurrent_activation="sigmoid"):
    layer = fastlstm.LSTM(weights[1].shape[0], return_sequences=True, return_state=True,
                          go_backwards=go_backwards, activation=activation,
                          recurrent_activation=recurrent_activation, dtype=dtype)
    layer.set_weights(weights)
    got = layer(x, mask=mask, initial_state=state)
    last = fastlstm.LSTM(weights[1].shape[0], go_backwards=go_backwards, activation=activation,
                         recurrent_activation=recurrent_activation, dtype=dtype)
    last.set_weights(weights)
    want = reference(x, *weights, initial_state=state, mask=mask, go_backwards=go_backwards,
                     activation=activation, recurrent_activation=recurrent_activation)
    return got, last(x, mask=mask, initial_state=state), want


SHAPES = [  # (batch, timesteps, input_dim, units)
    (1, 1, 1, 1), (3, 1, 4, 5), (1, 7, 3, 1), (4, 6, 5, 7), (2, 9, 1, 16),
    (5, 3, 33, 31), (2, 1000, 3, 4),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("masked,with_state,backwards",
                         list(itertools.product([False, True], repeat=3)))
def test_matches_reference(shape, dtype, masked, with_state, backwards, make_weights, tol):
    batch, steps, input_dim, units = shape
    rng = np.random.default_rng(hash(shape) % 2**32)
    weights = make_weights(input_dim, units, dtype, seed=1)
    x = rng.normal(size=(batch, steps, input_dim)).astype(dtype)
    mask = rng.random((batch, steps)) > 0.4 if masked else None
    state = list(rng.normal(size=(2, batch, units)).astype(dtype)) if with_state else None
    (seq, h, c), last, (w_seq, w_last, w_h, w_c) = run_both(
        weights, x, dtype=dtype, mask=mask, state=state, go_backwards=backwards)
    for got, want in ((seq, w_seq), (h, w_h), (c, w_c), (last, w_last)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, **tol(dtype))


# Every pair of the first five; each later one (exponential, which overflows
# with these weights, aside: test_kernel_activations.py scales its problem)
# as the activation beside sigmoid and as the recurrent one beside tanh.
FIRST_FIVE = ["tanh", "sigmoid", "hard_sigmoid", "relu", "linear"]
LATER = sorted(set(CODES) - set(FIRST_FIVE) - {"exponential"})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation,recurrent_activation",
                         list(itertools.product(FIRST_FIVE, repeat=2))
                         + [(name, "sigmoid") for name in LATER]
                         + [("tanh", name) for name in LATER])
def test_every_activation(activation, recurrent_activation, dtype, make_weights, tol):
    rng = np.random.default_rng(5)
    weights = make_weights(4, 6, dtype, seed=2)
    x = rng.normal(size=(3, 8, 4)).astype(dtype)
    mask = rng.random((3, 8)) > 0.2
    (seq, h, c), _, (w_seq, _, w_h, w_c) = run_both(
        weights, x, dtype=dtype, mask=mask, activation=activation,
        recurrent_activation=recurrent_activation)
    for got, want in ((seq, w_seq), (h, w_h), (c, w_c)):
        np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("backwards", [False, True])
def test_long_sequence_spans_several_workspace_chunks(backwards, make_weights, tol):
    """B * T * 4U values exceed the kernel's 32 MiB gate workspace, so the
    input projection runs in time chunks; results must not see the seams."""
    batch, steps, input_dim, units = 64, 300, 8, 128   # 64*300*512*4 B = 39 MB
    rng = np.random.default_rng(9)
    weights = make_weights(input_dim, units, np.float32, seed=3)
    x = rng.normal(size=(batch, steps, input_dim)).astype(np.float32)
    mask = rng.random((batch, steps)) > 0.1
    (seq, h, c), _, (w_seq, _, w_h, w_c) = run_both(
        weights, x, dtype=np.float32, mask=mask, go_backwards=backwards)
    # float32 over 300 steps: rounding differences accumulate through the
    # recurrence, so allow 1e-5 absolute (still ~100 ulps of 1.0).
    for got, want in ((seq, w_seq), (h, w_h), (c, w_c)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_masked_steps_carry_output_and_state(make_weights):
    """Hand-checked corner cases of the mask semantics (Keras TF/torch
    backends): zeros before the first unmasked step even with an initial
    state; a masked step repeats the previous output; an all-masked row keeps
    its initial state and outputs zeros."""
    weights = make_weights(2, 3, np.float64)
    layer = fastlstm.LSTM(3, return_sequences=True, return_state=True, dtype="float64")
    layer.set_weights(weights)
    x = np.random.default_rng(0).normal(size=(2, 4, 2))
    h0 = np.full((2, 3), 0.3)
    c0 = np.full((2, 3), -0.7)
    mask = np.array([[False, True, False, True], [False] * 4])
    seq, h, c = layer(x, mask=mask, initial_state=[h0, c0])
    np.testing.assert_array_equal(seq[0, 0], 0)
    np.testing.assert_array_equal(seq[0, 2], seq[0, 1])
    assert not np.array_equal(seq[0, 3], seq[0, 2])
    np.testing.assert_array_equal(seq[1], 0)
    np.testing.assert_array_equal(h[1], h0[1])
    np.testing.assert_array_equal(c[1], c0[1])
    # the unmasked steps are exactly an unmasked run over the kept inputs
    plain = fastlstm.LSTM(3, return_sequences=True, return_state=True, dtype="float64")
    plain.set_weights(weights)
    kept, kh, kc = plain(x[:1, [1, 3]], initial_state=[h0[:1], c0[:1]])
    np.testing.assert_allclose(seq[0, [1, 3]], kept[0], rtol=1e-12)
    np.testing.assert_allclose(h[0], kh[0], rtol=1e-12)
    np.testing.assert_allclose(c[0], kc[0], rtol=1e-12)


def test_go_backwards_is_forward_over_reversed_input(make_weights):
    weights = make_weights(3, 4, np.float64)
    forward = fastlstm.LSTM(4, return_sequences=True, dtype="float64")
    backward = fastlstm.LSTM(4, return_sequences=True, go_backwards=True, dtype="float64")
    forward.set_weights(weights)
    backward.set_weights(weights)
    x = np.random.default_rng(1).normal(size=(2, 5, 3))
    np.testing.assert_array_equal(backward(x), forward(x[:, ::-1]))
