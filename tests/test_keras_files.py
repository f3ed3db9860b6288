"""Keras files as untrusted input (issue 15): nothing outside the file is
read, nothing is read before its declared size is checked, and broken
configs are a ValueError or TypeError that names the key and the file,
never a hang, a crash or an unbounded allocation.

Memory is capped with tracemalloc, which sees every NumPy and Python
allocation (what a loader would read a file into): each load here must
peak under ``CAP`` bytes.
"""
import io
import json
import tracemalloc
import zipfile

import h5py
import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastlstm
from fastlstm import keras_files

CAP = 32 * 2**20


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small functional model saved by Keras: (config dict, weights bytes, dir)."""
    directory = tmp_path_factory.mktemp("hostile")
    inputs = keras.Input((5, 3))
    outputs = keras.layers.Dense(2)(keras.layers.LSTM(4)(inputs))
    model = keras.Model(inputs, outputs)
    model.save(directory / "base.keras")
    model.save(directory / "base.h5")
    model.save_weights(directory / "base.weights.h5")
    with zipfile.ZipFile(directory / "base.keras") as archive:
        config = json.loads(archive.read("config.json"))
        weights = archive.read("model.weights.h5")
    return config, weights, directory


def _write_keras(path, config, weights, compression=zipfile.ZIP_DEFLATED):
    data = config if isinstance(config, bytes) else json.dumps(config).encode()
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("config.json", data)
        archive.writestr("model.weights.h5", weights)
    return path


def _edit_h5(weights, edit):
    """The bytes of the HDF5 file ``weights`` after ``edit(h5py.File)``."""
    buffer = io.BytesIO(weights)
    with h5py.File(buffer, "r+") as h5:
        edit(h5)
    return buffer.getvalue()


def _capped(call):
    """Run ``call`` and fail if it allocated more than CAP bytes at its peak."""
    tracemalloc.start()
    try:
        return call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < CAP, f"peak allocation {peak:,} bytes"


# ------------------------------------------------- data outside the file
@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "secret.bin"
    path.write_bytes(np.arange(48, dtype=np.float32).tobytes())
    return path


def _external(h5, secret):
    del h5["layers/lstm/cell/vars/0"]
    h5["layers/lstm/cell/vars"].create_dataset("0", (3, 16), "f4",
                                               external=[(str(secret), 0, 192)])


def _virtual(h5, secret_h5):
    del h5["layers/lstm/cell/vars/0"]
    layout = h5py.VirtualLayout(shape=(3, 16), dtype="f4")
    layout[:] = h5py.VirtualSource(str(secret_h5), "data", shape=(3, 16))
    h5["layers/lstm/cell/vars"].create_virtual_dataset("0", layout)


def _external_link(h5, secret_h5):
    del h5["layers/lstm/cell/vars/0"]
    h5["layers/lstm/cell/vars/0"] = h5py.ExternalLink(str(secret_h5), "data")


def _soft_link(h5, secret_h5):
    h5["elsewhere"] = np.ones((3, 16), np.float32)
    del h5["layers/lstm/cell/vars/0"]
    h5["layers/lstm/cell/vars/0"] = h5py.SoftLink("/elsewhere")


@pytest.mark.parametrize("edit, message", [
    (_external, "dataset /layers/lstm/cell/vars/0 has external storage"),
    (_virtual, "dataset /layers/lstm/cell/vars/0 is a virtual dataset"),
    (_external_link, "/layers/lstm/cell/vars/0 is a ExternalLink"),
    (_soft_link, "/layers/lstm/cell/vars/0 is a SoftLink"),
])
def test_data_outside_the_file_is_refused(base, tmp_path, secret, edit, message):
    config, weights, _ = base
    secret_h5 = tmp_path / "secret.h5"
    with h5py.File(secret_h5, "w") as h5:
        h5["data"] = np.arange(48, dtype=np.float32).reshape(3, 16)
    target = secret if edit is _external else secret_h5
    hostile = _edit_h5(weights, lambda h5: edit(h5, target))
    (tmp_path / "hostile.weights.h5").write_bytes(hostile)
    with pytest.raises(ValueError, match=message):
        fastlstm.load_keras_weights(fastlstm.LSTM(4), tmp_path / "hostile.weights.h5",
                                    by_name=True)
    with pytest.raises(ValueError, match=message):
        fastlstm.from_keras(_write_keras(tmp_path / "hostile.keras", config, hostile))


def test_external_storage_in_a_legacy_h5_is_refused(base, tmp_path, secret):
    _, _, directory = base
    path = tmp_path / "hostile.h5"
    path.write_bytes((directory / "base.h5").read_bytes())
    with h5py.File(path, "r+") as h5:
        group = h5["model_weights"]
        name = next(n for n in group if n.startswith("lstm"))
        kernel = f"{name}/lstm_cell/kernel"
        del group[name][kernel]
        group[name].create_dataset(kernel, (3, 16), "f4", external=[(str(secret), 0, 192)])
    with pytest.raises(ValueError, match="lstm_cell/kernel has external storage"):
        fastlstm.from_keras(path)


# ------------------------------------------------- sizes checked first
def test_undeclared_huge_dataset_is_refused_before_reading(base, tmp_path):
    """An 8 KB file declaring a 2 GiB kernel: the shape check comes first."""
    config, weights, _ = base

    def huge(h5):
        del h5["layers/lstm/cell/vars/0"]
        h5["layers/lstm/cell/vars"].create_dataset("0", (2**27, 4), "f4")   # 2 GiB, unwritten

    hostile = _edit_h5(weights, huge)
    (tmp_path / "huge.weights.h5").write_bytes(hostile)
    with pytest.raises(ValueError, match=r"vars/0 must have shape \(3, 16\), got "
                                         r"\(134217728, 4\)"):
        _capped(lambda: fastlstm.from_keras(_write_keras(tmp_path / "huge.keras", config,
                                                         hostile)))
    with pytest.raises(ValueError, match=r"must have shape \(\?, 16\), got \(134217728, 4\)"):
        _capped(lambda: fastlstm.load_keras_weights(fastlstm.LSTM(4),
                                                    tmp_path / "huge.weights.h5", by_name=True))


def test_zip_bomb_is_refused_before_reading(base, tmp_path):
    config, _, _ = base
    bomb = _write_keras(tmp_path / "bomb.keras", config, bytes(64 * 2**20))
    with pytest.raises(ValueError, match=r"model.weights.h5 expands 67,108,864 bytes from "
                                         r"[\d,]+ \(over 200x, the limit\)"):
        _capped(lambda: fastlstm.from_keras(bomb))


def test_config_json_size_and_depth_are_capped(base, tmp_path):
    _, weights, _ = base
    blank = b" " * (keras_files.CONFIG_LIMIT + 1)
    with pytest.raises(ValueError, match=r"config.json declares 67,108,865 bytes, over the "
                                         r"limit of 67,108,864"):
        _capped(lambda: fastlstm.from_keras(_write_keras(tmp_path / "big.keras", blank,
                                                         weights)))
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(ValueError, match="nests 100000 levels deep, over the limit of 64"):
        fastlstm.from_keras(_write_keras(tmp_path / "deep.keras", deep, weights))
    # Brackets inside strings do not count.
    assert keras_files.json_depth(b'{"a": "[[[[[[", "b": [1, {"c": "\\"]]"}]}') == 3


def test_member_holding_more_than_it_declares(base, tmp_path):
    config, weights, _ = base
    path = _write_keras(tmp_path / "liar.keras", config, weights, zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    # Lower the declared size of config.json in both headers: the data runs on.
    size = len(json.dumps(config).encode())
    old = size.to_bytes(4, "little")
    data = data.replace(old, (size - 10).to_bytes(4, "little"))
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        fastlstm.from_keras(path)


# ------------------------------------------------- broken configs
def _functional(config):
    return config["config"]


def _layer(config, cls):
    return next(e for e in _functional(config)["layers"] if e["class_name"] == cls)


def _history(config, cls):
    return _layer(config, cls)["inbound_nodes"][0]["args"][0]["config"]["keras_history"]


def _self_cycle(config):
    lstm = _layer(config, "LSTM")
    _history(config, "LSTM")[0] = lstm["name"]


def _two_cycle(config):
    _history(config, "LSTM")[0] = _layer(config, "Dense")["name"]


def _dangling(config):
    _history(config, "Dense")[0] = "nowhere"


def _bad_call_index(config):
    _history(config, "Dense")[1] = 7


def _bad_output_index(config):
    _history(config, "Dense")[2] = 5


def _no_class_name(config):
    del _layer(config, "Dense")["class_name"]


def _layers_not_a_list(config):
    _functional(config)["layers"] = {"a": 1}


def _nodes_not_a_list(config):
    _layer(config, "Dense")["inbound_nodes"] = 3


def _history_not_a_triple(config):
    _layer(config, "Dense")["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = [1]


def _units_a_string(config):
    _layer(config, "Dense")["config"]["units"] = "four"


def _unknown_kwarg(config):
    _layer(config, "Dense")["inbound_nodes"][0]["kwargs"]["constants"] = 1


def _mask(value):
    def edit(config):
        _layer(config, "LSTM")["inbound_nodes"][0]["kwargs"]["mask"] = value
    return edit


def _no_output_layers(config):
    del _functional(config)["output_layers"]


def _class_unknown(config):
    config["class_name"] = "Subclassed"


@pytest.mark.parametrize("break_config, error, message", [
    (_self_cycle, ValueError, r"cycle: layer 'lstm\w*' reads from 'lstm\w*'"),
    (_two_cycle, ValueError, "the layers form a cycle"),
    (_dangling, ValueError, r"call 0 of layer 'nowhere', which the config does not have"),
    (_bad_call_index, ValueError, r"call 7 of layer 'lstm\w*', which the config does not"),
    (_bad_output_index, ValueError, r"output 5 of layer 'lstm\w*', which has 1"),
    (_no_class_name, ValueError, r"layers\[2\] has no 'class_name' string"),
    (_layers_not_a_list, ValueError, "a functional config needs a non-empty 'layers' list"),
    (_nodes_not_a_list, ValueError, r"layer 'dense\w*': 'inbound_nodes' must be a list"),
    (_history_not_a_triple, ValueError, r"a tensor reference must be \[layer name, call "
                                        r"index, output index\], got \[1\]"),
    (_units_a_string, TypeError, r"layer 'dense\w*' \(Dense\): config 'units' must be int, "
                                 r"got 'four'"),
    (_unknown_kwarg, ValueError, r"call 0 has arguments \['constants'\]"),
    # A mask with the wrong structure for the call's one input tensor.
    (_mask([]), ValueError, r"layer 'lstm\w*': call 0's mask must be None, a tensor or a "
                            r"list of 1 tensors or nulls \(one per input\), got \[\]"),
    (_mask(3), ValueError, r"call 0's mask must be None, .*, got 3"),
    (_mask([None, None]), ValueError, r"call 0's mask must be .*, got \[None, None\]"),
    (_no_output_layers, ValueError, "'output_layers' must be a non-empty list, got None"),
    (_class_unknown, ValueError, "expected a Sequential or functional model, got class_name "
                                 "'Subclassed'"),
])
def test_broken_config_names_key_and_file(base, tmp_path, break_config, error, message):
    config, weights, _ = base
    config = json.loads(json.dumps(config))
    break_config(config)
    path = _write_keras(tmp_path / "broken.keras", config, weights)
    with pytest.raises(error, match=message) as raised:
        fastlstm.from_keras(path)
    assert str(path) in str(raised.value)


def test_non_numeric_variable_keys(base, tmp_path):
    config, weights, _ = base

    def rename(h5):
        h5.move("layers/dense/vars/1", "layers/dense/vars/bias")

    path = _write_keras(tmp_path / "keys.keras", config, _edit_h5(weights, rename))
    with pytest.raises(ValueError, match=r"/layers/dense/vars holds \['0', 'bias'\]; Keras "
                                         r"names variables 0, 1, 2"):
        fastlstm.from_keras(path)


def test_not_a_zip_or_not_hdf5(tmp_path):
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a .keras file"):
        fastlstm.from_keras(tmp_path / "junk.keras")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        fastlstm.from_keras(tmp_path / "junk.h5")


# ------------------------------------------------- fuzz
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=6)


def _paths(value, prefix=()):
    """Every path into nested dicts and lists."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


