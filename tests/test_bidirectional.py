"""fastlstm.Bidirectional against Keras 3's Bidirectional(LSTM) (torch backend)
and the NumPy reference, with the same random weights."""
import itertools

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastlstm
from fastlstm import reference

UNITS, FEATURES = 4, 3
RETURN_MODES = list(itertools.product([False, True], [False, True]))  # sequences, state


def _mask():
    # Rows: all valid, leading and trailing steps masked, a gap, all masked.
    mask = np.ones((5, 6), bool)
    mask[1, :2] = False
    mask[2, 4:] = False
    mask[3, 2:4] = False
    mask[4] = False
    return mask


def _as_list(value):
    return [keras.ops.convert_to_numpy(v) for v in value] if isinstance(
        value, (list, tuple)) else [keras.ops.convert_to_numpy(value)]


def _pair(make_weights, merge_mode, return_sequences, return_state, dtype=np.float32):
    weights = make_weights(FEATURES, UNITS, dtype, seed=1) + make_weights(
        FEATURES, UNITS, dtype, seed=2)
    ours = fastlstm.Bidirectional(
        fastlstm.LSTM(UNITS, return_sequences=return_sequences, return_state=return_state,
                      dtype=dtype), merge_mode=merge_mode)
    ours.set_weights(weights)
    theirs = keras.layers.Bidirectional(
        keras.layers.LSTM(UNITS, return_sequences=return_sequences, return_state=return_state,
                          dtype=np.dtype(dtype).name), merge_mode=merge_mode,
        dtype=np.dtype(dtype).name)
    theirs.build((None, None, FEATURES))
    theirs.set_weights(weights)
    return ours, theirs


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences,return_state", RETURN_MODES)
@pytest.mark.parametrize("masked", [False, True])
def test_matches_keras(make_weights, tol, merge_mode, return_sequences, return_state, masked):
    ours, theirs = _pair(make_weights, merge_mode, return_sequences, return_state)
    x = np.random.default_rng(3).uniform(-1, 1, (5, 6, FEATURES)).astype(np.float32)
    mask = _mask() if masked else None
    expected = _as_list(theirs(x, mask=None if mask is None else keras.ops.convert_to_tensor(
        mask)))
    got = ours(x, mask=mask)
    got = got if isinstance(got, list) else [got]
    count = (2 if merge_mode is None else 1) + (4 if return_state else 0)
    assert len(got) == len(expected) == count
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, e, **tol(np.float32))


def test_float64_initial_state_matches_keras(make_weights, tol):
    ours, theirs = _pair(make_weights, "concat", True, True, np.float64)
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, (2, 5, FEATURES))
    states = [rng.uniform(-1, 1, (2, UNITS)) for _ in range(4)]
    expected = _as_list(theirs(x, initial_state=[keras.ops.convert_to_tensor(s)
                                                  for s in states]))
    got = ours(x, initial_state=states)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, **tol(np.float64))


def test_directions_match_reference(make_weights, tol):
    """Forward in time order; backward run on the reversed sequence and
    flipped back to time order."""
    forward_w, backward_w = make_weights(FEATURES, UNITS, seed=5), make_weights(
        FEATURES, UNITS, seed=6)
    layer = fastlstm.Bidirectional(fastlstm.LSTM(UNITS, return_sequences=True),
                                   merge_mode=None)
    layer.set_weights(forward_w + backward_w)
    x = np.random.default_rng(7).uniform(-1, 1, (3, 5, FEATURES)).astype(np.float32)
    forward, backward = layer(x)
    np.testing.assert_allclose(forward, reference.lstm(x, *forward_w)[0], **tol(np.float32))
    processing_order = reference.lstm(x, *backward_w, go_backwards=True)[0]
    np.testing.assert_allclose(backward, processing_order[:, ::-1], **tol(np.float32))


def test_weights_in_keras_order(make_weights):
    ours, theirs = _pair(make_weights, "concat", False, False)
    for g, e in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_array_equal(g, e)
    assert ours.count_params() == theirs.count_params()


def test_custom_backward_layer_matches_keras(make_weights, tol):
    weights = make_weights(FEATURES, UNITS, seed=8) + make_weights(FEATURES, 2, seed=9)
    ours = fastlstm.Bidirectional(
        fastlstm.LSTM(UNITS, return_sequences=True),
        backward_layer=fastlstm.LSTM(2, return_sequences=True, go_backwards=True))
    ours.set_weights(weights)
    theirs = keras.layers.Bidirectional(
        keras.layers.LSTM(UNITS, return_sequences=True),
        backward_layer=keras.layers.LSTM(2, return_sequences=True, go_backwards=True))
    theirs.build((None, None, FEATURES))
    theirs.set_weights(weights)
    x = np.random.default_rng(10).uniform(-1, 1, (2, 4, FEATURES)).astype(np.float32)
    np.testing.assert_allclose(ours(x), _as_list(theirs(x))[0], **tol(np.float32))


def test_compute_output_shape_matches_keras(make_weights):
    for merge_mode in ["concat", "sum", None]:
        for return_sequences, return_state in RETURN_MODES:
            ours, theirs = _pair(make_weights, merge_mode, return_sequences, return_state)
            expected = theirs.compute_output_shape((None, 6, FEATURES))
            got = ours.compute_output_shape((None, 6, FEATURES))
            assert got == (list(map(tuple, expected)) if isinstance(expected, (list, tuple))
                           and isinstance(expected[0], (list, tuple)) else tuple(expected))


