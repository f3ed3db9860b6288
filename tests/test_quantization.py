"""int8 inference (fastlstm.quantize_dynamic): the exact integer scheme, the
accuracy bound against float32 and against torch's quantize_dynamic, and the
models, files and errors around it."""
import numpy as np
import pytest

import fastlstm
from fastlstm import _kernel, activations, quantization, reference
from fastlstm.optim import Adam

torch = pytest.importorskip("torch", reason="torch is installed by the [test] extra")
# torch.ao.quantization warns of its deprecation; it is the peer we compare with.
pytestmark = [pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated"),
              pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")]

PREFERS_INT8 = quantization.prefers_int8
CODES = (activations.CODES["tanh"], activations.CODES["sigmoid"])


@pytest.fixture(autouse=True)
def always_int8(monkeypatch):
    """Every int8 layer runs the int8 kernel, whatever its size (by default
    small ones run the float32 kernel: see test_small_layers_run_float32)."""
    monkeypatch.setattr(quantization, "prefers_int8", lambda input_dim, units: True)


@pytest.fixture(params=_kernel.int8_kernels())
def int8_kernel(request, monkeypatch):
    """Each int8 kernel this CPU can run, in turn."""
    name = request.param
    monkeypatch.setattr(quantization, "pack", lambda weights: _kernel.pack_int8(
        weights.kernel, weights.kernel_scale, weights.recurrent_kernel,
        weights.recurrent_scale, weights.bias, kernel_name=name))
    return name


def _standardized(shape, seed):
    """Inputs as a model sees them after standardisation: mean 0, std 1."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _trained_layer(seed=0, units=32, input_dim=8):
    """An LSTM trained for 150 Adam steps to output, in unit j, a running
    mean of input feature j mod input_dim (its weights have the structure
    and larger norms that training gives, unlike an initializer's)."""
    layer = fastlstm.LSTM(units, return_sequences=True, seed=seed)
    optimizer = Adam(learning_rate=0.01)
    rng = np.random.default_rng(seed)
    for _ in range(150):
        x = rng.standard_normal((32, 20, input_dim)).astype(np.float32)
        target = np.tanh(np.cumsum(x, axis=1) / np.arange(1, 21)[None, :, None])
        target = target[:, :, np.arange(units) % input_dim]
        out = layer(x, training=True)
        layer.backward(2 * (out - target) / out.size)
        weights = layer.get_weights()
        optimizer.step(weights, layer.grads)
        layer.set_weights(weights)
    return layer


@pytest.fixture(scope="module")
def trained():
    return _trained_layer()


# ----------------------------------------------------------- the scheme
def test_quantize_rows_definition():
    v = np.array([[0.5, -1.0, 0.25, 1 / 3], [0, 0, 0, 0], [1, np.nan, 2, 3],
                  [1, -np.inf, 0, 0], [-2.0, 2.0, 0.6, -0.6]], np.float32)
    q, scale = quantization.quantize_rows(v)
    assert q.dtype == np.int8 and scale.dtype == np.float32
    assert q[0].tolist() == [64, -127, 32, 42]     # 127/3 = 42.33
    assert scale[0] == np.float32(1.0) / np.float32(127)
    assert q[1].tolist() == [0, 0, 0, 0] and scale[1] == 0
    assert np.isnan(scale[2]) and np.isnan(scale[3])
    assert q[2].tolist() == [0, 0, 0, 0] and q[3].tolist() == [0, 0, 0, 0]
    assert q[4].tolist() == [-127, 127, 38, -38]   # 0.6 * 63.5 = 38.1
    # Row by row in plain Python floats rounded to float32 at each operation.
    v = _standardized((50, 37), 1)
    q, scale = quantization.quantize_rows(v)
    for row, q_row, s in zip(v, q, scale, strict=True):
        m = np.float32(max(abs(float(e)) for e in row))
        assert s == np.float32(m / np.float32(127))
        inverse = np.float32(np.float32(127) / m)
        assert q_row.tolist() == [int(np.rint(np.float32(e * inverse))) for e in row]
        assert np.abs(q_row * np.float64(s) - row).max() <= s / 2 * (1 + 1e-6)


def test_quantize_columns_per_output_channel():
    w = np.random.default_rng(2).uniform(-1, 1, (20, 12)).astype(np.float32)
    w[:, 3] *= 100          # a column's size does not change the others' steps
    w[:, 5] = 0
    q, scale = quantization.quantize_columns(w)
    assert q.dtype == np.int8 and q.min() >= -127
    assert (np.abs(q).max(axis=0)[scale > 0] == 127).all()
    assert scale[5] == 0 and (q[:, 5] == 0).all()
    assert np.all(np.abs(q * scale - w) <= scale / 2 * (1 + 1e-6))
    with pytest.raises(ValueError, match="NaN or infinity"):
        quantization.quantize_columns(np.array([[np.inf]], np.float32))


def test_gates_are_the_integer_products():
    layer = fastlstm.LSTM(24, seed=3)
    layer.build(10)
    weights = fastlstm.quantize_dynamic(layer).int8_weights
    x, h = _standardized((5, 10), 4), np.tanh(_standardized((5, 24), 5))
    qx, sx = quantization.quantize_rows(x)
    qh, sh = quantization.quantize_rows(h)
    acc_x = np.array([[sum(int(a) * int(b) for a, b in zip(row, col, strict=True))
                       for col in weights.kernel.T] for row in qx])
    acc_h = qh.astype(np.int64) @ weights.recurrent_kernel.astype(np.int64)
    expected = (weights.bias + acc_x.astype(np.float32) * (sx[:, None] * weights.kernel_scale)
                + acc_h.astype(np.float32) * (sh[:, None] * weights.recurrent_scale))
    np.testing.assert_array_equal(quantization.gates(x, h, weights), expected)


# ------------------------------------------------------------- accuracy
def _one_step_bound(layer, quantized, x, h0, c0):
    """|h_int8 - h_float| after one step, at most: the gates' bound
    (quantization.step_error_bound) through the cell's Lipschitz constants
    (sigmoid' <= 1/4, tanh' <= 1, |gates| <= 1):
    |dc| <= |di|/4 + |dg| + |c0| |df|/4, |dh| <= |do|/4 + |dc|."""
    dz = quantization.step_error_bound(x, h0, layer.get_weights(), quantized.int8_weights)
    di, df, dg, do = np.split(dz, 4, axis=1)
    dc = di / 4 + dg + np.abs(c0) * df / 4
    return do / 4 + dc


@pytest.mark.parametrize("weights", ["random", "trained"])
def test_one_step_error_within_the_bound(weights, trained):
    layer = fastlstm.LSTM(32, return_state=True, seed=6)
    if weights == "trained":
        layer.set_weights(trained.get_weights())
    else:
        layer.build(8)
    quantized = fastlstm.quantize_dynamic(layer)
    x = _standardized((64, 1, 8), 7)
    h0 = np.tanh(_standardized((64, 32), 8))
    c0 = _standardized((64, 32), 9)
    _, h_float, _ = layer(x, initial_state=[h0, c0])
    _, h_int8, _ = quantized(x, initial_state=[h0, c0])
    bound = _one_step_bound(layer, quantized, x[:, 0], h0, c0) + 1e-6   # float32 roundings
    error = np.abs(h_int8 - h_float)
    assert (error <= bound).all(), (error - bound).max()
    assert error.max() > 0     # the int8 path ran


def test_gate_errors_are_rounding_noise_of_one_step():
    """The gates' error is the weights' (fixed) rounding error times x, plus
    the activations' rounding, which is uniform on half a step either side:
    its RMS is step / sqrt(12) times the weights' column norm."""
    layer = fastlstm.LSTM(64, seed=23)
    layer.build(16)
    kernel, recurrent_kernel, bias = layer.get_weights()
    weights = fastlstm.quantize_dynamic(layer).int8_weights
    x, h = _standardized((256, 16), 24), np.tanh(_standardized((256, 64), 25))
    z = quantization.gates(x, h, weights).astype(np.float64)
    x64, h64 = x.astype(np.float64), h.astype(np.float64)
    kernel_hat = weights.kernel * weights.kernel_scale.astype(np.float64)
    recurrent_hat = weights.recurrent_kernel * weights.recurrent_scale.astype(np.float64)
    # error = (x_hat - x) @ K_hat + x @ (K_hat - K), the same for h
    fixed = x64 @ (kernel_hat - kernel) + h64 @ (recurrent_hat - recurrent_kernel)
    noise = z - (x64 @ kernel + h64 @ recurrent_kernel + bias) - fixed
    sx, sh = quantization.quantize_rows(x)[1], quantization.quantize_rows(h)[1]
    variance = (sx[:, None].astype(np.float64) ** 2 / 12 * (kernel_hat ** 2).sum(axis=0)
                + sh[:, None].astype(np.float64) ** 2 / 12 * (recurrent_hat ** 2).sum(axis=0))
    ratio = np.sqrt((noise ** 2).mean() / variance.mean())
    assert 0.9 < ratio < 1.1, ratio


def _sequence_errors(layer, x):
    """max |int8 - float32| over a sequence for fastlstm, and for torch's
    quantize_dynamic on the same weights."""
    quantized = fastlstm.quantize_dynamic(layer)
    ours = np.abs(quantized(x) - layer(x)).max()
    module = layer.to_torch().eval()
    # torch swaps submodules only: the LSTM goes in a container.
    container = torch.nn.ModuleDict({"lstm": module})
    torch_int8 = torch.ao.quantization.quantize_dynamic(container, {torch.nn.LSTM},
                                                        dtype=torch.qint8)["lstm"]
    assert type(torch_int8).__module__.startswith("torch.ao.nn.quantized")
    with torch.no_grad():
        xt = torch.from_numpy(x)
        theirs = (torch_int8(xt)[0] - module(xt)[0]).abs().max().item()
    return ours, theirs


@pytest.mark.parametrize("weights", ["random", "trained"])
def test_sequence_error_bound_and_torch_parity(weights, trained):
    """Over 50 steps of standardised inputs the error stays within the
    worst-case bound of one step (that bound adds every rounding error with
    one sign; over a sequence they are independent, and the forget gate
    damps older ones: measured 0.004 against 0.027 random, 0.014 against
    0.051 trained), and is of the size of torch's quantize_dynamic error on
    the same weights: smaller, as torch rounds the weights per tensor and
    the activations to 7 bits (measured 0.4x and 0.5x of torch's)."""
    if weights == "trained":
        layer = trained
    else:
        layer = fastlstm.LSTM(32, return_sequences=True, seed=10)
        layer.build(8)
    x = _standardized((32, 50, 8), 11)
    ours, theirs = _sequence_errors(layer, x)
    # One-step bound at unit-size states (|h| < 1, c of the size seen here).
    h = layer(x)
    step = _one_step_bound(layer, fastlstm.quantize_dynamic(layer), x[:, -1], h[:, -2],
                           np.zeros_like(h[:, -2])).max()
    assert ours <= step, (ours, step)
    assert theirs / 4 <= ours <= theirs, (ours, theirs)


# ----------------------------------------------------- kernel vs oracle
# (260, 300): products of 256 or more inputs, which the amx kernel runs on
# its tiles (the smaller ones on its vector fallback).
@pytest.mark.parametrize("units, input_dim", [(37, 13), (16, 4), (5, 130), (260, 300)])
def test_int8_products_are_exact_on_every_kernel(int8_kernel, units, input_dim):
    """One step from a given h with linear activations and c = 0: then
    c = z_i * z_g and h = z_o * c are single roundings of the gates, so the
    outputs are bitwise the reference's exactly when the kernel's int32
    sums and their dequantisation are (every row and step quantized)."""
    layer = fastlstm.LSTM(units, return_state=True, activation="linear",
                          recurrent_activation="linear", seed=units)
    layer.build(input_dim)
    quantized = fastlstm.quantize_dynamic(layer)
    rng = np.random.default_rng(units)
    x = rng.standard_normal((13, 1, input_dim)).astype(np.float32)
    h0 = np.tanh(rng.standard_normal((13, units))).astype(np.float32)
    h0[3] = 0          # a zero row: scale 0
    c0 = np.zeros_like(h0)
    _, h, c = quantized(x, initial_state=[h0, c0])
    _, _, h_ref, c_ref = reference.lstm_int8(x, quantized.int8_weights, initial_state=(h0, c0),
                                             activation="linear",
                                             recurrent_activation="linear")
    np.testing.assert_array_equal(c, c_ref)
    np.testing.assert_array_equal(h, h_ref)


def test_layer_matches_the_int8_reference(int8_kernel):
    """Over steps the kernel's activations (vectorised, a few ulps from
    NumPy's) feed the next step's quantization, so a rounding of h may tip
    to the next integer: that moves a gate by one step of h (max|h| / 127
    <= 1/127) times a recurrent weight (|w| <= 0.5 here), so h by at most
    0.004 / 4 (sigmoid' <= 1/4) on the next step: atol 2e-3."""
    layer = fastlstm.LSTM(20, return_sequences=True, return_state=True, go_backwards=True,
                          seed=12)
    layer.build(6)
    quantized = fastlstm.quantize_dynamic(layer)
    x = _standardized((7, 9, 6), 13)
    mask = np.random.default_rng(14).random((7, 9)) > 0.3
    got = quantized(x, mask=mask)
    seq, _, h, c = reference.lstm_int8(x, quantized.int8_weights, mask=mask, go_backwards=True)
    for g, e in zip(got, [seq, h, c], strict=True):
        np.testing.assert_allclose(g, e, rtol=0, atol=2e-3)
        # Tipped roundings are rare (here none: 1e-7 measured); the rest agree
        # to float32 rounding.
        assert np.median(np.abs(g - e)) <= 1e-6


@pytest.mark.parametrize("activation", ["gelu", "mish", "elu", "softplus"])
def test_every_activation_on_int8_gates(int8_kernel, activation):
    """The int8 kernels compute their gates in float32 with the float
    kernel's activation code (one activation per family of its code: erfc,
    tanh of softplus, expm1, log1p); tolerance as above, relative where the
    unbounded activations grow (to 1e6 over these steps)."""
    layer = fastlstm.LSTM(12, return_sequences=True, activation=activation,
                          recurrent_activation=activation, seed=15)
    layer.build(5)
    quantized = fastlstm.quantize_dynamic(layer)
    x = _standardized((4, 6, 5), 16)
    expected = reference.lstm_int8(x, quantized.int8_weights, activation=activation,
                                   recurrent_activation=activation)[0]
    got = quantized(x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-3)
    assert np.median(np.abs(got - expected) / np.maximum(np.abs(expected), 1)) <= 1e-6


# rows shared, units shared, rows on AMX tiles (where the CPU has them)
@pytest.mark.parametrize("batch, units", [(40, 24), (2, 96), (33, 260)])
def test_bitwise_the_same_for_any_thread_count(batch, units):
    layer = fastlstm.LSTM(units, return_sequences=True, seed=24)
    layer.build(10)
    quantized = fastlstm.quantize_dynamic(layer)
    x = _standardized((batch, 30, 10), 25)
    results = []
    for threads in (1, 2, 3):
        quantized.num_threads = threads
        results.append(quantized(x))
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])


