"""fastlstm against Keras 3's own LSTM (torch backend, set in conftest.py)
after moving the same weights: the four return modes, masks (including the
corner cases the design card names), go_backwards and initial states."""
import itertools

import numpy as np
import pytest

import fastlstm

keras = pytest.importorskip("keras", reason="keras is installed by the [test] extra")


def keras_run(weights, x, *, dtype, mask=None, initial_state=None, **options):
    layer = keras.layers.LSTM(weights[1].shape[0], dtype=np.dtype(dtype).name, **options)
    layer.build((None, None, x.shape[2]))
    layer.set_weights(weights)
    kwargs = {}
    if mask is not None:
        kwargs["mask"] = keras.ops.convert_to_tensor(mask)
    if initial_state is not None:
        kwargs["initial_state"] = [keras.ops.convert_to_tensor(s, dtype=layer.dtype)
                                   for s in initial_state]
    result = layer(keras.ops.convert_to_tensor(x, dtype=layer.dtype), **kwargs)
    if isinstance(result, (list, tuple)):
        return [keras.ops.convert_to_numpy(r) for r in result]
    return keras.ops.convert_to_numpy(result)


def ours(weights, x, *, dtype, mask=None, initial_state=None, **options):
    layer = fastlstm.LSTM(weights[1].shape[0], dtype=np.dtype(dtype).name, **options)
    layer.set_weights(weights)
    return layer(x, mask=mask, initial_state=initial_state)


def assert_same(got, want, dtype, tol):
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, **tol(dtype))
    else:
        assert isinstance(got, np.ndarray)
        np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("return_sequences,return_state",
                         list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("go_backwards", [False, True])
def test_return_modes(dtype, return_sequences, return_state, go_backwards, make_weights, tol):
    rng = np.random.default_rng(21)
    weights = make_weights(5, 6, dtype, seed=7)
    x = rng.normal(size=(4, 7, 5)).astype(dtype)
    options = dict(return_sequences=return_sequences, return_state=return_state,
                   go_backwards=go_backwards)
    assert_same(ours(weights, x, dtype=dtype, **options),
                keras_run(weights, x, dtype=dtype, **options), dtype, tol)


# float32 only: with a mask Keras runs its generic step loop, whose
# keras.ops.matmul computes in float32 even for float64 tensors (Keras 3.15's
# dtypes.result_type("float64", "float64") is "float32"), so Keras itself is
# only float32-accurate there.  fastlstm's float64 masks are checked against
# the NumPy reference in test_kernel.py.
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_masks_and_initial_state(go_backwards, return_sequences, make_weights, tol):
    dtype = np.float32
    rng = np.random.default_rng(22)
    weights = make_weights(3, 5, dtype, seed=8)
    x = rng.normal(size=(5, 6, 3)).astype(dtype)
    mask = rng.random((5, 6)) > 0.4
    mask[0] = [False, False, True, True, False, True]   # leading masked steps
    mask[1] = [True, True, True, False, False, False]   # trailing masked steps
    mask[2] = False                                     # nothing to process
    mask[3] = True
    state = list(rng.normal(size=(2, 5, 5)).astype(dtype))
    options = dict(return_sequences=return_sequences, return_state=True,
                   go_backwards=go_backwards)
    got = ours(weights, x, dtype=dtype, mask=mask, initial_state=state, **options)
    want = keras_run(weights, x, dtype=dtype, mask=mask, initial_state=state, **options)
    assert_same(got, want, dtype, tol)


@pytest.mark.parametrize("activation,recurrent_activation", [
    ("relu", "hard_sigmoid"), ("sigmoid", "tanh"), ("linear", "sigmoid"), ("tanh", "linear")])
def test_activations(activation, recurrent_activation, make_weights, tol):
    rng = np.random.default_rng(23)
    weights = make_weights(4, 3, np.float64, seed=9)
    x = rng.normal(size=(3, 5, 4))
    options = dict(activation=activation, recurrent_activation=recurrent_activation,
                   return_sequences=True)
    assert_same(ours(weights, x, dtype=np.float64, **options),
                keras_run(weights, x, dtype=np.float64, **options), np.float64, tol)


def test_tutorial_parameter_count_matches_keras():
    layer = keras.layers.LSTM(16)
    layer.build((None, 4, 10))
    ours_layer = fastlstm.LSTM(16)
    ours_layer.build((None, 4, 10))
    assert ours_layer.count_params() == layer.count_params() == 1728
    assert [w.shape for w in ours_layer.get_weights()] == \
        [tuple(w.shape) for w in layer.get_weights()]
