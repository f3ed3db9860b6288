"""The kernel's instruction-set paths, threads and vector activations.

Every path this CPU can run (AVX-512, AVX2+FMA, SSE2 or NEON, portable C)
is forced in turn and compared with the NumPy reference; paths the CPU lacks
are skipped with the reason.  Thread counts must give bitwise-identical results.
"""
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import fastlstm
from fastlstm import _kernel, reference

ACTIVATIONS = ["tanh", "sigmoid", "hard_sigmoid", "relu", "linear"]


def _weights(input_dim, units, dtype, seed, bounded=True, long=False):
    """Keras-layout weights.  For unbounded activations (relu, linear) and
    long sequences the weights are small, so values stay O(1) and the
    recurrence does not amplify float32 rounding beyond the tolerance."""
    rng = np.random.default_rng(seed)
    scale = 0.3 / np.sqrt(units + input_dim) if not bounded or long else 0.5
    return [
        rng.uniform(-scale, scale, (input_dim, 4 * units)).astype(dtype),
        rng.uniform(-scale, scale, (units, 4 * units)).astype(dtype),
        rng.uniform(-scale, scale, 4 * units).astype(dtype),
    ]


def _run(weights, x, *, mask=None, state=None, go_backwards=False, num_threads=None,
         activation="tanh", recurrent_activation="sigmoid"):
    """fastlstm and the reference on the same problem: (ours, theirs), each
    (sequence, last_output, h, c)."""
    units = weights[1].shape[0]
    layer = fastlstm.LSTM(units, return_sequences=True, return_state=True,
                          go_backwards=go_backwards, dtype=x.dtype, num_threads=num_threads,
                          activation=activation, recurrent_activation=recurrent_activation)
    layer.set_weights(weights)
    sequence, h, c = layer(x, mask=mask, initial_state=state)
    last = fastlstm.LSTM(units, go_backwards=go_backwards, dtype=x.dtype,
                         num_threads=num_threads, activation=activation,
                         recurrent_activation=recurrent_activation)
    last.set_weights(weights)
    ours = (sequence, last(x, mask=mask, initial_state=state), h, c)
    theirs = reference.lstm(x, *weights, initial_state=state, mask=mask,
                            go_backwards=go_backwards, activation=activation,
                            recurrent_activation=recurrent_activation)
    return ours, theirs


def _assert_close(ours, theirs, tol, dtype):
    for name, a, b in zip(("sequence", "last output", "h", "c"), ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, **tol(dtype), err_msg=name)


# Units not a multiple of any vector width (1, 13, 33), exactly one (16),
# batch 1 and 1000 (more rows than any tile), and tails of every tile size.
SHAPES = [(1, 9, 3, 1), (1, 30, 5, 17), (7, 6, 4, 13), (13, 9, 10, 33), (100, 4, 10, 16),
          (1000, 3, 6, 13), (2, 12, 8, 70)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(isa, shape, dtype, tol):
    batch, timesteps, features, units = shape
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, timesteps, features)).astype(dtype)
    state = [rng.standard_normal((batch, units)).astype(dtype) for _ in range(2)]
    ours, theirs = _run(_weights(features, units, dtype, 2), x, state=state)
    _assert_close(ours, theirs, tol, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_mask_and_go_backwards(isa, dtype, go_backwards, tol):
    batch, timesteps, features, units = 9, 11, 5, 21
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, timesteps, features)).astype(dtype)
    mask = rng.random((batch, timesteps)) > 0.4
    mask[0] = False            # a row that never runs: zeros out, state carried
    mask[1, :5] = False        # leading masked steps output zeros
    mask[2, -4:] = False       # trailing masked steps repeat the last output
    state = [rng.standard_normal((batch, units)).astype(dtype) for _ in range(2)]
    ours, theirs = _run(_weights(features, units, dtype, 4), x, mask=mask, state=state,
                        go_backwards=go_backwards)
    _assert_close(ours, theirs, tol, dtype)
    assert not ours[0][0].any() and not ours[1][0].any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "activation, recurrent_activation",
    [(a, "sigmoid") for a in ACTIVATIONS] + [("tanh", r) for r in ACTIVATIONS if r != "sigmoid"])
