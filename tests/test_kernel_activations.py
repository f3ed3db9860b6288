"""The LSTM kernel's activations beyond tanh/sigmoid/hard_sigmoid/relu/linear:
every elementwise activation Keras 3 names (elu, selu, gelu, silu, softplus,
softsign, exponential, relu6, leaky_relu, hard_silu, mish), on every
instruction set and dtype.

- accuracy of the vector (and portable) code against values computed in a
  wider type: float64 for float32, long double or mpmath for float64;
- special values (NaN, infinities, signed zeros, huge inputs) as the NumPy
  reference gives them;
- a whole LSTM with the activation as both ``activation`` and
  ``recurrent_activation`` against Keras 3's LSTM (torch backend); their
  training gradients are checked against torch autograd in test_training.py.
"""
import mpmath
import numpy as np
import pytest

import fastlstm
from fastlstm import _kernel, activations

NEW = ["elu", "selu", "gelu", "silu", "softplus", "softsign", "exponential", "relu6",
       "leaky_relu", "hard_silu", "mish"]

_SELU = (activations._SELU_ALPHA, activations._SELU_SCALE)


def _wide(name, x):
    """The activation of float64 or long double ``x`` in that type (its own
    rounding is far below the checked dtype's ulp)."""
    one = x.dtype.type(1)
    softplus = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
    sigmoid = one / (one + np.exp(-x))
    forms = {
        "elu": lambda: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
        "selu": lambda: x.dtype.type(_SELU[1]) * np.where(
            x > 0, x, x.dtype.type(_SELU[0]) * np.expm1(np.minimum(x, 0))),
        "silu": lambda: x * sigmoid,
        "softplus": lambda: softplus,
        "softsign": lambda: x / (one + np.abs(x)),
        "exponential": lambda: np.exp(x),
        "relu6": lambda: np.clip(x, 0, 6),
        "leaky_relu": lambda: np.where(x > 0, x, x.dtype.type(0.2) * x),
        "hard_silu": lambda: x * np.clip(x + 3, 0, 6) / 6,
        "mish": lambda: x * np.tanh(softplus),
        "gelu": lambda: _gelu_exact(x),
    }
    return forms[name]()


def _gelu_exact(x):
    """x Phi(x), correctly rounded to float64 by mpmath, or in float64 by
    SciPy for float32 inputs (whose error is far below float32's ulp)."""
    if x.dtype != np.float64:       # long double: float64's reference
        mpmath.mp.dps = 40
        values = map(mpmath.mpf, x.astype(np.float64).tolist())
        return np.array([float(v * mpmath.ncdf(v)) for v in values])
    from scipy.special import ndtr
    return x * ndtr(x)


def _ulps(ours, truth):
    bits = np.int32 if ours.dtype == np.float32 else np.int64
    a = ours.view(bits).astype(np.int64)
    b = truth.view(bits).astype(np.int64)
    # Map the sign-magnitude bit patterns onto a line, so -0.0 and 0.0 meet.
    top = np.int64(1) << (31 if ours.dtype == np.float32 else 63)
    a = np.where(a < 0, -(a + top), a) if ours.dtype == np.float64 else np.where(
        a < 0, -(a & 0x7FFFFFFF), a)
    b = np.where(b < 0, -(b + top), b) if ours.dtype == np.float64 else np.where(
        b < 0, -(b & 0x7FFFFFFF), b)
    return np.abs(a - b)


# Measured bound (ulps, float32 / float64) of each vector activation against
# the wider reference on the inputs below, on every instruction set (with and
# without FMA); activations_vector.h's comments quote them.
ULPS = {"elu": (1, 1), "selu": (2, 3), "gelu": (6, 5), "silu": (3, 3), "softplus": (3, 3),
        "softsign": (1, 1), "exponential": (4, 5), "relu6": (0, 0), "leaky_relu": (1, 1),
        "hard_silu": (2, 2), "mish": (3, 4)}


