"""save/load (.npz, no pickle) and get_config/from_config round trips."""
import io
import json
import pickle
import zipfile

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


# ------------------------------------------------------- untrusted files
def _npz(path, config, **arrays):
    """An .npz with ``config`` (a dict, or raw text) and the given arrays."""
    text = config if isinstance(config, str) else json.dumps(config)
    np.savez(path, config=np.array(text), **arrays)
    return path


def _declaring(path, name, shape, dtype="<f4"):
    """Rewrite entry ``name`` of the .npz at ``path`` to a bare .npy header
    declaring ``shape`` of ``dtype``, with almost no data behind it."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": dtype, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    entries[name + ".npy"] = header.getvalue() + b"\0" * 64
    with zipfile.ZipFile(path, "w") as archive:
        for entry, data in entries.items():
            archive.writestr(entry, data)
    return path


LSTM16 = {"class_name": "LSTM", "config": {"units": 16}}


def test_load_refuses_other_files_by_name(tmp_path):
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"array\.npy is a single \.npy array; fastlstm\.load "
                                         r"reads the \.npz files"):
        fastlstm.load(tmp_path / "array.npy")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match=r"text\.npz is not a fastlstm \.npz file"):
        fastlstm.load(tmp_path / "text.npz")
    np.savez(tmp_path / "objects.npz", config=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="'config.npy' holds object values"):
        fastlstm.load(tmp_path / "objects.npz")


def test_declared_sizes_are_checked_before_reading(tmp_path):
    # A few hundred bytes declaring a 60,000,000 x 64 float32 kernel (15 GB).
    path = _declaring(_npz(tmp_path / "huge.npz", LSTM16, weight_0=np.zeros(1),
                           weight_1=np.zeros((16, 64)), weight_2=np.zeros(64)),
                      "weight_0", (60_000_000, 64))
    with pytest.raises(ValueError, match=r"'weight_0.npy' declares shape \(60000000, 64\) of "
                                         r"float32 \(15,360,000,000 bytes\) but holds 64"):
        fastlstm.load(path)
    # Real data of the wrong shapes for the config: refused before it is read.
    path = _npz(tmp_path / "mismatch.npz", {
        "class_name": "Sequential",
        "config": {"layers": [LSTM16], "input_shape": [None, 60_000_000]}},
        weight_0=np.zeros((3, 64)), weight_1=np.zeros((16, 64)), weight_2=np.zeros(64))
    with pytest.raises(ValueError, match=r"the weights have shapes \[\(3, 64\), \(16, 64\), "
                                         r"\(64,\)\]; the model its config describes has "
                                         r"\[\(60000000, 64\)"):
        fastlstm.load(path)
    path = _npz(tmp_path / "missing.npz", {
        "class_name": "Sequential",
        "config": {"layers": [LSTM16], "input_shape": [None, 60_000_000]}})
    with pytest.raises(ValueError, match=r"the weights have shapes none; the model"):
        fastlstm.load(path)


def test_config_is_limited_in_size_and_depth(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(ValueError, match="nests 100000 levels deep, more than the limit of 32"):
        fastlstm.load(_npz(tmp_path / "deep.npz", deep))
    long = json.dumps(LSTM16) + " " * 2**21
    with pytest.raises(ValueError, match=r"the config holds 2,097,\d+ characters, more than "
                                         r"the limit of 1,048,576"):
        fastlstm.load(_npz(tmp_path / "long.npz", long))
    with pytest.raises(ValueError, match="is not valid JSON"):
        fastlstm.load(_npz(tmp_path / "broken.npz", '{"class_name": '))


@pytest.mark.parametrize("config, error, message", [
    ({"class_name": "LSTM"}, ValueError, "the config lacks the key 'config'"),
    ({"class_name": "Sequential", "config": {}}, ValueError, "lacks the key 'layers'"),
    ({"class_name": "Sequential", "config": {"layers": [[1]]}}, ValueError,
     "expected the config of one of"),
    ({"class_name": "LSTM", "config": {"units": "16"}}, TypeError,
     "units must be a positive integer"),
    ({"class_name": "LSTM", "config": {"units": 16, "num_threads": "all"}}, TypeError,
     "num_threads"),
])
def test_malformed_configs_name_the_file(tmp_path, config, error, message):
    path = _npz(tmp_path / "bad.npz", config)
    with pytest.raises(error, match=f"bad.npz: .*{message}"):
        fastlstm.load(path)


def test_loading_never_draws_initial_weights(tmp_path, monkeypatch):
    """Built stacks and layers load their weights without running the
    initializers first (it took seconds for LSTM(1024))."""
    stack = fastlstm.Sequential([fastlstm.LSTM(64, return_sequences=True, seed=1),
                                 fastlstm.Bidirectional(fastlstm.LSTM(8, seed=2))],
                                input_shape=(None, 5))
    stack.save(tmp_path / "stack.npz")
    layer = fastlstm.LSTM(32, seed=3)
    layer.build(7)
    layer.save(tmp_path / "layer.npz")

    def refuse(*args, **kwargs):
        raise AssertionError("an initializer ran while loading")

    monkeypatch.setattr(fastlstm.initializers, "initialize", refuse)
    for obj, name in [(stack, "stack.npz"), (layer, "layer.npz")]:
        loaded = fastlstm.load(tmp_path / name)
        for a, b in zip(loaded.get_weights(), obj.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)


def test_build_draws_the_weights_when_first_needed():
    """build records the input size; the seeded weights are the same
    whenever they are drawn, and a layer whose weights are set never draws."""
    eager, lazy = fastlstm.LSTM(4, seed=5), fastlstm.LSTM(4, seed=5)
    eager.build(3)
    eager_weights = eager.get_weights()
    lazy.build(3)
    assert lazy.built and lazy.count_params() == 128
    x = np.ones((2, 3, 3), np.float32)
    np.testing.assert_array_equal(lazy(x), eager(x))
    for a, b in zip(lazy.get_weights(), eager_weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_pickle_drops_the_training_workspace():
    layer = fastlstm.LSTM(64, return_sequences=True, seed=0)
    x = np.random.default_rng(6).uniform(-1, 1, (32, 100, 8)).astype(np.float32)
    out = layer(x, training=True)
    layer.backward(np.ones_like(out))
    weights_bytes = sum(w.nbytes for w in layer.get_weights())
    data = pickle.dumps(layer)
    assert len(data) < weights_bytes + 10_000        # the workspace is ~2 MB
    copy = pickle.loads(data)
    np.testing.assert_array_equal(copy(x), layer(x))
    with pytest.raises(RuntimeError, match="needs a call with training=True first"):
        copy.backward(np.ones_like(out))
    out = copy(x, training=True)                      # trains as a new layer would
    assert copy.backward(np.ones_like(out))[0].shape == x.shape


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