def test_every_activation(isa, dtype, activation, recurrent_activation, tol):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 8, 6)).astype(dtype)
    mask = rng.random((5, 8)) > 0.3
    bounded = {activation, recurrent_activation} <= {"tanh", "sigmoid", "hard_sigmoid"}
    ours, theirs = _run(_weights(6, 19, dtype, 6, bounded), x, mask=mask,
                        activation=activation, recurrent_activation=recurrent_activation)
    _assert_close(ours, theirs, tol, dtype)


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("shape", [(64, 150, 3, 128), (64, 7, 3, 512)], ids=str)
def test_time_chunks(isa, shape, go_backwards, tol):
    """More steps than one projection chunk (1 MiB / (64 rows * 4 * units *
    4 bytes) = 8 steps at 128 units, 2 at 512): chunk boundaries, a partial
    last chunk, and chunks shorter than a tile (projected along the batch)."""
    batch, timesteps, features, units = shape
    rng = np.random.default_rng(7)
    x = rng.standard_normal((batch, timesteps, features)).astype(np.float32)
    mask = rng.random((batch, timesteps)) > 0.2
    ours, theirs = _run(_weights(features, units, np.float32, 8, long=True), x, mask=mask,
                        go_backwards=go_backwards)
    _assert_close(ours, theirs, tol, np.float32)


