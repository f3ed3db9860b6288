"""Hypothesis: random shapes, flags, dtypes and activations against the
NumPy reference."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastlstm
from fastlstm.reference import lstm as reference


@st.composite
def problems(draw):
    batch = draw(st.integers(0, 5))
    steps = draw(st.integers(0, 9))
    # The first five and the bounded later ones: the other later ones grow
    # (or overflow, as exp of exp does) over these steps with an initializer's
    # weights; test_kernel_activations.py runs them on scaled problems.
    names = sorted(["tanh", "sigmoid", "hard_sigmoid", "relu", "linear", "softsign", "relu6"])
    activation = draw(st.sampled_from(names))
    recurrent_activation = draw(st.sampled_from(names))
    # Activations with values above 1 (relu, linear, and relu6, which is
    # bounded but gives gates up to 6) let h and c grow geometrically, and
    # each step scales the rounding error by that growth; float32 then drifts
    # beyond 1e-5 relative within a few steps (relu6 gates over 9 steps:
    # 7e-5, seen on the aarch64 build, whose FMA contraction rounds
    # differently from NumPy's), so those run in float64.
    growing = {"relu", "linear", "relu6"} & {activation, recurrent_activation}
    dtypes = [np.float64] if growing else [np.float32, np.float64]
    return dict(
        batch=batch, steps=steps,
        input_dim=draw(st.integers(1, 6)),
        units=draw(st.integers(1, 9)),
        dtype=draw(st.sampled_from(dtypes)),
        return_sequences=draw(st.booleans()),
        return_state=draw(st.booleans()),
        go_backwards=draw(st.booleans()),
        use_bias=draw(st.booleans()),
        masked=draw(st.booleans()),
        with_state=draw(st.booleans()),
        activation=activation,
        recurrent_activation=recurrent_activation,
        seed=draw(st.integers(0, 2**32 - 1)),
    )


# ``tol`` is a pure function, so sharing it across examples is safe.
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(p=problems())
def test_layer_matches_reference(p, tol):
    rng = np.random.default_rng(p["seed"])
    dtype, units = p["dtype"], p["units"]
    layer = fastlstm.LSTM(units, activation=p["activation"],
                          recurrent_activation=p["recurrent_activation"],
                          use_bias=p["use_bias"], return_sequences=p["return_sequences"],
                          return_state=p["return_state"], go_backwards=p["go_backwards"],
                          dtype=np.dtype(dtype).name, bias_initializer="ones",
                          seed=p["seed"])
    x = rng.normal(size=(p["batch"], p["steps"], p["input_dim"])).astype(dtype)
    mask = rng.random((p["batch"], p["steps"])) > 0.3 if p["masked"] else None
    state = (list(rng.normal(size=(2, p["batch"], units)).astype(dtype))
             if p["with_state"] else None)

    got = layer(x, mask=mask, initial_state=state)

    weights = layer.get_weights()
    sequence, last, h, c = reference(
        x, *weights[:2], weights[2] if p["use_bias"] else None, initial_state=state,
        mask=mask, go_backwards=p["go_backwards"], activation=p["activation"],
        recurrent_activation=p["recurrent_activation"])
    output = sequence if p["return_sequences"] else last
    expected = [output, h, c] if p["return_state"] else [output]
    got = got if p["return_state"] else [got]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape and g.dtype == dtype
        # Where linear activations overflow (h and c grow like a power tower
        # over the steps), sums of infinities are inf or nan depending on the
        # order of the products (the kernel's FMA order is not NumPy's):
        # either is an overflow, so there only "not finite" is compared.
        overflowed = ~np.isfinite(e)
        np.testing.assert_array_equal(~np.isfinite(g), overflowed)
        np.testing.assert_allclose(g[~overflowed], e[~overflowed], **tol(dtype))
