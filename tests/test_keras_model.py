"""Whole Keras models: ``fastlstm.from_keras`` on live models, ``.keras`` files
and legacy ``.h5`` files, compared with Keras's own ``model.predict`` (torch
backend); each layer kind and activation against Keras.

Weights are random (scaled so that the gates are neither saturated nor
linear) rather than trained: training changes the values, not the code
paths, and keeps the tests fast.  Tolerances are conftest's float32 ones:
the layers around the LSTMs are one matmul or an elementwise function each,
whose rounding differs from Keras's only in summation order.
"""
import json
import sys

import keras
import numpy as np
import pytest

import fastlstm
from fastlstm import keras_activations, keras_layers

L = keras.layers
RNG = np.random.default_rng(0)


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([
        # Variances must stay positive.
        rng.uniform(0.5, 1.5, w.shape).astype("float32") if "variance" in w.path
        else rng.uniform(-0.5, 0.5, w.shape).astype("float32")
        for w in model.weights])
    return model


def _tokens(shape, vocabulary, seed):
    x = np.random.default_rng(seed).integers(1, vocabulary, shape)
    x[1, shape[1] // 2:] = 0        # padding at the end of a row ...
    x[2, :2] = 0                    # ... and at its start
    return x


def _floats(shape, seed, pad=True):
    x = np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
    if pad:
        x[1, shape[1] // 2:] = 0.0
    return x


# ------------------------------------------------------------------ models
def embedding_lstm_dense():
    model = keras.Sequential([keras.Input((7,)), L.Embedding(12, 4, mask_zero=True),
                              L.LSTM(5), L.Dense(3, activation="softmax")])
    return model, _tokens((4, 7), 12, 1)


def stacked_lstm_dropout():
    model = keras.Sequential([keras.Input((6, 3)), L.LSTM(5, return_sequences=True),
                              L.Dropout(0.3), L.LSTM(4), L.Dropout(0.2), L.Dense(2)])
    return model, _floats((4, 6, 3), 2)


def bidirectional_dense():
    model = keras.Sequential([keras.Input((6, 3)), L.Bidirectional(L.LSTM(4)),
                              L.Dense(2, activation="sigmoid")])
    return model, _floats((4, 6, 3), 3)


def masking_time_distributed():
    model = keras.Sequential([keras.Input((6, 3)), L.Masking(),
                              L.LSTM(4, return_sequences=True),
                              L.TimeDistributed(L.Dense(2, activation="tanh"))])
    return model, _floats((4, 6, 3), 4)


def encoder_decoder():
    encoder_in = keras.Input((5, 3), name="encoder_in")
    _, h, c = L.LSTM(4, return_state=True, name="encoder")(encoder_in)
    decoder_in = keras.Input((4, 2), name="decoder_in")
    y = L.LSTM(4, return_sequences=True, name="decoder")(decoder_in, initial_state=[h, c])
    model = keras.Model([encoder_in, decoder_in], L.Dense(3, activation="softmax")(y))
    return model, [_floats((4, 5, 3), 5, pad=False), _floats((4, 4, 2), 6, pad=False)]


def input_lstm_dense():
    inputs = keras.Input((6, 3))
    model = keras.Model(inputs, L.Dense(2)(L.LSTM(4)(inputs)))
    return model, _floats((4, 6, 3), 7, pad=False)


def cnn_lstm():
    model = keras.Sequential([keras.Input((12, 3)), L.Conv1D(4, 3, activation="relu"),
                              L.MaxPooling1D(2), L.LSTM(5), L.Dense(2)])
    return model, _floats((4, 12, 3), 8, pad=False)


def multi_input_concatenate():
    tokens = keras.Input((6,), name="tokens")
    extra = keras.Input((6, 2), name="extra")
    x = L.Embedding(9, 3, mask_zero=True)(tokens)
    x = L.Concatenate()([x, extra])
    x = L.LSTM(4, return_sequences=True)(x)
    pooled = L.GlobalAveragePooling1D()(x)
    model = keras.Model([tokens, extra], [L.Dense(2)(pooled), L.Dense(1)(pooled)])
    return model, [_tokens((4, 6), 9, 9), _floats((4, 6, 2), 10, pad=False)]


MODELS = [embedding_lstm_dense, stacked_lstm_dropout, bidirectional_dense,
          masking_time_distributed, encoder_decoder, input_lstm_dense, cnn_lstm,
          multi_input_concatenate]


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
    """Each model with random weights, its input, Keras's predictions, and
    the model saved as .keras, legacy .h5 and .weights.h5."""
    directory = tmp_path_factory.mktemp("keras_models")
    result = {}
    for seed, make in enumerate(MODELS):
        model, x = make()
        _randomize(model, seed)
        files = {}
        for suffix in (".keras", ".h5", ".weights.h5"):
            files[suffix] = directory / f"{make.__name__}{suffix}"
            if suffix == ".weights.h5":
                model.save_weights(files[suffix])
            else:
                model.save(files[suffix])
        result[make.__name__] = (model, x, model.predict(x, verbose=0), files)
    return result


def _assert_same(got, expected, tol):
    # Keras returns a tuple where a layer's outputs are the model's.
    expected = list(expected) if isinstance(expected, tuple) else expected
    assert isinstance(got, list) == isinstance(expected, list)
    got, expected = (got, expected) if isinstance(got, list) else ([got], [expected])
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, e, **tol(np.float32))


@pytest.mark.parametrize("name", [make.__name__ for make in MODELS])
@pytest.mark.parametrize("source", ["live", ".keras", ".h5"])
def test_model_matches_keras_predict(saved, tol, name, source):
    model, x, expected, files = saved[name]
    fast = fastlstm.from_keras(model if source == "live" else files[source])
    assert isinstance(fast, fastlstm.Model)
    _assert_same(fast(x), expected, tol)
    _assert_same(fast.predict(x, batch_size=3), expected, tol)


def test_inputs_by_name_and_errors(saved, tol):
    model, (first, second), expected, files = saved["encoder_decoder"]
    fast = fastlstm.from_keras(files[".keras"])
    assert fast.input_names == ["encoder_in", "decoder_in"]
    _assert_same(fast({"decoder_in": second, "encoder_in": first}), expected, tol)
    with pytest.raises(ValueError, match=r"takes 2 inputs \['encoder_in', 'decoder_in'\], "
                                         r"got 1"):
        fast([first])
    with pytest.raises(ValueError, match=r"input 'decoder_in' must have shape "
                                         r"\(None, 4, 2\), got \(4, 4, 3\)"):
        fast([first, np.zeros((4, 4, 3))])
    with pytest.raises(ValueError, match="same batch size"):
        fast([first, second[:2]])
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        fast.predict([first, second], batch_size=0)


def test_summary_names_and_counts(saved):
    for name in ("multi_input_concatenate", "cnn_lstm"):
        model, _, _, files = saved[name]
        lines = []
        fastlstm.from_keras(files[".keras"]).summary(print_fn=lines.append)
        text = lines[0]
        assert text.startswith(f'Model: "{model.name}"')
        assert "sequential" not in text.splitlines()[0] or name == "cnn_lstm"
        for layer in model.layers:
            assert f"{layer.name} ({type(layer).__name__})" in text
            row = next(r for r in text.splitlines() if f"{layer.name} (" in r)
            assert row.split("|")[-2].strip() == f"{layer.count_params():,}"
        assert f"Total params: {model.count_params():,}" in text


def test_save_load_without_keras_or_h5py(saved, tol, tmp_path, monkeypatch):
    model, x, expected, files = saved["multi_input_concatenate"]
    fastlstm.from_keras(files[".h5"]).save(tmp_path / "model.npz")
    for name in list(sys.modules):
        if name.split(".")[0] in ("keras", "h5py"):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError):
        import h5py  # noqa: F401
    _assert_same(fastlstm.load(tmp_path / "model.npz")(x), expected, tol)


