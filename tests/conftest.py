"""Shared fixtures.

Tolerances: outputs of an LSTM are bounded by 1 in magnitude (tanh/sigmoid),
and fastlstm differs from a peer only in the order of the K = I + U terms
summed by the matmuls and in libm's last ulp.  Over the sizes tested that
stays below ~1e-6 absolute in float32 (a few dozen ulps of 1.0) and ~1e-13
in float64, so float32 is compared at rtol=1e-5/atol=1e-6 and float64 at
rtol=1e-10/atol=1e-12.
"""
import os

# Keras reads its backend once, at import: the parity tests use torch's.
os.environ["KERAS_BACKEND"] = "torch"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

TOLERANCE = {
    np.dtype(np.float32): dict(rtol=1e-5, atol=1e-6),
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
}


@pytest.fixture
def tol():
    """``tol(dtype)`` → keyword arguments for ``np.testing.assert_allclose``."""
    return lambda dtype: TOLERANCE[np.dtype(dtype)]


@pytest.fixture
def activation_problem():
    """``activation_problem(dtype, seed, name, (B, T, F, U))`` → ``x,
    [kernel, recurrent_kernel, bias], [h0, c0], mask`` for an LSTM whose
    activation and recurrent_activation are ``name``: weights small enough
    that the unbounded activations' recurrences stay O(1) over the steps.
    exponential as both activations compounds (exp of a sum of exps): its
    problem is ten times smaller and its recurrent kernel a thousand times,
    so that h = o exp(c) does not feed back into the gates' exponentials."""

    def make(dtype, seed, name, shape):
        batch, timesteps, features, units = shape
        scale = 0.1 if name == "exponential" else 1.0
        rng = np.random.default_rng(seed)
        x = (scale * rng.normal(size=(batch, timesteps, features))).astype(dtype)
        weights = [(factor * rng.uniform(-0.4, 0.4, size)).astype(dtype)
                   for factor, size in [(scale, (features, 4 * units)),
                                         (scale**3, (units, 4 * units)),
                                         (scale, (4 * units,))]]
        state = [(0.5 * scale * rng.normal(size=(batch, units))).astype(dtype)
                 for _ in range(2)]
        mask = rng.random((batch, timesteps)) > 0.3
        return x, weights, state, mask

    return make


@pytest.fixture
def make_weights():
    """``make_weights(input_dim, units, dtype, seed)`` → random Keras-layout
    ``[kernel, recurrent_kernel, bias]`` with a non-zero bias, scaled so the
    gates are neither saturated nor linear."""

    def make(input_dim, units, dtype=np.float32, seed=0):
        rng = np.random.default_rng(seed)
        return [
            rng.uniform(-0.5, 0.5, (input_dim, 4 * units)).astype(dtype),
            rng.uniform(-0.5, 0.5, (units, 4 * units)).astype(dtype),
            rng.uniform(-0.5, 0.5, 4 * units).astype(dtype),
        ]

    return make


@pytest.fixture(params=["portable", "sse2", "neon", "avx2", "avx512"])
def isa(request):
    """Each instruction set in turn (skipped where the CPU lacks it),
    restoring the default afterwards.  Every set has float32 and float64
    tiles: tests that take ``isa`` parametrize the dtype themselves."""
    from fastlstm import _kernel

    name = request.param
    if name not in _kernel.supported_isas():
        pytest.skip(f"this CPU cannot run {name} (supported: {_kernel.supported_isas()})")
    previous = _kernel.isa()
    _kernel.set_isa(name)
    yield name
    _kernel.set_isa(previous)