def _inputs(dtype, name):
    """Where the activation varies (to the underflow of its tail and the
    overflow of exponential), tiny inputs, and large ones; 16-aligned."""
    rng = np.random.default_rng(31)
    count = 1000 if dtype == np.float64 and name == "gelu" else 10_000
    top = 88.0 if dtype == np.float32 else 709.0
    parts = [np.linspace(-12, 12, count // 2),
             rng.choice([-1, 1], count // 4) * 10.0 ** rng.uniform(-30, 0, count // 4),
             rng.uniform(-top, top, count // 4),
             [0.0, -0.0, 1.0, -1.0, 3.0, -3.0, 6.0, 0.625, -0.625, 5.0, -5.0, 20.0, -20.0,
              top, -top, 1e-30]]
    x = np.concatenate(parts).astype(dtype)
    return x[: len(x) // 16 * 16]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NEW)
def test_accuracy(isa, name, dtype):
    x = _inputs(dtype, name)
    ours = _kernel.activate(activations.CODES[name], x)
    wider = np.float64 if dtype == np.float32 else np.longdouble
    with np.errstate(over="ignore", invalid="ignore"):
        truth = _wide(name, x.astype(wider)).astype(dtype)
    # The kernel's exp flushes results below the smallest normal to zero, so
    # x e^x (silu, mish) and gelu's tail flush a little before their values
    # do (|x| < 2^10): an absolute error below 2^10 times the smallest normal.
    floor = np.finfo(dtype).tiny * 2**10
    finite = np.isfinite(truth)
    checked = finite & (np.abs(truth) >= floor)
    assert np.all(np.abs(ours[finite & ~checked] - truth[finite & ~checked]) < floor)
    np.testing.assert_array_equal(ours[~finite], truth[~finite])
    bound = 3 if isa == "portable" else ULPS[name][dtype == np.float64]   # portable: libm
    if dtype == np.float64 and np.finfo(np.longdouble).nmant <= 52 and name != "gelu":
        bound += 1             # long double is double here: the reference is libm's
    worst = _ulps(ours[checked], truth[checked])
    assert worst.max() <= bound, (x[checked][worst.argmax()], worst.max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NEW + ["swish", "hard_swish"])
def test_special_values(isa, name, dtype):
    big = np.finfo(dtype).max
    x = np.zeros(16, dtype)
    x[:10] = [np.nan, np.inf, -np.inf, -0.0, 0.0, big, -big, 1e30, -1e30, -np.nan]
    code = activations.CODES[activations.canonical(name, "activation")]
    ours = _kernel.activate(code, x)
    with np.errstate(all="ignore"):
        expected = activations.FUNCTIONS[name](x)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(expected))
    np.testing.assert_allclose(ours, expected, rtol=4 * np.finfo(dtype).eps)   # inf exact


# --------------------------------------------------------- whole LSTMs vs peers
B, T, F, U = 3, 5, 4, 6


_KERAS_CACHE = {}


def _keras(name, activation_problem):
    """Keras 3's LSTM (torch backend) on the problem, computed once per
    activation in float64 (the float32 problem is the float64 one rounded,
    and the float64 answer is the better reference for float32 too)."""
    key = name
    if key not in _KERAS_CACHE:
        import keras
        x, weights, state, _ = activation_problem(np.float64, 41, name, (B, T, F, U))
        layer = keras.layers.LSTM(U, activation=name, recurrent_activation=name,
                                  return_sequences=True, return_state=True,
                                  dtype="float64")
        layer.build((None, None, F))
        layer.set_weights(weights)
        # No mask: Keras's masked float64 steps are float32-accurate (1e-8),
        # and masks are not what is checked here.
        result = layer(keras.ops.convert_to_tensor(x, dtype=layer.dtype),
                       initial_state=[keras.ops.convert_to_tensor(s, dtype=layer.dtype)
                                      for s in state])
        _KERAS_CACHE[key] = [keras.ops.convert_to_numpy(r) for r in result]
    return _KERAS_CACHE[key]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NEW)
def test_lstm_matches_keras(isa, tol, activation_problem, name, dtype):
    x, weights, state, _ = activation_problem(dtype, 41, name, (B, T, F, U))
    layer = fastlstm.LSTM(U, activation=name, recurrent_activation=name,
                          return_sequences=True, return_state=True, dtype=dtype)
    layer.set_weights(weights)
    ours = layer(x, initial_state=state)
    for a, b in zip(ours, _keras(name, activation_problem), strict=True):
        np.testing.assert_allclose(a, b, **tol(dtype))


def test_whole_keras_model_with_kernel_activations(tmp_path):
    """from_keras of a model whose LSTM and Bidirectional use the new
    activations (aliases included), from the live model and its .keras file,
    matches model.predict, and survives fastlstm's own save and load."""
    import keras
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((6, 3)),
        layers.Bidirectional(layers.LSTM(4, activation="gelu", recurrent_activation="swish",
                                         return_sequences=True)),
        layers.LSTM(5, activation="selu", recurrent_activation="hard_swish"),
        layers.Dense(2)])
    rng = np.random.default_rng(51)
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype("float32")
                       for w in model.get_weights()])
    x = rng.normal(size=(4, 6, 3)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "model.keras")
    for source in (model, tmp_path / "model.keras"):
        np.testing.assert_allclose(fastlstm.from_keras(source)(x), expected,
                                   rtol=1e-5, atol=1e-6)
    imported = fastlstm.from_keras(model)
    imported.save(tmp_path / "model.npz")
    np.testing.assert_array_equal(fastlstm.load(tmp_path / "model.npz")(x), imported(x))


def test_aliases_are_stored_under_keras_names(tmp_path):
    layer = fastlstm.LSTM(3, activation="swish", recurrent_activation="hard_swish")
    assert (layer.activation, layer.recurrent_activation) == ("silu", "hard_silu")
    layer.build(2)
    layer.save(tmp_path / "layer.npz")
    loaded = fastlstm.load(tmp_path / "layer.npz")
    assert loaded.get_config()["activation"] == "silu"
    assert loaded.get_config()["recurrent_activation"] == "hard_silu"
    with pytest.raises(ValueError, match=r"activation must be one of \[.*'mish'.*\], "
                                         r"got 'softmax'"):
        fastlstm.LSTM(3, activation="softmax")


def test_torch_export_still_refuses_other_activations():
    """nn.LSTM computes tanh and sigmoid only."""
    layer = fastlstm.LSTM(3, activation="gelu")
    layer.build(2)
    with pytest.raises(ValueError, match="nn.LSTM computes activation='tanh', the layer "
                                         "has 'gelu'"):
        layer.to_torch()