# (batch, timesteps, units): rows shared between threads (batch 37; batch 3
# with units too few to share), several time chunks (batch 64), unit blocks
# shared (batch 1, 2 and 3), each large enough to use several threads.
THREAD_SHAPES = [(37, 40, 45), (3, 60, 20), (3, 60, 77), (64, 150, 128), (1, 4, 512),
                 (2, 3, 600)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", THREAD_SHAPES, ids=str)
def test_threads_bitwise_identical(isa, shape, dtype):
    batch, timesteps, units = shape
    rng = np.random.default_rng(9)
    x = rng.standard_normal((batch, timesteps, 7)).astype(dtype)
    mask = rng.random((batch, timesteps)) > 0.1
    weights = _weights(7, units, dtype, 10)
    runs = [_run(weights, x, mask=mask, num_threads=n)[0] for n in (1, 2, 3, 4)]
    for n, result in zip((2, 3, 4), runs[1:], strict=True):
        for a, b in zip(runs[0], result, strict=True):
            assert np.array_equal(a, b), f"num_threads={n} differs from num_threads=1"


def test_thread_plans_cover_both_splits():
    """The shapes above really exercise both ways of sharing the work."""
    plans = {_kernel.plan(b, t, 7, u, 2, "portable") for b, t, u in THREAD_SHAPES}
    assert {split for _, split in plans} == {"rows", "units"}
    assert all(threads > 1 for threads, _ in plans)
    # Tiny problems stay on one thread: waking a worker costs more than it saves.
    assert _kernel.plan(10, 4, 4, 8, 4)[0] == 1
    # Small steps of one sequence do not share units: the hand-over of h
    # between cores each step costs more than half a step.
    assert _kernel.plan(1, 1000, 64, 32, 2) == (1, "rows")
    assert _kernel.plan(1, 1000, 64, 64, 2) == (2, "units")


# Vector bytes of each path (the portable one: 4 lanes a block).
VECTOR_BYTES = {"avx512": 64, "avx2": 32, "sse2": 16, "neon": 16}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_dtypes_pack_for_the_selected_isa(isa, dtype):
    """float32 and float64 run the selected path's SIMD tiles: one block is
    one vector of the type."""
    weights = _weights(3, 5, dtype, 11)
    packed = _kernel.pack(weights[0], weights[1], weights[2])
    assert packed.isa == isa
    lanes = VECTOR_BYTES[isa] // np.dtype(dtype).itemsize if isa in VECTOR_BYTES else 4
    assert packed.width == lanes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pack_is_cached(isa, dtype):
    """Calls reuse the packed weights until the weights change."""
    x = np.ones((2, 3, 4), dtype)
    layer = fastlstm.LSTM(5, dtype=dtype)
    layer(x)
    packed = layer._packed
    layer(x)
    assert layer._packed is packed
    layer.set_weights(layer.get_weights())
    assert layer._packed is None


def test_repacks_after_set_weights(isa, tol):
    """The packed weights are cached per weight change."""
    x = np.random.default_rng(12).standard_normal((4, 5, 3)).astype(np.float32)
    layer = fastlstm.LSTM(10)
    layer.set_weights(_weights(3, 10, np.float32, 13))
    layer(x)
    new = _weights(3, 10, np.float32, 14)
    layer.set_weights(new)
    np.testing.assert_allclose(layer(x), reference.lstm(x, *new)[1], **tol(np.float32))


def test_repacks_after_isa_change(tol):
    """A layer packed for one instruction set follows a switch to another."""
    x = np.random.default_rng(15).standard_normal((4, 5, 3)).astype(np.float32)
    weights = _weights(3, 10, np.float32, 16)
    layer = fastlstm.LSTM(10)
    layer.set_weights(weights)
    previous = _kernel.isa()
    try:
        for name in _kernel.supported_isas():
            _kernel.set_isa(name)
            np.testing.assert_allclose(layer(x), reference.lstm(x, *weights)[1],
                                       **tol(np.float32))
            assert layer._packed.isa == name
    finally:
        _kernel.set_isa(previous)


@pytest.mark.parametrize("value, error", [(0, ValueError), (-2, ValueError),
                                          (1.5, TypeError), (True, TypeError)])
def test_num_threads_validated(value, error):
    with pytest.raises(error, match="num_threads"):
        fastlstm.LSTM(4, num_threads=value)


def test_set_isa_rejects_unknown():
    with pytest.raises(ValueError, match="instruction set"):
        _kernel.set_isa("sse9")


def _python(code, **env):
    """Run ``code`` in a fresh interpreter (the ISA is chosen at import)."""
    environ = dict(os.environ, **env)
    environ["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(fastlstm.__file__)), environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                          text=True, timeout=120)


def test_environment_variable_forces_isa():
    result = _python("from fastlstm import _kernel; print(_kernel.isa())",
                     FASTLSTM_ISA="portable")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "portable"



def test_environment_variable_forces_the_int8_kernel():
    """FASTLSTM_INT8_ISA picks an int8 kernel the CPU runs, whatever the
    float instruction set (here the fastest int8 kernel under the portable
    float path); --config shows it."""
    name = _kernel.int8_kernels()[-1]
    code = ("from fastlstm import _kernel, buildinfo; print(_kernel.int8_kernel()); "
            "buildinfo.show_config()")
    result = _python(code, FASTLSTM_INT8_ISA=name, FASTLSTM_ISA="portable")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == name
    assert f"int8:      {name} (" in result.stdout
    assert f"(FASTLSTM_INT8_ISA={name})" in result.stdout


@pytest.mark.parametrize("variable, value, message", [
    ("FASTLSTM_ISA", "sse9", "FASTLSTM_ISA='sse9' ignored (instruction set must be one of"),
    ("FASTLSTM_INT8_ISA", "amx9", "FASTLSTM_INT8_ISA='amx9' ignored (int8 kernels this CPU "
     "runs: ['portable'"),
    ("OMP_NUM_THREADS", "\u00b2",
     "OMP_NUM_THREADS='\u00b2' ignored (expected a positive integer)"),
    ("OMP_NUM_THREADS", "-3", "OMP_NUM_THREADS='-3' ignored"),
])
def test_bad_environment_variables_are_ignored_with_a_warning(variable, value, message):
    """A bad value never makes ``import fastlstm`` fail: a RuntimeWarning
    says what was ignored and the default applies."""
    result = _python("import fastlstm; from fastlstm import _kernel; "
                     "print(_kernel.isa(), _kernel.DEFAULT_THREADS, _kernel.int8_kernel())",
                     **{variable: value})
    assert result.returncode == 0, result.stderr
    assert "RuntimeWarning: " + message in result.stderr
    isa, threads, int8 = result.stdout.split()
    if variable == "FASTLSTM_ISA":
        assert isa == _kernel.supported_isas()[-1]
    elif variable == "FASTLSTM_INT8_ISA":
        assert int8 == _kernel.int8_kernel(isa)
    else:
        assert int(threads) == (len(os.sched_getaffinity(0)) if _kernel.THREAD_POOL else 1)


def test_num_threads_capped_at_the_cpus():
    cpus = len(os.sched_getaffinity(0))
    assert fastlstm.LSTM(4, num_threads=4096).num_threads == cpus
    assert fastlstm.LSTM(4, num_threads=1).num_threads == 1
    config = {"class_name": "LSTM", "config": {"units": 4, "num_threads": 4096}}
    assert fastlstm.Sequential.from_config({"layers": [config]}).layers[0].num_threads == cpus


# The 128-bit path that every CPU of an architecture has (gcc/clang builds).
BASELINE_ISA = {"x86_64": "sse2", "AMD64": "sse2", "aarch64": "neon", "arm64": "neon"}


@pytest.mark.skipif(platform.machine() not in BASELINE_ISA
                    or _kernel.info()["supported_isas"] == ["portable"],
                    reason="a build without vector extensions (MSVC) or another CPU family")
def test_default_is_never_scalar_where_vectors_exist():
    """Dispatch: sse2 on every x86-64 CPU, neon on every aarch64 one (nothing
    detected); the portable C path is never the default of such a build."""
    baseline = BASELINE_ISA[platform.machine()]
    environ = {k: v for k, v in os.environ.items() if k != "FASTLSTM_ISA"}
    code = "from fastlstm import _kernel; print(_kernel.isa(), *_kernel.supported_isas())"
    result = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    default, *supported = result.stdout.split()
    assert baseline in supported and default != "portable"
    assert supported.index(default) >= supported.index(baseline)
    if baseline == "neon":
        assert supported == ["portable", "neon"] and default == "neon"
    result = _python("from fastlstm import _kernel; print(_kernel.isa())",
                     FASTLSTM_ISA=baseline)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == baseline


def test_default_threads_follow_omp_num_threads():
    result = _python("from fastlstm import _kernel; print(_kernel.DEFAULT_THREADS)",
                     OMP_NUM_THREADS="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    expected = len(os.sched_getaffinity(0)) if _kernel.THREAD_POOL else 1
    assert _kernel.DEFAULT_THREADS <= expected


# --------------------------------------------------------------- activations
def _ulps(ours, truth):
    """Distance in units in the last place of their dtype (same-sign values)."""
    bits = np.int32 if ours.dtype == np.float32 else np.int64
    return np.abs(ours.view(bits).astype(np.int64) - truth.view(bits).astype(np.int64))


# Per dtype: the range where the activations vary, the exponent range of
# tiny inputs, the saturated tails, and edge values (the Cephes branch
# point 0.625, around the underflow of exp, the smallest subnormals).
INPUTS = {
    np.float32: (20, 30, 110, [0.0, -0.0, 0.625, -0.625, 88.0, -88.0, 1e-45, -1e-45]),
    np.float64: (40, 300, 800, [0.0, -0.0, 0.625, -0.625, 709.0, -709.0, -708.4, 5e-324,
                                -5e-324]),
}


def _inputs(dtype):
    """Dense inputs over the range where the activations vary, tiny ones,
    and the saturated tails; length a multiple of 16."""
    dense_to, tiny_exp, tails_to, edges = INPUTS[dtype]
    rng = np.random.default_rng(17)
    dense = np.linspace(-dense_to, dense_to, 400_000)
    tiny = rng.choice([-1, 1], 50_000) * 10.0 ** rng.uniform(-tiny_exp, 0, 50_000)
    tails = rng.uniform(-tails_to, tails_to, 50_000)
    x = np.concatenate([dense, tiny, tails, edges]).astype(dtype)
    return x[: len(x) // 16 * 16]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, numpy_form", [
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
    ("tanh", np.tanh),
])
def test_activation_accuracy(isa, name, numpy_form, dtype):
    """At most 3 ulps from the correctly rounded value (computed in float64
    for float32; in long double, 64-bit mantissa on x86, for float64) and 4
    from NumPy's own function in the dtype."""
    x = _inputs(dtype)
    ours = _kernel.activate(fastlstm.activations.CODES[name], x)
    wider = np.float64 if dtype == np.float32 else np.longdouble
    with np.errstate(over="ignore"):   # NumPy's exp(-x) overflows for very negative x
        truth = numpy_form(x.astype(wider)).astype(dtype)
        numpy_same = numpy_form(x)
    tiny = np.finfo(dtype).tiny
    normal = np.abs(truth) >= tiny
    # Below the smallest normal (sigmoid of x < -87 in float32, < -708 in
    # float64) the kernel flushes to zero, as NumPy does a little further
    # out: an absolute error under that smallest normal.
    assert np.all(np.abs(ours[~normal] - truth[~normal]) < tiny)
    # Where long double is no wider than double (MSVC, macOS arm64) the
    # float64 "truth" is libm's, itself up to an ulp off.
    wide = np.finfo(wider).nmant > np.finfo(dtype).nmant + 8
    assert _ulps(ours[normal], truth[normal]).max() <= (3 if wide else 4)
    assert _ulps(ours[normal], numpy_same[normal]).max() <= 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_special_values(isa, name, dtype):
    x = np.zeros(16, dtype)
    x[:4] = [np.nan, np.inf, -np.inf, -0.0]
    ours = _kernel.activate(fastlstm.activations.CODES[name], x)
    with np.errstate(all="ignore"):
        expected = fastlstm.activations.FUNCTIONS[name](x)
    np.testing.assert_array_equal(ours, expected)


def test_info_reports_the_kernel():
    info = _kernel.info()
    assert info["isa"] == _kernel.isa()
    assert info["supported_isas"][0] == "portable"
    assert info["thread_pool"] is _kernel.THREAD_POOL
    assert info["default_threads"] >= 1
    if not info["thread_pool"]:
        assert info["default_threads"] == 1