def test_stateful_carries_both_directions(make_weights, tol):
    weights = make_weights(FEATURES, UNITS, seed=11) + make_weights(FEATURES, UNITS, seed=12)
    layer = fastlstm.Bidirectional(fastlstm.LSTM(UNITS, stateful=True, return_state=True))
    layer.set_weights(weights)
    fresh = fastlstm.Bidirectional(fastlstm.LSTM(UNITS, return_state=True))
    fresh.set_weights(weights)
    x = np.random.default_rng(13).uniform(-1, 1, (2, 3, FEATURES)).astype(np.float32)
    first = layer(x)
    np.testing.assert_array_equal(np.concatenate(layer.states, axis=1),
                                  np.concatenate(first[1:], axis=1))
    second = layer(x)
    expected = fresh(x, initial_state=first[1:])
    for g, e in zip(second, expected, strict=True):
        np.testing.assert_allclose(g, e, **tol(np.float32))
    layer.reset_state()
    assert all(not s.any() for s in layer.states)
    np.testing.assert_allclose(layer(x)[0], first[0], **tol(np.float32))


def test_lengths_equal_mask(make_weights):
    layer = fastlstm.Bidirectional(fastlstm.LSTM(UNITS, return_sequences=True))
    layer.set_weights(make_weights(FEATURES, UNITS, seed=14) * 2)
    x = np.random.default_rng(15).uniform(-1, 1, (3, 5, FEATURES)).astype(np.float32)
    lengths = np.array([5, 2, 0])
    np.testing.assert_array_equal(layer(x, lengths=lengths),
                                  layer(x, mask=np.arange(5) < lengths[:, None]))


def test_errors():
    with pytest.raises(TypeError, match="fastlstm.LSTM"):
        fastlstm.Bidirectional(keras.layers.LSTM(3))
    with pytest.raises(ValueError, match="merge_mode"):
        fastlstm.Bidirectional(fastlstm.LSTM(3), merge_mode="max")
    with pytest.raises(ValueError, match="go_backwards"):
        fastlstm.Bidirectional(fastlstm.LSTM(3), backward_layer=fastlstm.LSTM(3))
    with pytest.raises(ValueError, match="return_sequences"):
        fastlstm.Bidirectional(fastlstm.LSTM(3), backward_layer=fastlstm.LSTM(
            3, go_backwards=True, return_sequences=True))
    with pytest.raises(TypeError, match="backward_layer"):
        fastlstm.Bidirectional(fastlstm.LSTM(3), backward_layer="lstm")
    layer = fastlstm.Bidirectional(fastlstm.LSTM(3))
    x = np.zeros((2, 4, 5), np.float32)
    with pytest.raises(ValueError, match="list of 4"):
        layer(x, initial_state=[np.zeros((2, 3))] * 2)
    with pytest.raises(ValueError, match="list of 6 arrays"):
        layer.set_weights([np.zeros((5, 12))] * 3)
    with pytest.raises(ValueError, match="not stateful"):
        layer.reset_state()


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(0, 3), timesteps=st.integers(0, 5), units=st.integers(1, 3),
       merge_mode=st.sampled_from(["concat", "sum", "mul", "ave", None]),
       return_sequences=st.booleans(), return_state=st.booleans(),
       go_backwards=st.booleans(), seed=st.integers(0, 2**16))
def test_property_against_reference(batch, timesteps, units, merge_mode, return_sequences,
                                     return_state, go_backwards, seed):
    """Both directions from the NumPy reference, arranged as Keras does."""
    rng = np.random.default_rng(seed)
    forward_w, backward_w = ([rng.uniform(-0.5, 0.5, s) for s in
                              [(2, 4 * units), (units, 4 * units), (4 * units,)]]
                             for _ in range(2))
    x = rng.uniform(-1, 1, (batch, timesteps, 2))
    mask = rng.random((batch, timesteps)) < 0.7
    layer = fastlstm.Bidirectional(
        fastlstm.LSTM(units, return_sequences=return_sequences, return_state=return_state,
                      go_backwards=go_backwards, dtype="float64"), merge_mode=merge_mode)
    layer.set_weights(forward_w + backward_w)
    got = layer(x, mask=mask)
    got = got if isinstance(got, list) else [got]
    directions = []
    for weights, backwards in ((forward_w, go_backwards), (backward_w, not go_backwards)):
        sequence, last, h, c = reference.lstm(x, *weights, mask=mask, go_backwards=backwards)
        if return_sequences:
            # The backward layer's sequence is flipped back to time order,
            # and Keras zeroes masked steps (zero_output_for_mask).
            sequence = sequence[:, ::-1] if weights is backward_w else sequence
            sequence = np.where(mask[:, :, None], sequence, 0)
        directions.append((sequence if return_sequences else last, h, c))
    (y_f, h_f, c_f), (y_b, h_b, c_b) = directions
    merged = {"concat": [np.concatenate([y_f, y_b], -1)], "sum": [y_f + y_b],
              "mul": [y_f * y_b], "ave": [(y_f + y_b) / 2], None: [y_f, y_b]}[merge_mode]
    expected = merged + ([h_f, c_f, h_b, c_b] if return_state else [])
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)