@pytest.mark.skipif("amx" not in _kernel.int8_kernels(),
                    reason="no AMX-INT8 here: the CPU lacks AMX-TILE/AMX-INT8, or the OS "
                    "does not enable the tile state (XCR0) or grant it to the process "
                    "(kernel/cpu.c)")
@pytest.mark.parametrize("batch, timesteps, input_dim, units", [
    (1, 6, 70, 260),      # B = 1: every tile on the vector fallback
    (13, 4, 200, 37),     # projection on AMX (K4 64), a 37-unit step on vectors
    (40, 3, 64, 260),     # rows 14 + 13 + 13, the step on AMX, units not % 16
    (9, 5, 300, 300),     # everything on AMX, inputs not % 64
])
def test_amx_is_bitwise_the_avx512_vnni_kernel(batch, timesteps, input_dim, units):
    """AMX's tdpbusd sums the same int32 products as vpdpbusd and the float
    part after it is avx512-vnni's code, so whole sequences (masked,
    backwards, nonlinear activations) agree bit for bit, at 1 and 2
    threads."""
    layer = fastlstm.LSTM(units, return_sequences=True, return_state=True,
                          go_backwards=True, seed=units)
    layer.build(input_dim)
    weights = fastlstm.quantize_dynamic(layer).int8_weights
    x = _standardized((batch, timesteps, input_dim), batch)
    mask = np.random.default_rng(batch).random((batch, timesteps)) > 0.2
    results = {}
    for name, threads in [("avx512-vnni", 1), ("amx", 1), ("amx", 2)]:
        packed = _kernel.pack_int8(weights.kernel, weights.kernel_scale,
                                   weights.recurrent_kernel, weights.recurrent_scale,
                                   weights.bias, kernel_name=name)
        h = np.zeros((batch, units), np.float32)
        c = np.zeros_like(h)
        last = np.zeros_like(h)
        seq = np.empty((batch, timesteps, units), np.float32)
        _kernel.forward_int8(x, packed, h, c, last, mask.astype(np.uint8), seq, True,
                             *CODES, threads)
        results[name, threads] = (seq, h, c)
    expected = results["avx512-vnni", 1]
    assert np.isfinite(expected[0]).all() and np.abs(expected[1]).max() > 0.05
    for key in [("amx", 1), ("amx", 2)]:
        for got, want in zip(results[key], expected, strict=True):
            np.testing.assert_array_equal(got, want)


