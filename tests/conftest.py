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
