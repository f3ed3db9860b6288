"""Fuzz: random shapes (zero sizes included), dtypes, memory layouts, masks,
initial states and flags (training mode included) thrown at ``LSTM`` and
``Bidirectional``.

Every call must either raise a ValueError/TypeError whose message names the
first bad argument (in the order the layer checks them: x, mask/lengths,
initial_state), or return what the NumPy reference computes.  It must never
crash and never write into the caller's arrays.

The number of cases comes from a Hypothesis settings profile chosen by the
environment variable FASTLSTM_FUZZ: "ci" (default, 200 cases per test) or
"long" (20,000), e.g. ``FASTLSTM_FUZZ=long pytest tests/test_fuzz.py
--hypothesis-show-statistics``.
"""
import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import fastlstm
from fastlstm import reference

settings.register_profile(
    "ci", max_examples=200, deadline=None,
    # tol and make_weights are pure functions: sharing them across examples is safe.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("long", parent=settings.get_profile("ci"), max_examples=20_000)
PROFILE = settings.get_profile(os.environ.get("FASTLSTM_FUZZ", "ci"))

# Input dtypes: the numeric kinds are cast to the layer's dtype, the rest refused.
NUMERIC = ["bool", "int8", "int32", "int64", "uint16", "float16", "float32", "float64"]
REFUSED = ["complex64", "complex128", "object", "str"]
LAYOUTS = ["C", "F", "strided", "negative", "list"]
# Bounded activations only: test_properties covers relu/linear, whose
# unbounded growth needs float64 to stay within the float32 tolerance.
ACTIVATIONS = ["tanh", "sigmoid", "hard_sigmoid"]


def _values(rng, shape, dtype):
    """Random values in [-2, 2] as ``dtype`` (strings and objects hold numbers)."""
    values = rng.uniform(-2, 2, shape)
    kind = np.dtype(dtype).kind
    if kind == "b":
        return values > 0
    if kind in "iu":
        integers = np.rint(values)
        return (np.abs(integers) if kind == "u" else integers).astype(dtype)
    return values.astype(dtype)


def _layout(array, layout, readonly):
    """The same values as ``array`` in another memory layout."""
    if layout == "list":
        return array.tolist()
    if layout == "F":
        array = np.asfortranarray(array)
    elif layout == "strided":     # every other element of a twice-as-large buffer
        big = np.empty(tuple(2 * n for n in array.shape), array.dtype)
        view = big[tuple(slice(None, None, 2) for _ in array.shape)]
        view[...] = array
        array = view
    elif layout == "negative":    # reversed views of a reversed copy
        flip = tuple(slice(None, None, -1) for _ in array.shape)
        array = array[flip].copy()[flip]
    else:
        array = np.ascontiguousarray(array)
    if readonly:
        array.flags.writeable = False
    return array


@st.composite
def arrays(draw, rng, shape, dtypes):
    dtype = draw(st.sampled_from(dtypes))
    layout = draw(st.sampled_from(LAYOUTS if dtype != "str" else LAYOUTS[:-1]))
    return _layout(_values(rng, shape, dtype), layout, draw(st.booleans()))


def _shape_near(draw, shape):
    """``shape`` or, once in a while, a wrong one (rank or one size off)."""
    change = draw(st.sampled_from(["same"] * 12 + ["rank", "size"]))
    if change == "rank":
        return draw(st.sampled_from([shape[:-1], shape + (1,)]))
    if change == "size" and shape:
        axis = draw(st.integers(0, len(shape) - 1))
        wrong = (shape[axis] + draw(st.sampled_from([-1, 1, 2]))) % 5
        return shape[:axis] + (wrong,) + shape[axis + 1:]
    return shape


def _rarely(draw):
    return draw(st.integers(0, 3)) == 0


@st.composite
def cases(draw, bidirectional):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    batch, steps = draw(st.integers(0, 4)), draw(st.integers(0, 5))
    input_dim, units = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    config = dict(
        units=units, dtype=draw(st.sampled_from(["float32", "float64"])),
        return_sequences=draw(st.booleans()), return_state=draw(st.booleans()),
        go_backwards=draw(st.booleans()), use_bias=draw(st.booleans()),
        activation=draw(st.sampled_from(ACTIVATIONS)),
        recurrent_activation=draw(st.sampled_from(ACTIVATIONS)))
    x_shape = _shape_near(draw, (batch, steps, input_dim))
    if draw(st.integers(0, 19)) == 0:
        x_shape = (batch, steps, 0)             # no features at all
    # Refused dtypes in one case out of four, so that most calls compute.
    x = draw(arrays(rng, x_shape, NUMERIC + REFUSED if _rarely(draw) else NUMERIC))
    mask = lengths = None
    how = draw(st.sampled_from(["none", "none", "mask", "mask", "mask", "lengths", "both"]))
    if how in ("mask", "both"):
        mask_dtypes = ["bool", "bool", "int8", "uint16"] + (
            ["float32", "complex64", "object"] if _rarely(draw) else [])
        mask = draw(arrays(rng, _shape_near(draw, (batch, steps)), mask_dtypes))
    if how in ("lengths", "both"):
        low, high = (-1, steps + 1) if draw(st.booleans()) else (0, steps)
        lengths = rng.integers(low, high + 1, _shape_near(draw, (batch,)))
        if draw(st.booleans()):
            lengths = lengths.astype(draw(st.sampled_from(["float64", "uint8", "int16"])))
    count = 4 if bidirectional else 2
    states = None
    if draw(st.booleans()):
        states = [draw(arrays(rng, _shape_near(draw, (batch, units)),
                              NUMERIC + (["complex64"] if _rarely(draw) else [])))
                  for _ in range(count)]
        if draw(st.integers(0, 9)) == 0:        # a wrong number of states
            states = states[:-1]
    merge_mode = draw(st.sampled_from(["concat", "sum", "mul", "ave", None]))
    # training=True records the pass for backward; without dropout its
    # outputs are the inference outputs (Bidirectional has no training mode).
    training = not bidirectional and draw(st.booleans())
    return dict(config=config, input_dim=input_dim, x=x, mask=mask, lengths=lengths,
                states=states, merge_mode=merge_mode, training=training,
                seed=int(rng.integers(2**31)))


# ------------------------------------------------------------------ the oracle
def _array_error(value, shape, kinds):
    """Why ``value`` is not an array of ``shape`` with a dtype kind in ``kinds``."""
    array = np.asarray(value)
    if array.dtype.kind not in kinds:
        return "dtype"
    if shape is not None and array.shape != shape:
        return "shape"
    return None


def _first_bad_argument(case, bidirectional):
    """The argument the layer must complain about, or None for a valid call."""
    x, input_dim = np.asarray(case["x"]), case["input_dim"]
    if x.dtype.kind not in "biuf" or x.shape[2:] != (input_dim,) or x.ndim != 3:
        return "x"
    batch, steps = x.shape[:2]
    if case["mask"] is not None and case["lengths"] is not None:
        return "mask"
    if case["mask"] is not None and _array_error(case["mask"], (batch, steps), "biu"):
        return "mask"
    if case["lengths"] is not None:
        lengths = np.asarray(case["lengths"])
        if _array_error(lengths, (batch,), "iu") or (
                lengths.size and (lengths.min() < 0 or lengths.max() > steps)):
            return "lengths"
    states, units = case["states"], case["config"]["units"]
    if states is not None:
        if len(states) != (4 if bidirectional else 2):
            return "initial_state"
        if any(_array_error(s, (batch, units), "biuf") for s in states):
            return "initial_state"
    return None


def _expected(case, weights, bidirectional):
    """What Keras would return, from the NumPy reference."""
    config, dtype = case["config"], np.dtype(case["config"]["dtype"])
    x = np.asarray(case["x"]).astype(dtype)
    batch, steps = x.shape[:2]
    mask = None if case["mask"] is None else np.asarray(case["mask"]) != 0
    if case["lengths"] is not None:
        mask = np.arange(steps) < np.asarray(case["lengths"])[:, None]
    states = None if case["states"] is None else [np.asarray(s).astype(dtype)
                                                  for s in case["states"]]
    run = dict(mask=mask, activation=config["activation"],
               recurrent_activation=config["recurrent_activation"])
    half = len(weights) // 2 if bidirectional else len(weights)
    directions = [(weights[:half], config["go_backwards"], states and states[:2])]
    if bidirectional:
        directions.append((weights[half:], not config["go_backwards"], states and states[2:]))
    outputs, finals = [], []
    for direction, backwards, start in directions:
        sequence, last, h, c = reference.lstm(x, *direction, initial_state=start,
                                              go_backwards=backwards, **run)
        output = sequence if config["return_sequences"] else last
        outputs.append(output)
        finals += [h, c]
    if bidirectional and config["return_sequences"]:
        outputs[1] = outputs[1][:, ::-1]
        if mask is not None:
            outputs = [np.where(mask[:, :, None], o, 0) for o in outputs]
    if bidirectional:
        forward, backward = outputs
        merged = {"concat": lambda: [np.concatenate(outputs, axis=-1)],
                  "sum": lambda: [forward + backward], "mul": lambda: [forward * backward],
                  "ave": lambda: [(forward + backward) / 2], None: lambda: outputs}
        outputs = merged[case["merge_mode"]]()
    result = outputs + (finals if config["return_state"] else [])
    return result if len(result) > 1 else result[0]


def _snapshot(value):
    """A deep copy of an argument (arrays, nested lists, None) with each
    array's flags and strides."""
    if isinstance(value, np.ndarray):
        return (value.copy(), value.flags.writeable, value.strides)
    if isinstance(value, list):
        return [_snapshot(v) for v in value]
    return value


def _unchanged(value, snapshot):
    if isinstance(value, np.ndarray):
        copy, writeable, strides = snapshot
        return (np.array_equal(value, copy) and value.flags.writeable == writeable
                and value.strides == strides)
    if isinstance(value, list):
        return len(value) == len(snapshot) and all(
            _unchanged(v, s) for v, s in zip(value, snapshot, strict=True))
    return value == snapshot


def _run(case, bidirectional, make_weights, tol):
    config = case["config"]
    layer = fastlstm.LSTM(**config)
    weights = make_weights(case["input_dim"], config["units"], config["dtype"], case["seed"])
    if bidirectional:
        layer = fastlstm.Bidirectional(layer, merge_mode=case["merge_mode"])
        weights += make_weights(case["input_dim"], config["units"], config["dtype"],
                                case["seed"] + 1)
    if not config["use_bias"]:
        weights = [w for w in weights if w.ndim == 2]
    layer.set_weights(weights)
    arguments = {name: case[name] for name in ("x", "mask", "lengths")}
    arguments["initial_state"] = case["states"]
    before = {name: _snapshot(value) for name, value in arguments.items()}
    flags = {"training": True} if case["training"] else {}

    bad = _first_bad_argument(case, bidirectional)
    if bad is not None:
        event(f"refused: {bad}")
        with pytest.raises((ValueError, TypeError)) as error:
            layer(**arguments, **flags)
        assert re.search(rf"\b{bad}\b", str(error.value)), (bad, str(error.value))
    else:
        event("computed in training mode" if case["training"] else "computed")
        got = layer(**arguments, **flags)
        expected = _expected(case, layer.get_weights(), bidirectional)
        got, expected = ((got, expected) if isinstance(expected, list)
                         else ([got], [expected]))
        assert len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            assert g.dtype == np.dtype(config["dtype"]) and g.shape == e.shape
            np.testing.assert_allclose(g, e, **tol(config["dtype"]))
    for name, value in arguments.items():
        assert _unchanged(value, before[name]), f"{name} was modified"


@settings(PROFILE)
@given(case=cases(bidirectional=False))
def test_lstm_fuzz(case, make_weights, tol):
    _run(case, False, make_weights, tol)


@settings(PROFILE)
@given(case=cases(bidirectional=True))
def test_bidirectional_fuzz(case, make_weights, tol):
    _run(case, True, make_weights, tol)


@settings(PROFILE)
@given(value=st.one_of(st.integers(-3, 3), st.floats(allow_nan=True), st.booleans(),
                       st.none(), st.text(max_size=3), st.integers(2**29, 2**64)))
def test_units_fuzz(value):
    """The constructor takes a positive int whose 4 * units fits a C int, or
    raises an error naming ``units``."""
    valid = (isinstance(value, int) and not isinstance(value, bool)
             and 0 < value <= (2**31 - 1) // 4)
    if valid:
        assert fastlstm.LSTM(value).units == value
    else:
        with pytest.raises((ValueError, TypeError), match="units"):
            fastlstm.LSTM(value)


# ------------------------------------------------------------- broken files
# fastlstm.load on .npz files made from a genuine one by Hypothesis: bytes
# flipped or cut, the config's JSON changed anywhere, .npy headers declaring
# other (huge) shapes or dtypes, entries dropped or added.  Every file must
# load or raise a ValueError/TypeError (a MemoryError only from fastlstm's
# own estimate, before allocating), in a child process whose address space
# is capped, so that a file that makes fastlstm allocate what it declares
# fails the test instead of the machine.
MEMORY_CAP = 2 * 2**30
CONFIG_KEYS = ["class_name", "config", "layers", "layer", "backward_layer", "units",
               "input_shape", "merge_mode", "dtype", "return_sequences", "mask_value",
               "use_bias", "num_threads", "kernel_initializer", "time_major"]
DTYPES = ["<f4", "<f8", "<i4", "|b1", "|O", "<c16", "|S4", "<U3", "V8", [("a", "<f4")]]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
    | st.text(max_size=6) | st.sampled_from(["LSTM", "Sequential", "float64", "concat"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(CONFIG_KEYS) | st.text(max_size=4), inner, max_size=4),
    max_leaves=12)


def _genuine_entries():
    """The entries of a saved stack holding every kind of layer."""
    import tempfile
    import zipfile

    stack = fastlstm.Sequential([
        fastlstm.Masking(), fastlstm.LSTM(3, return_sequences=True, seed=1),
        fastlstm.Bidirectional(fastlstm.LSTM(2, seed=2), merge_mode="sum")],
        input_shape=(None, 4))
    with tempfile.TemporaryDirectory() as folder:
        stack.save(os.path.join(folder, "stack.npz"))
        with zipfile.ZipFile(os.path.join(folder, "stack.npz")) as archive:
            return {name: archive.read(name) for name in archive.namelist()}


def _npy(array):
    import io
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _places(value, path=()):
    """Every (path to a container, key) in a JSON value."""
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else [])
    for key, inner in items:
        yield path, key
        yield from _places(inner, path + (key,))


@st.composite
def broken_files(draw, genuine):
    import io
    import json
    import zipfile

    entries = dict(genuine)
    how = draw(st.sampled_from(["config", "config", "header", "header", "entries", "bytes",
                                "cut"]))
    if how == "config":
        config = json.loads(str(np.load(io.BytesIO(entries["config.npy"]))))
        path, key = draw(st.sampled_from(list(_places(config))))
        container = config
        for step in path:
            container = container[step]
        if isinstance(container, dict) and draw(st.booleans()):
            del container[key]
        else:
            container[key] = draw(JSON_VALUES)
        entries["config.npy"] = _npy(np.array(json.dumps(config)))
    elif how == "header":
        name = draw(st.sampled_from(sorted(n for n in entries if n.startswith("weight_"))))
        shape = tuple(draw(st.lists(st.sampled_from([0, 1, 2, 3, 4, 8, 12, 2**20, 2**31, 2**62]),
                                    max_size=3)))
        descr = draw(st.sampled_from(DTYPES))
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": descr, "fortran_order": draw(st.booleans()), "shape": shape})
        nbytes = int(np.prod(shape, dtype=object)) * np.dtype(descr).itemsize
        size = draw(st.sampled_from([nbytes, nbytes - 1, 0, 7]))
        entries[name] = header.getvalue() + b"\1" * max(0, min(size, 2**16))
    elif how == "entries":
        name = draw(st.sampled_from(sorted(entries)))
        change = draw(st.sampled_from(["drop", "rename", "add"]))
        data = entries.pop(name) if change != "add" else entries[name]
        if change != "drop":
            entries[draw(st.sampled_from(["weight_9.npy", "config", "weight_-1.npy",
                                          "weight_01.npy", name]))] = data
    buffer = io.BytesIO()
    compression = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    data = bytearray(buffer.getvalue())
    if how == "bytes":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif how == "cut":
        del data[draw(st.integers(0, len(data) - 1)):]
    return bytes(data)


def load_broken_files(folder):
    """The property, run by the test below in a child process."""
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    path = os.path.join(folder, "broken.npz")

    @settings(PROFILE, database=None)
    @given(data=broken_files(_genuine_entries()))
    def property(data):
        with open(path, "wb") as file:
            file.write(data)
        try:
            model = fastlstm.load(path)
        except (ValueError, TypeError) as error:
            event(type(error).__name__)
            assert path in str(error) or "config" in str(error), error
            return
        except MemoryError as error:
            assert "needs" in str(error), error      # refused before allocating
            event("MemoryError")
            return
        event("loaded")
        if model.built and model.input_dim:     # what loaded runs
            x = np.full((1, 2, model.input_dim), 0.5)
            outputs = model(x)
            outputs = outputs if isinstance(outputs, list) else [outputs]
            expected = model.compute_output_shape(x.shape)
            expected = expected if isinstance(expected, list) else [expected]
            assert [o.shape for o in outputs] == [tuple(e) for e in expected]
            assert all(np.isfinite(o).all() for o in outputs)

    property()


def test_broken_npz_files(tmp_path):
    import subprocess
    import sys

    code = (f"import runpy; runpy.run_path({__file__!r})['load_broken_files']"
            f"({str(tmp_path)!r})")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600,
                            env=dict(os.environ, FASTLSTM_FUZZ=os.environ.get("FASTLSTM_FUZZ",
                                                                                "ci")))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
