"""fastlstm.Sequential and Masking against Keras 3 Sequential models with
the same weights."""
import keras
import numpy as np
import pytest

import fastlstm


def _inputs(seed, shape=(4, 6, 3), dtype=np.float32):
    x = np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype)
    x[1, :2] = 0.0      # leading padding
    x[2, 4:] = 0.0      # trailing padding
    x[3, 3] = 0.0       # a gap
    return x


def _layers(module, stateful=False):
    return [
        module.Masking(),
        module.LSTM(5, return_sequences=True, stateful=stateful),
        module.Bidirectional(module.LSTM(4, return_sequences=True, stateful=stateful),
                             merge_mode="sum"),
        module.LSTM(3, return_sequences=True, go_backwards=True, stateful=stateful),
        module.LSTM(2, return_state=True, stateful=stateful),
    ]


def _random_weights(stack, seed):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in stack.get_weights()]


def test_stack_with_masking_matches_keras(tol):
    ours = fastlstm.Sequential(_layers(fastlstm), input_shape=(None, 3))
    ours.set_weights(_random_weights(ours, 0))
    theirs = keras.Sequential([keras.Input((None, 3))] + _layers(keras.layers))
    theirs.set_weights(ours.get_weights())
    x = _inputs(1)
    expected = [keras.ops.convert_to_numpy(v) for v in theirs(x)]
    got = ours(x)
    assert len(got) == len(expected) == 3
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, **tol(np.float32))


def test_stateful_stack_matches_keras(tol):
    ours = fastlstm.Sequential(_layers(fastlstm, stateful=True)[1:], input_shape=(None, 3))
    ours.set_weights(_random_weights(ours, 2))
    theirs = keras.Sequential([keras.Input(batch_shape=(4, None, 3))]
                              + _layers(keras.layers, stateful=True)[1:])
    theirs.set_weights(ours.get_weights())
    for step in range(3):
        if step == 2:
            ours.reset_state()
            for layer in theirs.layers:     # Keras models have no reset_state
                layer.reset_state()
        x = _inputs(3 + step)
        for g, e in zip(ours(x), theirs(x), strict=True):
            np.testing.assert_allclose(g, keras.ops.convert_to_numpy(e), **tol(np.float32))


def test_summary_and_shapes_match_keras():
    lines = []
    fastlstm.Sequential([fastlstm.LSTM(16)], input_shape=(4, 10)).summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "lstm (LSTM)" in text and "(None, 16)" in text and "Total params: 1,728" in text
    ours = fastlstm.Sequential(_layers(fastlstm), input_shape=(7, 3))
    theirs = keras.Sequential([keras.Input((7, 3))] + _layers(keras.layers))
    lines = []
    ours.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert ours.count_params() == theirs.count_params()
    assert f"Total params: {theirs.count_params():,}" in text
    rows = zip(ours.layer_names(), ours.layers, theirs.layers, strict=True)
    for name, ours_layer, theirs_layer in rows:
        output = theirs_layer.output
        shape = [t.shape for t in output] if isinstance(output, (list, tuple)) else output.shape
        assert ours_layer.count_params() == theirs_layer.count_params()
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} "))
        assert str(shape).replace("'", "") in row.replace("'", "")
        assert f"{theirs_layer.count_params():,} |" in row


def test_time_major_transposes_inputs_and_sequences(tol):
    layers = [fastlstm.LSTM(4, return_sequences=True),
              fastlstm.Bidirectional(fastlstm.LSTM(3, return_sequences=True,
                                                   return_state=True), merge_mode=None)]
    batch_major = fastlstm.Sequential(layers, input_shape=(None, 3))
    time_major = fastlstm.Sequential(layers, time_major=True)
    x = _inputs(6)
    expected = batch_major(x)
    got = time_major(x.transpose(1, 0, 2))
    for index, (g, e) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_array_equal(g, e.transpose(1, 0, 2) if index < 2 else e)


def test_masking_matches_keras(tol):
    x = _inputs(7)
    x[0, 1] = 2.5
    layer, theirs = fastlstm.Masking(2.5), keras.layers.Masking(2.5)
    np.testing.assert_array_equal(layer.compute_mask(x),
                                  keras.ops.convert_to_numpy(theirs.compute_mask(x)))
    np.testing.assert_array_equal(layer(x), keras.ops.convert_to_numpy(theirs(x)))


def test_errors():
    with pytest.raises(ValueError, match="at least one layer"):
        fastlstm.Sequential([])
    with pytest.raises(TypeError, match="got LSTM at position 0"):
        fastlstm.Sequential([keras.layers.LSTM(3)])
    with pytest.raises(ValueError, match="layer 0 .* returns several arrays"):
        fastlstm.Sequential([fastlstm.LSTM(3, return_state=True), fastlstm.LSTM(2)])
    with pytest.raises(ValueError, match="layer 0 .* returns several arrays"):
        fastlstm.Sequential([fastlstm.Bidirectional(fastlstm.LSTM(3), merge_mode=None),
                             fastlstm.LSTM(2)])
    for first in fastlstm.LSTM(3), fastlstm.Bidirectional(fastlstm.LSTM(3)):
        with pytest.raises(ValueError, match=r"layer 0 .* returns its last output only "
                                             r"\(return_sequences=False\)"):
            fastlstm.Sequential([first, fastlstm.Masking(), fastlstm.LSTM(2)])
    built = fastlstm.LSTM(2)
    built.build(5)
    with pytest.raises(ValueError, match="layer 1 .* takes 5 features, but the layer "
                                         "before it gives 3"):
        fastlstm.Sequential([fastlstm.LSTM(3, return_sequences=True), built],
                            input_shape=(None, 4))
    with pytest.raises(ValueError, match="not built"):
        fastlstm.Sequential([fastlstm.LSTM(3)]).summary()
    with pytest.raises(ValueError, match="list of 3 arrays"):
        fastlstm.Sequential([fastlstm.LSTM(3)]).set_weights([np.zeros((2, 12))])
    with pytest.raises(TypeError, match="mask_value must be a number"):
        fastlstm.Masking("0")


@pytest.mark.parametrize("last", [
    lambda: fastlstm.LSTM(2, return_sequences=True),
    lambda: fastlstm.LSTM(2),
    lambda: fastlstm.Bidirectional(fastlstm.LSTM(2, return_sequences=True, return_state=True),
                                   merge_mode=None),
])
def test_time_major_output_shapes(last):
    stack = fastlstm.Sequential([fastlstm.LSTM(3, return_sequences=True, seed=0), last()],
                                time_major=True)
    x = np.ones((5, 2, 4), np.float32)          # (timesteps, batch, features)
    outputs = stack(x)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    expected = stack.compute_output_shape(x.shape)
    expected = expected if isinstance(expected, list) else [expected]
    assert [o.shape for o in outputs] == [tuple(e) for e in expected]
