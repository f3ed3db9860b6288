"""stateful=True and lengths= on fastlstm.LSTM, against Keras 3's stateful
LSTM, torch.nn.LSTM carrying (h, c), and the NumPy reference."""
import keras
import numpy as np
import pytest
import torch

import fastlstm
from fastlstm import reference

UNITS, FEATURES, BATCH = 5, 3, 4


def _chunks(seed, count=3, steps=4, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (BATCH, steps, FEATURES)).astype(dtype) for _ in range(count)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_keras_over_batches_and_after_reset(make_weights, tol, dtype):
    weights = make_weights(FEATURES, UNITS, dtype, seed=1)
    ours = fastlstm.LSTM(UNITS, stateful=True, return_sequences=True, dtype=dtype)
    ours.set_weights(weights)
    theirs = keras.layers.LSTM(UNITS, stateful=True, return_sequences=True,
                               dtype=np.dtype(dtype).name)
    theirs.build((BATCH, None, FEATURES))
    theirs.set_weights(weights)
    chunks = _chunks(2, dtype=dtype)
    for _ in range(2):
        for x in chunks:
            expected = keras.ops.convert_to_numpy(theirs(x))
            np.testing.assert_allclose(ours(x), expected, **tol(dtype))
            for g, e in zip(ours.states, theirs.states, strict=True):
                np.testing.assert_allclose(g, keras.ops.convert_to_numpy(e), **tol(dtype))
        ours.reset_states()     # the alias; Keras's reset_state() below
        theirs.reset_state()
        assert not any(s.any() for s in ours.states)


def test_matches_torch_carrying_states(make_weights, tol):
    weights = make_weights(FEATURES, UNITS, seed=3)
    layer = fastlstm.LSTM(UNITS, stateful=True, return_sequences=True)
    layer.set_weights(weights)
    module = layer.to_torch()
    state = None
    with torch.no_grad():
        for x in _chunks(4):
            expected, state = module(torch.from_numpy(x), state)
            np.testing.assert_allclose(layer(x), expected.numpy(), **tol(np.float32))
            np.testing.assert_allclose(layer.states[0], state[0][0].numpy(), **tol(np.float32))
            np.testing.assert_allclose(layer.states[1], state[1][0].numpy(), **tol(np.float32))


def test_chunks_equal_one_long_sequence_with_mask(make_weights, tol):
    weights = make_weights(FEATURES, UNITS, seed=5)
    layer = fastlstm.LSTM(UNITS, stateful=True, return_state=True)
    layer.set_weights(weights)
    chunks = _chunks(6)
    masks = [np.random.default_rng(7 + i).random((BATCH, 4)) < 0.7 for i in range(3)]
    for x, mask in zip(chunks, masks, strict=True):
        _, h, c = layer(x, mask=mask)
    _, _, h_ref, c_ref = reference.lstm(np.concatenate(chunks, axis=1), *weights,
                                        mask=np.concatenate(masks, axis=1))
    np.testing.assert_allclose(h, h_ref, **tol(np.float32))
    np.testing.assert_allclose(c, c_ref, **tol(np.float32))


def test_initial_state_overrides_and_final_state_is_stored(make_weights, tol):
    weights = make_weights(FEATURES, UNITS, seed=8)
    layer = fastlstm.LSTM(UNITS, stateful=True, return_state=True)
    layer.set_weights(weights)
    x, y = _chunks(9, count=2)
    layer(x)
    start = [np.full((BATCH, UNITS), 0.25, np.float32), np.full((BATCH, UNITS), -0.5,
                                                                  np.float32)]
    _, h, c = layer(y, initial_state=start)
    _, _, h_ref, c_ref = reference.lstm(y, *weights, initial_state=start)
    np.testing.assert_allclose(h, h_ref, **tol(np.float32))
    np.testing.assert_array_equal(layer.states[0], h)
    np.testing.assert_array_equal(layer.states[1], c)


def test_reset_state_sets_states_and_batch_size(make_weights, tol):
    weights = make_weights(FEATURES, UNITS, seed=10)
    layer = fastlstm.LSTM(UNITS, stateful=True)
    layer.set_weights(weights)
    assert layer.states is None
    start = [np.full((2, UNITS), 0.1), np.full((2, UNITS), 0.2)]
    layer.reset_state(start)
    x = _chunks(11)[0][:2]
    expected = reference.lstm(x, *weights, initial_state=start)[1]
    np.testing.assert_allclose(layer(x), expected, **tol(np.float32))


def test_states_are_copies(make_weights):
    layer = fastlstm.LSTM(UNITS, stateful=True, return_state=True)
    layer.set_weights(make_weights(FEATURES, UNITS, seed=12))
    _, h, _ = layer(_chunks(13)[0])
    h[...] = 7
    layer.states[0][...] = 7
    assert not (layer.states[0] == 7).any()


def test_stateful_errors(make_weights):
    layer = fastlstm.LSTM(UNITS, stateful=True)
    layer.set_weights(make_weights(FEATURES, UNITS, seed=14))
    layer(_chunks(15)[0])
    with pytest.raises(ValueError, match="batch size 4, got an input with batch size 2"):
        layer(_chunks(15)[0][:2])
    with pytest.raises(ValueError, match="list of 2"):
        layer.reset_state([np.zeros((BATCH, UNITS))])
    with pytest.raises(ValueError, match=r"initial_state\[c\] must have shape"):
        layer.reset_state([np.zeros((BATCH, UNITS)), np.zeros((BATCH, UNITS + 1))])
    with pytest.raises(ValueError, match="not stateful"):
        fastlstm.LSTM(UNITS).reset_state()


def test_lengths_are_a_right_padded_mask(make_weights, tol):
    weights = make_weights(FEATURES, UNITS, seed=16)
    layer = fastlstm.LSTM(UNITS, return_sequences=True, return_state=True)
    layer.set_weights(weights)
    x = _chunks(17, steps=6)[0]
    lengths = np.array([6, 3, 1, 0])
    got = layer(x, lengths=lengths)
    expected = reference.lstm(x, *weights, mask=np.arange(6) < lengths[:, None])
    for g, e in zip(got, [expected[0], expected[2], expected[3]], strict=True):
        np.testing.assert_allclose(g, e, **tol(np.float32))


@pytest.mark.parametrize("lengths,error,match", [
    (np.array([1, 2]), ValueError, r"lengths must have shape \(batch,\) = \(4,\)"),
    (np.array([1, 2, 3, 7]), ValueError, r"lengths must lie in \[0, timesteps\] = \[0, 4\]"),
    (np.array([1, -1, 3, 2]), ValueError, "lengths must lie in"),
    (np.array([1.0, 2, 3, 2]), TypeError, "lengths must hold integers"),
])
def test_lengths_errors(lengths, error, match):
    layer = fastlstm.LSTM(UNITS)
    with pytest.raises(error, match=match):
        layer(_chunks(18)[0], lengths=lengths)


def test_mask_and_lengths_together_is_an_error():
    with pytest.raises(ValueError, match="either mask or lengths"):
        fastlstm.LSTM(UNITS)(_chunks(19)[0], mask=np.ones((BATCH, 4), bool),
                             lengths=np.full(BATCH, 4))