def _load_and_call(path):
    try:
        model = _capped(lambda: fastlstm.from_keras(path))
    except (ValueError, TypeError):
        return
    try:
        model(np.zeros((2, 5, 3), np.float32))
    except (ValueError, TypeError):
        pass


def _mutate(config, data):
    """Up to three random parts of ``config`` replaced by random JSON."""
    config = json.loads(json.dumps(config))
    paths = list(_paths(config))[1:]
    for _ in range(data.draw(st.integers(0, 3))):
        path = data.draw(st.sampled_from(paths))
        holder = config
        try:
            for key in path[:-1]:
                holder = holder[key]
            holder[path[-1]] = data.draw(_JSON)
        except (KeyError, IndexError, TypeError):
            pass            # an earlier replacement removed this path
    return config


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_broken_legacy_h5_files(base, tmp_path, data):
    """A legacy .h5 whose model_config has random parts replaced and whose
    weight datasets are replaced by random shapes: a model or a
    ValueError/TypeError, within the memory cap."""
    _, _, directory = base
    path = tmp_path / "fuzz.h5"
    path.write_bytes((directory / "base.h5").read_bytes())
    with h5py.File(path, "r+") as h5:
        config = _mutate(json.loads(h5.attrs["model_config"]), data)
        h5.attrs["model_config"] = json.dumps(config)
        names = []
        h5["model_weights"].visititems(
            lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        for name in data.draw(st.lists(st.sampled_from(sorted(names)), max_size=2)):
            shape = tuple(data.draw(st.lists(st.integers(0, 2**20), max_size=3)))
            del h5["model_weights"][name]
            h5["model_weights"].create_dataset(name, shape, "f4")    # declared, unwritten
    _load_and_call(path)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_broken_keras_files(base, tmp_path, data):
    """Random parts of a real config replaced by random JSON, and random
    bytes of the weights file flipped: the loader returns a model or raises
    ValueError/TypeError, within the memory cap."""
    config, weights, _ = base
    config = _mutate(config, data)
    blob = bytearray(weights)
    for _ in range(data.draw(st.integers(0, 4))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    _load_and_call(_write_keras(tmp_path / "fuzz.keras", config, bytes(blob)))