def test_non_finite_input_rows_give_nan():
    layer = fastlstm.LSTM(8, return_sequences=True, seed=26)
    layer.build(5)
    quantized = fastlstm.quantize_dynamic(layer)
    x = _standardized((3, 4, 5), 27)
    x[1, 2, 3] = np.nan
    x[2, 1, 0] = np.inf
    y = quantized(x)
    assert np.isnan(y[1, 2:]).all() and np.isnan(y[2, 1:]).all()
    assert np.isfinite(y[0]).all() and np.isfinite(y[1, :2]).all()


def test_small_layers_run_float32(monkeypatch):
    """Where int8 cannot be faster the float32 kernel runs, on the
    dequantised weights; large layers run int8."""
    monkeypatch.setattr(quantization, "prefers_int8", PREFERS_INT8)
    small = fastlstm.LSTM(16, seed=28)
    small.build(10)
    assert not quantization.prefers_int8(10, 16)
    quantized = fastlstm.quantize_dynamic(small)
    as_float = fastlstm.LSTM(16)
    as_float.set_weights(quantized.get_weights())
    x = _standardized((4, 5, 10), 29)
    np.testing.assert_array_equal(quantized(x), as_float(x))
    assert quantization.prefers_int8(256, 512)


# --------------------------------------------------------------- models
def test_returns_a_copy_of_the_same_kind():
    layer = fastlstm.LSTM(16, return_sequences=True, seed=15)
    layer.build(4)
    before = layer.get_weights()
    quantized = fastlstm.quantize_dynamic(layer)
    assert type(quantized) is fastlstm.LSTM and quantized is not layer
    assert layer.quantization is None and quantized.quantization == "int8"
    for a, b in zip(before, layer.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    int8 = quantized.int8_weights
    assert int8.kernel.dtype == int8.recurrent_kernel.dtype == np.int8
    assert int8.kernel.shape == (4, 64) and int8.recurrent_scale.shape == (64,)
    kernel, recurrent_kernel, bias = quantized.get_weights()
    np.testing.assert_array_equal(kernel, int8.kernel * int8.kernel_scale)
    np.testing.assert_array_equal(bias, before[2])
    assert np.abs(recurrent_kernel - before[1]).max() <= int8.recurrent_scale.max() / 2 * 1.0001
    assert "quantization='int8'" in repr(quantized)


def test_stacks_and_keras_models():
    keras = pytest.importorskip("keras", reason="keras is installed by the [test] extra")
    model = keras.Sequential([
        keras.Input((None, 5)), keras.layers.Masking(),
        keras.layers.Bidirectional(keras.layers.LSTM(8, return_sequences=True)),
        keras.layers.LSTM(6)])
    stack = fastlstm.from_keras(model)
    quantized = fastlstm.quantize_dynamic(stack)
    assert type(quantized) is fastlstm.Model        # what from_keras returns
    layers = list(quantization.lstm_layers(quantized))
    assert len(layers) == 3 and all(layer.quantization == "int8" for layer in layers)
    assert all(layer.quantization is None for layer in quantization.lstm_layers(stack))
    x = _standardized((4, 7, 5), 16)
    x[1, 5:] = 0     # masked by Masking
    np.testing.assert_allclose(quantized(x), stack(x), atol=0.05)
    bi = fastlstm.quantize_dynamic(next(   # the model's Bidirectional
        layer.layer for layer in stack.layers
        if isinstance(getattr(layer, "layer", None), fastlstm.Bidirectional)))
    assert type(bi) is fastlstm.Bidirectional
    assert bi.forward_layer.quantization == bi.backward_layer.quantization == "int8"


def test_torch_module_in_eval_mode():
    from fastlstm.torch import LSTM
    torch.manual_seed(0)
    module = LSTM(6, 12, num_layers=2, bidirectional=True).eval()
    quantized = fastlstm.quantize_dynamic(module)
    assert type(quantized) is LSTM
    x = torch.from_numpy(_standardized((9, 3, 6), 17))
    with torch.no_grad():
        out, (h, c) = module(x)
        q_out, (q_h, q_c) = quantized(x)
    assert q_out.shape == out.shape and q_h.shape == h.shape
    assert 0 < (q_out - out).abs().max() < 0.05
    # Its weight parameters are the dequantised weights its layers use.
    layer = quantized._int8_layers[1]      # layer 0, reverse
    np.testing.assert_array_equal(quantized.weight_hh_l0_reverse.detach().numpy().T,
                                  layer.get_weights()[1])
    quantized.train()
    with pytest.raises(ValueError, match="eval mode"):
        quantized(x)
    with pytest.raises(ValueError, match="eval mode"):
        fastlstm.quantize_dynamic(LSTM(6, 12))


def test_saved_int8_weights_load_exactly(tmp_path):
    stack = fastlstm.Sequential([
        fastlstm.LSTM(8, return_sequences=True, seed=18),
        fastlstm.Bidirectional(fastlstm.LSTM(5, seed=19))], input_shape=(None, 3))
    quantized = fastlstm.quantize_dynamic(stack)
    quantized.save(tmp_path / "int8.npz")
    loaded = fastlstm.load(tmp_path / "int8.npz")
    for a, b in zip(quantization.lstm_layers(loaded), quantization.lstm_layers(quantized),
                    strict=True):
        assert a.quantization == "int8"
        for name, array in b.int8_weights.arrays().items():
            np.testing.assert_array_equal(getattr(a.int8_weights, name), array)
    x = _standardized((3, 6, 3), 20)
    np.testing.assert_array_equal(loaded(x), quantized(x))
    # A float model saved the same way loads as float.
    stack.save(tmp_path / "float.npz")
    assert all(layer.quantization is None
               for layer in quantization.lstm_layers(fastlstm.load(tmp_path / "float.npz")))


def _rewrite(path, **changes):
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)


