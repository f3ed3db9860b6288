"""save/load (.npz, no pickle) and get_config/from_config round trips."""
import json

import numpy as np
import pytest

import fastlstm


def _stack():
    return fastlstm.Sequential([
        fastlstm.Masking(0.5, dtype="float64"),
        fastlstm.LSTM(4, return_sequences=True, dtype="float64", seed=1),
        fastlstm.Bidirectional(fastlstm.LSTM(3, return_sequences=True, use_bias=False,
                                             dtype="float64", seed=2), merge_mode="mul",
                               backward_layer=fastlstm.LSTM(3, return_sequences=True,
                                                            use_bias=False, go_backwards=True,
                                                            dtype="float64", seed=3)),
        fastlstm.LSTM(2, return_state=True, activation="relu", dtype="float64", seed=4),
    ], input_shape=(None, 3), time_major=True)


@pytest.mark.parametrize("make", [
    lambda: fastlstm.LSTM(5, return_sequences=True, go_backwards=True, seed=0),
    lambda: fastlstm.Bidirectional(fastlstm.LSTM(5, return_state=True, seed=0), "ave"),
    _stack,
])
def test_save_load_round_trip(tmp_path, make):
    obj = make()
    if not obj.built:
        obj.build((None, 3))
    path = tmp_path / "model.npz"
    obj.save(path)
    loaded = fastlstm.load(path)
    assert type(loaded) is type(obj)
    assert loaded.get_config() == obj.get_config()
    for a, b in zip(loaded.get_weights(), obj.get_weights(), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(5).uniform(-1, 1, (4, 6, 3))
    got, expected = loaded(x), obj(x)
    for g, e in zip(got if isinstance(got, list) else [got],
                    expected if isinstance(expected, list) else [expected], strict=True):
        np.testing.assert_array_equal(g, e)


def test_file_holds_json_config_and_plain_arrays(tmp_path):
    layer = fastlstm.LSTM(2, seed=0)
    layer.build(3)
    layer.save(tmp_path / "layer.npz")
    with np.load(tmp_path / "layer.npz", allow_pickle=False) as data:
        assert sorted(data.files) == ["config", "weight_0", "weight_1", "weight_2"]
        config = json.loads(str(data["config"]))
    assert config == {"class_name": "LSTM", "config": layer.get_config()}


def test_unbuilt_layer_round_trips_without_weights(tmp_path):
    fastlstm.LSTM(3, stateful=True).save(tmp_path / "unbuilt.npz")
    loaded = fastlstm.load(tmp_path / "unbuilt.npz")
    assert not loaded.built and loaded.stateful and loaded.units == 3


def test_from_config_round_trips():
    layer = fastlstm.LSTM(4, recurrent_activation="hard_sigmoid", use_bias=False,
                          bias_initializer="ones", unit_forget_bias=False, seed=7,
                          dtype="float64")
    assert fastlstm.LSTM.from_config(layer.get_config()).get_config() == layer.get_config()
    stack = _stack()
    assert fastlstm.Sequential.from_config(stack.get_config()).get_config() == \
        stack.get_config()


def test_errors(tmp_path):
    with pytest.raises(TypeError, match="callable initializers cannot be saved"):
        fastlstm.LSTM(3, kernel_initializer=lambda shape, dtype: np.zeros(shape)).save(
            tmp_path / "x.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="no 'config' entry"):
        fastlstm.load(tmp_path / "other.npz")
    np.savez(tmp_path / "gru.npz", config=np.array('{"class_name": "GRU", "config": {}}'))
    with pytest.raises(ValueError, match="got 'GRU'"):
        fastlstm.load(tmp_path / "gru.npz")
    with pytest.raises(TypeError, match="config must be a dict"):
        fastlstm.LSTM.from_config([("units", 3)])


@pytest.mark.parametrize("make", [
    lambda: fastlstm.LSTM(32, return_sequences=True, seed=0),
    lambda: fastlstm.Bidirectional(fastlstm.LSTM(32, return_sequences=True, seed=0)),
    lambda: fastlstm.Sequential([fastlstm.Masking(), fastlstm.LSTM(32, seed=0)]),
])
def test_pickle_holds_config_and_weights_only(make):
    # What Dask ships to its workers: after inference and training calls the
    # pickle is still the weights plus a little config, not the kernel's
    # packed copy or the training workspace (tens of times larger).
    import pickle

    model = make()
    x = np.random.default_rng(0).random((64, 30, 16), dtype=np.float32)
    expected = model(x)
    for layer in getattr(model, "layers", [model]):
        if isinstance(layer, fastlstm.Masking):
            continue
        for lstm in getattr(layer, "forward_layer", layer), getattr(layer, "backward_layer", layer):
            out = lstm(x, training=True)          # leaves a training workspace and grads
            lstm.backward(np.ones_like(out))
    weights = sum(w.nbytes for w in model.get_weights())
    data = pickle.dumps(model)
    assert len(data) < weights + 4096
    clone = pickle.loads(data)
    np.testing.assert_array_equal(clone(x), expected)
    np.testing.assert_array_equal(clone(x), model(x))