def test_command_line_summary(saved, capsys):
    from fastlstm.__main__ import summary
    model, _, _, files = saved["bidirectional_dense"]
    summary(str(files[".h5"]))
    out = capsys.readouterr().out
    assert f"{model.layers[0].name} (Bidirectional)" in out
    assert f"Total params: {model.count_params():,}" in out


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras", ".h5"])
def test_load_keras_weights_into_model(saved, tol, suffix):
    model, x, expected, files = saved["cnn_lstm"]
    fast = fastlstm.from_keras(files[".keras"])
    fast.set_weights([np.zeros_like(w) for w in fast.get_weights()])
    fastlstm.load_keras_weights(fast, files[suffix])
    _assert_same(fast(x), expected, tol)


def test_load_keras_weights_by_name_from_a_bigger_file(saved, tol, tmp_path):
    model, x, expected, files = saved["stacked_lstm_dropout"]
    small = keras.Sequential([keras.Input((6, 3)), model.layers[0].__class__.from_config(
        model.layers[0].get_config())])
    small.layers[0].set_weights(model.layers[0].get_weights())
    fast = fastlstm.from_keras(small)
    fast.set_weights([np.zeros_like(w) for w in fast.get_weights()])
    for suffix in (".h5", ".keras"):
        with pytest.raises(ValueError, match=r"holds weights of layer 'dense\w*', which the "
                                             r"fastlstm model does not have \(pass "
                                             r"by_name=True"):
            fastlstm.load_keras_weights(fast, files[suffix])
        fastlstm.load_keras_weights(fast, files[suffix], by_name=True)
        _assert_same(fast(x), small.predict(x, verbose=0), tol)
    # A layer the file lacks: refused, or left alone with skip_mismatch.
    other = fastlstm.from_keras(keras.Sequential([keras.Input((6, 3)),
                                                  L.LSTM(4, name="absent")]))
    before = other.get_weights()
    with pytest.raises(ValueError, match="no weights for layer 'absent'"):
        fastlstm.load_keras_weights(other, files[".h5"], by_name=True)
    fastlstm.load_keras_weights(other, files[".h5"], by_name=True, skip_mismatch=True)
    for a, b in zip(other.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_unsupported_layer_is_refused_before_any_work(tmp_path):
    model = keras.Sequential([keras.Input((5, 3)), L.LSTM(4, return_sequences=True),
                              L.GRU(2, name="my_gru")])
    with pytest.raises(ValueError, match=r"layer 'my_gru' is a GRU; fastlstm supports "
                                         r"Activation, Add, AveragePooling1D, .*TimeDistributed"):
        fastlstm.from_keras(model)
    model.save(tmp_path / "gru.keras")
    with pytest.raises(ValueError, match="layer 'my_gru' is a GRU"):
        fastlstm.from_keras(tmp_path / "gru.keras")


def test_lstm_activation_outside_the_kernel_is_refused():
    model = keras.Sequential([keras.Input((5, 3)), L.LSTM(4, activation="softmax")])
    with pytest.raises(ValueError, match=r"layer 'lstm\w*' \(LSTM\): activation='softmax' is "
                                         r"one of Keras's activations .* LSTM kernel computes "
                                         r"only the elementwise ones"):
        fastlstm.from_keras(model)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_float32(policy):
    """The float32 variables, computed in float32: within float16's (or
    bfloat16's) rounding of Keras's output, which computes in half precision."""
    model = keras.Sequential([keras.Input((6, 3)), L.LSTM(8, dtype=policy),
                              L.Dense(4, dtype=policy)])
    _randomize(model, 11)
    x = _floats((4, 6, 3), 12, pad=False)
    fast = fastlstm.from_keras(model)
    got = fast(x)
    assert got.dtype == np.float32
    reference = keras.Sequential([keras.Input((6, 3)), L.LSTM(8), L.Dense(4)])
    reference.set_weights(model.get_weights())
    np.testing.assert_allclose(got, reference.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    half = np.asarray(model.predict(x, verbose=0), np.float32)
    np.testing.assert_allclose(got, half, atol=2e-2 if policy == "mixed_bfloat16" else 4e-3)


# --------------------------------------------------------- layer by layer
def _layer_case(layer, shape, seed, mask=False):
    inputs = keras.Input(shape)
    x = L.Masking()(inputs) if mask else inputs
    model = _randomize(keras.Model(inputs, layer(x)), seed)
    return model, _floats((3,) + shape, seed, pad=mask)


LAYER_CASES = {
    "activation": lambda: _layer_case(L.Activation("selu"), (5, 4), 1),
    "spatial_dropout": lambda: _layer_case(L.SpatialDropout1D(0.5), (5, 4), 2),
    "gaussian_noise": lambda: _layer_case(L.GaussianNoise(0.5), (5, 4), 3),
    "gaussian_dropout": lambda: _layer_case(L.GaussianDropout(0.5), (5, 4), 4),
    "repeat_vector": lambda: _layer_case(L.RepeatVector(3), (4,), 5),
    "flatten": lambda: _layer_case(L.Flatten(), (5, 4), 6),
    "reshape": lambda: _layer_case(L.Reshape((-1, 2)), (5, 4), 7),
    "global_average_masked": lambda: _layer_case(L.GlobalAveragePooling1D(), (6, 4), 8,
                                                 mask=True),
    "global_average_keepdims": lambda: _layer_case(
        L.GlobalAveragePooling1D(keepdims=True), (6, 4), 9),
    "global_max_masked": lambda: _layer_case(L.GlobalMaxPooling1D(), (6, 4), 10, mask=True),
    "batch_normalization": lambda: _layer_case(L.BatchNormalization(epsilon=0.01), (5, 4),
                                               11),
    "batch_normalization_no_scale": lambda: _layer_case(
        L.BatchNormalization(scale=False), (5, 4), 12),
    "layer_normalization": lambda: _layer_case(L.LayerNormalization(), (5, 4), 13),
    "layer_normalization_rms": lambda: _layer_case(
        L.LayerNormalization(rms_scaling=True), (5, 4), 14),
    "conv1d_same_strided": lambda: _layer_case(
        L.Conv1D(3, 3, strides=2, padding="same"), (9, 4), 15),
    "conv1d_causal_dilated": lambda: _layer_case(
        L.Conv1D(2, 3, dilation_rate=2, padding="causal", activation="elu"), (9, 4), 16),
    "conv1d_groups": lambda: _layer_case(L.Conv1D(4, 2, groups=2, use_bias=False),
                                         (7, 4), 17),
    "max_pooling_same": lambda: _layer_case(L.MaxPooling1D(3, strides=2, padding="same"),
                                            (8, 4), 18),
    "average_pooling_valid": lambda: _layer_case(L.AveragePooling1D(2), (9, 4), 19),
    "lstm_go_backwards_masked": lambda: _layer_case(
        L.LSTM(3, go_backwards=True, return_sequences=True), (6, 4), 20, mask=True),
    "bidirectional_states": lambda: _layer_case(
        L.Bidirectional(L.LSTM(3, return_state=True), merge_mode="sum"), (6, 4), 21,
        mask=True),
}


def _merge_case(layer, seed):
    a, b = keras.Input((5, 4)), keras.Input((5, 4))
    model = _randomize(keras.Model([a, b], layer([L.Masking()(a), b])), seed)
    return model, [_floats((3, 5, 4), seed), _floats((3, 5, 4), seed + 1, pad=False)]


LAYER_CASES.update({
    "add": lambda: _merge_case(L.Add(), 30),
    "multiply": lambda: _merge_case(L.Multiply(), 31),
    "concatenate_time_axis": lambda: _merge_case(L.Concatenate(axis=1), 32),
})


@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")
@pytest.mark.filterwarnings("ignore:Layer .* does not support masking")
@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_layer_matches_keras(case, tol):
    model, x = LAYER_CASES[case]()
    _assert_same(fastlstm.from_keras(model)(x), model.predict(x, verbose=0), tol)


@pytest.mark.parametrize("conv", [
    lambda: L.Conv1D(4, 3, activation="softmax"),
    lambda: L.Conv1D(6, 2, strides=2, dilation_rate=1, groups=3, padding="same",
                     activation="relu"),
    lambda: L.Conv1D(3, 3, dilation_rate=2, padding="causal")])
def test_conv1d_in_blocks_of_the_batch_matches_keras(conv, tol, monkeypatch):
    """Conv1D windows a block of batch items at a time: with the block held
    to 2 items (of a batch of 7: blocks 2, 2, 2, 1) every block, the short
    last one included, matches Keras."""
    model = _randomize(keras.Sequential([keras.Input((9, 6)), conv()]), 60)
    x = _floats((7, 9, 6), 61, pad=False)
    conv_layer = fastlstm.from_keras(model).layers[-1]
    steps, size = conv_layer.output_shape([(7, 9, 6)])[1], conv_layer.size
    monkeypatch.setattr(keras_layers, "_CONV_CHUNK_BYTES", 2 * steps * size * 6 * 4)
    _assert_same(fastlstm.from_keras(model)(x), model.predict(x, verbose=0), tol)


def test_shared_layer_and_masked_merge_into_lstm(tol):
    """One LSTM called twice, and masks combined by Concatenate into an LSTM."""
    a, b = keras.Input((6,)), keras.Input((6, 3))
    embedded = L.Embedding(8, 3, mask_zero=True)(a)
    shared = L.LSTM(3, return_sequences=True)
    x = L.Concatenate(axis=1)([shared(embedded), shared(b)])
    model = _randomize(keras.Model([a, b], L.LSTM(2)(x)), 40)
    x = [_tokens((3, 6), 8, 41), _floats((3, 6, 3), 42, pad=False)]
    _assert_same(fastlstm.from_keras(model)(x), model.predict(x, verbose=0), tol)


@pytest.mark.parametrize("name", sorted(set(keras_activations.FUNCTIONS) - {"linear"}))
def test_dense_activation_matches_keras(name, tol):
    model = _randomize(keras.Sequential([keras.Input((5,)), L.Dense(6, activation=name)]),
                       50)
    x = np.random.default_rng(51).uniform(-4, 4, (7, 5)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(fastlstm.from_keras(model)(x), expected, rtol=1e-5,
                               atol=2e-6)


# ------------------------------------------------- Keras 2 / tf.keras configs
def _keras2_node(node):
    """A Keras 3 call {"args", "kwargs"} as tf.keras wrote it: a list of
    [layer, call, output, {}], initial states as further inputs, no masks."""
    def history(tensor):
        return list(tensor["config"]["keras_history"]) + [{}]

    arg = node["args"][0]
    tensors = [history(t) for t in arg] if isinstance(arg, list) else [history(arg)]
    tensors += [history(t) for t in node["kwargs"].get("initial_state", [])]
    return tensors


def _keras2_config(config):
    """A Keras 3 model config rewritten in tf.keras 2's format: operation
    nodes dropped (tf.keras recorded no masks), list-style calls,
    batch_input_shape."""
    body = config["config"]
    layers = []
    for entry in body["layers"]:
        if "trainable" not in entry["config"] and entry["class_name"] != "InputLayer":
            continue                                    # a Keras 3 mask operation
        entry = dict(entry, config=dict(entry["config"]))
        if entry["class_name"] == "InputLayer":
            entry["config"]["batch_input_shape"] = entry["config"].pop("batch_shape")
        if "inbound_nodes" in entry:
            entry["inbound_nodes"] = [_keras2_node(n) for n in entry["inbound_nodes"]]
        layers.append(entry)
    if config["class_name"] == "Sequential":
        first = layers.pop(0)
        layers[0]["config"]["batch_input_shape"] = first["config"]["batch_input_shape"]
    return {"class_name": "Model" if config["class_name"] == "Functional"
            else config["class_name"], "config": dict(body, layers=layers)}


@pytest.mark.parametrize("name", ["encoder_decoder", "multi_input_concatenate",
                                  "masking_time_distributed", "embedding_lstm_dense"])
def test_keras2_legacy_h5(saved, tol, tmp_path, name):
    """tf.keras's .h5 layout: masks follow each layer's compute_mask."""
    import h5py
    model, x, expected, files = saved[name]
    path = tmp_path / "keras2.h5"
    path.write_bytes(files[".h5"].read_bytes())
    with h5py.File(path, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        h5.attrs["model_config"] = json.dumps(_keras2_config(config))
    _assert_same(fastlstm.from_keras(path)(x), expected, tol)
