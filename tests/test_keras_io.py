"""Keras interop: live layers and models, and .keras / .weights.h5 files
written by Keras itself, read back with Keras blocked from import."""
import sys

import keras
import numpy as np
import pytest

import fastlstm


def _inputs(seed, shape=(3, 6, 4)):
    x = np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
    x[1, 4:] = 0.0      # trailing padding for Masking
    x[2, :2] = 0.0
    return x


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype)
                       for w in model.get_weights()])


def _numpy(value):
    if isinstance(value, (list, tuple)):
        return [keras.ops.convert_to_numpy(v) for v in value]
    return [keras.ops.convert_to_numpy(value)]


def _sequential():
    model = keras.Sequential([
        keras.Input((None, 4)),
        keras.layers.Masking(),
        keras.layers.LSTM(5, return_sequences=True),
        keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True),
                                   merge_mode="ave"),
        keras.layers.LSTM(4, return_sequences=True, go_backwards=True),
        keras.layers.Bidirectional(keras.layers.LSTM(2, return_state=True), merge_mode=None),
    ])
    _randomize(model, 0)
    return model


def _functional():
    inputs = keras.Input((6, 4))
    x = keras.layers.Masking()(inputs)
    x = keras.layers.LSTM(5, return_sequences=True)(x)
    outputs = keras.layers.LSTM(3, return_state=True, activation="relu",
                                recurrent_activation="hard_sigmoid")(x)
    model = keras.Model(inputs, outputs)
    _randomize(model, 1)
    return model


def _assert_same(got, expected, tol):
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, **tol(np.float32))


@pytest.mark.parametrize("make", [_sequential, _functional])
def test_live_model(tol, make):
    model = make()
    x = _inputs(2)
    _assert_same(fastlstm.from_keras(model)(x), _numpy(model(x)), tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_live_lstm_layer(make_weights, tol, dtype):
    layer = keras.layers.LSTM(4, return_sequences=True, return_state=True, go_backwards=True,
                              kernel_initializer="he_normal", dtype=dtype)
    layer.build((None, None, 3))
    layer.set_weights(make_weights(3, 4, dtype, seed=3))
    ours = fastlstm.LSTM.from_keras(layer)
    assert ours.dtype == dtype and ours.go_backwards and ours.return_state
    x = np.random.default_rng(4).uniform(-1, 1, (2, 5, 3)).astype(dtype)
    for g, e in zip(ours(x), _numpy(layer(x)), strict=True):
        np.testing.assert_allclose(g, e, **tol(dtype))
    assert isinstance(fastlstm.from_keras(layer), fastlstm.LSTM)


def test_live_bidirectional_with_custom_backward_layer(tol):
    layer = keras.layers.Bidirectional(
        keras.layers.LSTM(4, return_sequences=True),
        backward_layer=keras.layers.LSTM(2, return_sequences=True, go_backwards=True))
    layer.build((None, None, 3))
    _randomize(layer, 5)
    ours = fastlstm.from_keras(layer)
    assert isinstance(ours, fastlstm.Bidirectional) and ours.backward_layer.units == 2
    x = np.random.default_rng(6).uniform(-1, 1, (2, 5, 3)).astype(np.float32)
    _assert_same(ours(x), _numpy(layer(x)), tol)


@pytest.fixture
def no_keras(monkeypatch):
    """Make ``import keras`` fail, as on a machine without Keras."""
    for name in list(sys.modules):
        if name == "keras" or name.startswith("keras."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "keras", None)


@pytest.mark.parametrize("make", [_sequential, _functional])
def test_keras_file_without_keras(tmp_path, tol, make, request):
    model = make()
    x = _inputs(7)
    expected = _numpy(model(x))
    model.save(tmp_path / "model.keras")
    request.getfixturevalue("no_keras")
    with pytest.raises(ImportError):
        import keras  # noqa: F401  (the fixture really blocks it)
    loaded = fastlstm.from_keras(tmp_path / "model.keras")
    _assert_same(loaded(x), expected, tol)


def test_weights_h5_without_keras(tmp_path, tol, request):
    model = _sequential()
    x = _inputs(8)
    expected = _numpy(model(x))
    model.save_weights(tmp_path / "model.weights.h5")
    request.getfixturevalue("no_keras")
    stack = fastlstm.Sequential([
        fastlstm.Masking(),
        fastlstm.LSTM(5, return_sequences=True),
        fastlstm.Bidirectional(fastlstm.LSTM(3, return_sequences=True), merge_mode="ave"),
        fastlstm.LSTM(4, return_sequences=True, go_backwards=True),
        fastlstm.Bidirectional(fastlstm.LSTM(2, return_state=True), merge_mode=None),
    ])
    fastlstm.load_keras_weights(stack, tmp_path / "model.weights.h5")
    _assert_same(stack(x), expected, tol)


def test_weights_h5_layout_written_by_keras(tmp_path):
    """The paths the loader reads, as Keras writes them."""
    import h5py
    _sequential().save_weights(tmp_path / "model.weights.h5")
    with h5py.File(tmp_path / "model.weights.h5", "r") as h5:
        assert h5["layers/lstm/cell/vars/0"].shape == (4, 20)
        assert h5["layers/lstm/cell/vars/1"].shape == (5, 20)
        assert h5["layers/lstm/cell/vars/2"].shape == (20,)
        assert h5["layers/bidirectional/forward_layer/cell/vars/0"].shape == (5, 12)
        assert h5["layers/bidirectional/backward_layer/cell/vars/0"].shape == (5, 12)
        assert h5["layers/lstm_1/cell/vars/0"].shape == (3, 16)   # after merge_mode="ave"
        assert h5["layers/bidirectional_1/backward_layer/cell/vars/1"].shape == (2, 8)


def test_single_layer_from_weights_file(tmp_path, make_weights, tol):
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(4)])
    model.set_weights(make_weights(3, 4, seed=9))
    model.save_weights(tmp_path / "one.weights.h5")
    layer = fastlstm.LSTM(4)
    fastlstm.load_keras_weights(layer, tmp_path / "one.weights.h5")
    x = np.random.default_rng(10).uniform(-1, 1, (2, 5, 3)).astype(np.float32)
    _assert_same(layer(x), _numpy(model(x)), tol)