@pytest.mark.parametrize("changes, match", [
    ({"int8_0_kernel": np.zeros((3, 16), np.int16)}, "int8_0_kernel must be int8"),
    ({"int8_0_kernel": np.full((3, 16), -128, np.int8)}, "-128"),
    ({"int8_0_recurrent_scale": np.full(16, np.nan, np.float32)}, "finite"),
    ({"int8_0_bias": None}, "only some"),
    ({"int8_1_bias": np.zeros(16, np.float32)}, "does not have"),
])
def test_bad_int8_file_entries(tmp_path, changes, match):
    layer = fastlstm.LSTM(4, seed=21)
    layer.build(3)
    path = tmp_path / "layer.npz"
    fastlstm.quantize_dynamic(layer).save(path)
    _rewrite(path, **changes)
    with pytest.raises(ValueError, match=match):
        fastlstm.load(path)


def test_set_weights_quantizes_and_training_is_refused():
    layer = fastlstm.LSTM(4, seed=22)
    layer.build(3)
    quantized = fastlstm.quantize_dynamic(layer)
    weights = [w * 2 for w in layer.get_weights()]
    quantized.set_weights(weights)
    assert quantized.quantization == "int8"
    np.testing.assert_array_equal(quantized.int8_weights.kernel,
                                  quantization.quantize_columns(weights[0])[0])
    with pytest.raises(ValueError, match="inference only"):
        quantized(np.ones((1, 2, 3), np.float32), training=True)


@pytest.mark.parametrize("make, dtype, error, match", [
    (lambda: fastlstm.LSTM(4), "int8", ValueError, "no weights yet"),
    (lambda: fastlstm.LSTM(4, dtype="float64"), "int8", ValueError, "float32"),
    (lambda: fastlstm.LSTM(4), "int4", ValueError, "dtype must be 'int8'"),
    (lambda: "model", "int8", TypeError, "got str"),
])
def test_errors(make, dtype, error, match):
    model = make()
    if isinstance(model, fastlstm.LSTM) and match != "no weights yet":
        model.build(3)
    with pytest.raises(error, match=match):
        fastlstm.quantize_dynamic(model, dtype=dtype)