def test_file_errors(tmp_path):
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(4),
                              keras.layers.Dense(2)])
    model.save(tmp_path / "dense.keras")
    model.save_weights(tmp_path / "dense.weights.h5")
    with pytest.raises(ValueError, match="layer 'dense' is a Dense"):
        fastlstm.from_keras(tmp_path / "dense.keras")
    with pytest.raises(ValueError, match="weights of layer 'dense'"):
        fastlstm.load_keras_weights(fastlstm.LSTM(4), tmp_path / "dense.weights.h5")
    with pytest.raises(ValueError, match="has no layer 'bidirectional'"):
        fastlstm.load_keras_weights(fastlstm.Bidirectional(fastlstm.LSTM(4)),
                                    tmp_path / "dense.weights.h5")
    with pytest.raises(ValueError, match=r"weights\[0\] must have shape \(3, 20\)"):
        fastlstm.load_keras_weights(fastlstm.Sequential([fastlstm.LSTM(5)],
                                                        input_shape=(None, 3)),
                                    tmp_path / "dense.weights.h5")
    with pytest.raises(ValueError, match="load_keras_weights"):
        fastlstm.from_keras(tmp_path / "dense.weights.h5")


def test_unsupported_live_models():
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.GRU(4)])
    with pytest.raises(ValueError, match="'gru' is a GRU"):
        fastlstm.from_keras(model)
    with pytest.raises(TypeError, match="Dense is not supported"):
        fastlstm.from_keras(keras.layers.Dense(3))
    with pytest.raises(TypeError, match="expected a Keras 3 layer or model, got LSTM"):
        fastlstm.from_keras(fastlstm.LSTM(3))
    with pytest.raises(TypeError, match="expects a keras.layers.LSTM, got GRU"):
        fastlstm.LSTM.from_keras(keras.layers.GRU(3))
    # Encoder-decoder: the decoder's initial_state comes from another layer.
    inputs = keras.Input((None, 3))
    _, h, c = keras.layers.LSTM(4, return_state=True)(inputs)
    outputs = keras.layers.LSTM(4)(inputs, initial_state=[h, c])
    with pytest.raises(ValueError, match="initial_state"):
        fastlstm.from_keras(keras.Model(inputs, outputs))
    first, second = keras.Input((None, 3)), keras.Input((None, 3))
    two = keras.Model([first, second], [keras.layers.LSTM(2)(first),
                                        keras.layers.LSTM(2)(second)])
    with pytest.raises(ValueError, match="2 inputs"):
        fastlstm.from_keras(two)


def test_config_is_keras_compatible(make_weights, tol):
    ours = fastlstm.LSTM(4, activation="relu", return_sequences=True, go_backwards=True,
                         stateful=True, unit_forget_bias=False, dtype="float64")
    theirs = keras.layers.LSTM.from_config(ours.get_config())
    for key, value in ours.get_config().items():
        got = theirs.get_config()[key]
        assert (got["config"]["name"] if key == "dtype" else got) == value or key.endswith(
            "initializer")
    back = fastlstm.LSTM.from_config(keras.layers.LSTM(7, dropout=0.3).get_config())
    assert back.units == 7 and back.kernel_initializer == "glorot_uniform"
    assert back.recurrent_initializer == "orthogonal" and back.dtype == np.float32


def test_config_errors():
    with pytest.raises(ValueError, match="unsupported key 'time_major'"):
        fastlstm.LSTM.from_config({"units": 3, "time_major": True})
    with pytest.raises(ValueError, match="zero_output_for_mask=True"):
        fastlstm.LSTM.from_config({"units": 3, "zero_output_for_mask": True})
    with pytest.raises(ValueError, match="kernel_initializer must be one of"):
        fastlstm.LSTM.from_config(keras.layers.LSTM(3, kernel_initializer="he_normal")
                                  .get_config())
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64', got "
                                         "'mixed_float16'"):
        fastlstm.LSTM.from_config(keras.layers.LSTM(3, dtype="mixed_float16").get_config())


@pytest.mark.parametrize("make", [_sequential, _functional])
def test_summary_is_titled_with_the_keras_model_name(tmp_path, make):
    model = make()
    model.save(tmp_path / "model.keras")
    for fast in fastlstm.from_keras(model), fastlstm.from_keras(tmp_path / "model.keras"):
        lines = []
        fast.summary(print_fn=lines.append)
        assert lines[0].splitlines()[0] == f'Model: "{model.name}"'
        assert fastlstm.Sequential.from_config(fast.get_config()).name == model.name


def test_unsupported_layer_named_with_its_article():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Embedding(10, 3),
                              keras.layers.LSTM(4)])
    with pytest.raises(ValueError, match="'embedding' is an Embedding; fastlstm supports"):
        fastlstm.from_keras(model)
