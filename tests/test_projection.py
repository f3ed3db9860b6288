"""LSTM with projections (``proj_size``, torch.nn.LSTM's LSTMP) in
``fastlstm.LSTM``: the kernel's projection step (src/kernel/projection.h)
against the NumPy reference and torch.nn.LSTM with the same weights, for
every instruction set and dtype, bitwise across thread counts; weights,
files, stacks and what is refused.

Gradients are sums over batch and time, so they are compared relative to
their own scale: ``rtol`` of conftest's tolerance, and ``atol`` that
``rtol`` times the largest reference value.
"""
import numpy as np
import pytest
import torch

import fastlstm
from fastlstm import reference

DTYPES = [np.float32, np.float64]
TORCH = {np.float32: torch.float32, np.float64: torch.float64}


def _layer(units, proj_size, dtype, seed=0, **kwargs):
    return fastlstm.LSTM(units, proj_size=proj_size, dtype=dtype, seed=seed,
                         return_sequences=True, return_state=True, **kwargs)


def _close(actual, expected, tol, dtype):
    rtol = tol(dtype)["rtol"]
    scale = max(float(np.abs(expected).max()), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_inference_matches_reference(isa, dtype, tol):
    """Outputs and states against reference.lstm with the projection, with a
    mask and initial states, forwards and backwards; unit counts spanning
    several blocks, proj_size below and above one panel of the AVX-512
    float32 tile (64 columns)."""
    rng = np.random.default_rng(1)
    for batch, units, proj_size, go_backwards in [(3, 20, 7, False), (5, 70, 65, True)]:
        layer = _layer(units, proj_size, dtype, go_backwards=go_backwards)
        x = rng.standard_normal((batch, 6, 4)).astype(dtype)
        mask = rng.random((batch, 6)) > 0.3
        h0 = rng.standard_normal((batch, proj_size)).astype(dtype)
        c0 = rng.standard_normal((batch, units)).astype(dtype)
        sequence, h, c = layer(x, mask=mask, initial_state=[h0, c0])
        kernel, recurrent_kernel, bias, projection = layer.get_weights()
        expected = reference.lstm(x, kernel, recurrent_kernel, bias, mask=mask,
                                  initial_state=(h0, c0), go_backwards=go_backwards,
                                  projection_kernel=projection)
        for actual, wanted in zip((sequence, h, c), (expected[0], expected[2], expected[3]),
                                  strict=True):
            np.testing.assert_allclose(actual, wanted, **tol(dtype))
        # lengths (unsorted): the kernel's per-step rows, as a right-padded mask
        lengths = rng.permutation(np.arange(1, batch + 1) * 6 // batch)
        padded = np.arange(6) < lengths[:, None]
        sequence, h, c = layer(x, lengths=lengths, initial_state=[h0, c0])
        expected = reference.lstm(x, kernel, recurrent_kernel, bias, mask=padded,
                                  initial_state=(h0, c0), go_backwards=go_backwards,
                                  projection_kernel=projection)
        for actual, wanted in zip((sequence, h, c), (expected[0], expected[2], expected[3]),
                                  strict=True):
            np.testing.assert_allclose(actual, wanted, **tol(dtype))


def _torch_lstm(layer):
    module = layer.to_torch()
    assert module.proj_size == layer.proj_size
    return module


@pytest.mark.parametrize("dtype", DTYPES)
def test_training_matches_torch(isa, dtype, tol):
    """Outputs, states and the gradients of the input, the initial states and
    every weight (weight_hr too) against torch.nn.LSTM(proj_size=...)."""
    rng = np.random.default_rng(2)
    batch, timesteps, features, units, proj_size = 4, 5, 3, 20, 9
    layer = _layer(units, proj_size, dtype)
    layer.build(features)
    module = _torch_lstm(layer)
    x = rng.standard_normal((batch, timesteps, features)).astype(dtype)
    h0 = rng.standard_normal((batch, proj_size)).astype(dtype)
    c0 = rng.standard_normal((batch, units)).astype(dtype)
    sequence, h, c = layer(x, initial_state=[h0, c0], training=True)
    grads = [rng.standard_normal(a.shape).astype(dtype) for a in (sequence, h, c)]
    dx, dh0, dc0 = layer.backward([g.copy() for g in grads])

    tx, th0, tc0 = (torch.from_numpy(a).requires_grad_() for a in (x, h0, c0))
    out, (hn, cn) = module(tx, (th0[None], tc0[None]))
    loss = sum((t * torch.from_numpy(g)).sum() for t, g in zip((out, hn[0], cn[0]), grads,
                                                               strict=True))
    loss.backward()
    for actual, expected in [(sequence, out), (h, hn[0]), (c, cn[0])]:
        np.testing.assert_allclose(actual, expected.detach().numpy(), **tol(dtype))
    for actual, expected in [(dx, tx.grad), (dh0, th0.grad), (dc0, tc0.grad)]:
        _close(actual, expected.numpy(), tol, dtype)
    dkernel, drecurrent, dbias, dprojection = layer.grads
    _close(dkernel, module.weight_ih_l0.grad.numpy().T, tol, dtype)
    _close(drecurrent, module.weight_hh_l0.grad.numpy().T, tol, dtype)
    _close(dbias, module.bias_ih_l0.grad.numpy(), tol, dtype)
    _close(dprojection, module.weight_hr_l0.grad.numpy().T, tol, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_training_matches_packed_torch(dtype, tol):
    """With ``lengths`` (a right-padded mask: padded steps carry h and c) the
    final states and the gradients equal torch's on the PackedSequence of
    the same rows: the backward's mask rules at h's level."""
    rng = np.random.default_rng(3)
    batch, timesteps, features, units, proj_size = 4, 6, 3, 20, 9
    layer = _layer(units, proj_size, dtype)
    layer.build(features)
    module = _torch_lstm(layer)
    lengths = np.array([6, 5, 3, 1])
    x = rng.standard_normal((batch, timesteps, features)).astype(dtype)
    sequence, h, c = layer(x, lengths=lengths, training=True)
    valid = (np.arange(timesteps) < lengths[:, None])[..., None]
    d_sequence = rng.standard_normal(sequence.shape).astype(dtype) * valid
    d_h = rng.standard_normal(h.shape).astype(dtype)
    dx, _, _ = layer.backward([d_sequence, d_h.copy(), None])

    tx = torch.from_numpy(x).requires_grad_()
    packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.from_numpy(lengths),
                                                     batch_first=True)
    out, (hn, _) = module(packed)
    padded, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
    ((padded * torch.from_numpy(d_sequence)).sum() + (hn[0] * torch.from_numpy(d_h)).sum()
     ).backward()
    np.testing.assert_allclose(h, hn[0].detach().numpy(), **tol(dtype))
    np.testing.assert_allclose(sequence * valid, padded.detach().numpy(), **tol(dtype))
    _close(dx, tx.grad.numpy(), tol, dtype)
    _close(layer.grads[1], module.weight_hh_l0.grad.numpy().T, tol, dtype)
    _close(layer.grads[3], module.weight_hr_l0.grad.numpy().T, tol, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_bitwise(isa, dtype):
    """One and two threads give the same bits: inference on row groups, on a
    batch small enough that a layer without a projection would share its
    units (which a projection's step cannot), and training's passes."""
    rng = np.random.default_rng(4)
    for batch in (2, 8):
        x = rng.standard_normal((batch, 10, 6)).astype(dtype)
        results = []
        for threads in (1, 2):
            layer = _layer(80, 24, dtype, num_threads=threads)
            inferred = layer(x)
            recorded = layer(x, training=True)
            back = layer.backward([np.ones_like(recorded[0]), None, None])
            results.append([*inferred, *recorded, *back, *layer.grads])
        for one, two in zip(*results, strict=True):
            assert np.array_equal(one, two)


def test_shapes_weights_and_states():
    """Outputs and h have proj_size features, c has units; get_weights lists
    the projection kernel last; set_weights round-trips; count_params."""
    layer = fastlstm.LSTM(8, proj_size=3, return_state=True)
    output, h, c = layer(np.ones((2, 5, 4), np.float32))
    assert (output.shape, h.shape, c.shape) == ((2, 3), (2, 3), (2, 8))
    assert [w.shape for w in layer.get_weights()] == [(4, 32), (3, 32), (32,), (8, 3)]
    assert layer.count_params() == 4 * 32 + 3 * 32 + 32 + 8 * 3
    assert layer.compute_output_shape((None, 5, 4)) == [(None, 3), (None, 3), (None, 8)]
    assert layer.projection_kernel.shape == (8, 3)
    assert fastlstm.LSTM(8, proj_size=None).proj_size == 0
    assert fastlstm.LSTM(8, proj_size=0).proj_size == 0
    other = fastlstm.LSTM(8, proj_size=3, return_state=True)
    other.set_weights(layer.get_weights())
    for a, b in zip(other(np.ones((2, 5, 4), np.float32)), (output, h, c), strict=True):
        assert np.array_equal(a, b)
    with pytest.raises(ValueError, match=r"initial_state\[h\] must have shape "
                                         r"\(batch, proj_size\) = \(2, 3\), got \(2, 8\)"):
        layer(np.ones((2, 5, 4), np.float32), initial_state=[np.zeros((2, 8)), np.zeros((2, 8))])
    with pytest.raises(ValueError, match=r"\(8, 3\)"):
        other.set_weights(layer.get_weights()[:3] + [np.zeros((3, 8))])


@pytest.mark.parametrize("value, error, match", [
    (8, ValueError, "smaller than units \\(8\\), got 8"),
    (9, ValueError, "smaller than units \\(8\\), got 9"),
    (-1, ValueError, ">= 0"),
    (2.0, TypeError, "proj_size must be an int"),
    (True, TypeError, "proj_size must be an int"),
    ("3", TypeError, "proj_size must be an int"),
])
def test_bad_proj_size(value, error, match):
    with pytest.raises(error, match=match):
        fastlstm.LSTM(8, proj_size=value)


def test_refused_combinations(tmp_path):
    """What has no projection refuses one by name: recurrent dropout, int8,
    Keras's files."""
    with pytest.raises(ValueError, match="recurrent_dropout is not supported with proj_size"):
        fastlstm.LSTM(8, proj_size=3, recurrent_dropout=0.2)
    layer = fastlstm.LSTM(8, proj_size=3)
    layer.build(4)
    with pytest.raises(ValueError, match="quantize_dynamic.*proj_size=3"):
        fastlstm.quantize_dynamic(layer)
    for name in ("model.keras", "model.weights.h5"):
        with pytest.raises(ValueError, match="proj_size=3.*Keras format"):
            layer.save(tmp_path / name)
        with pytest.raises(ValueError, match="Keras's LSTM has no projection.*proj_size=3"):
            fastlstm.load_keras_weights(layer, tmp_path / name)
    with pytest.raises(ValueError, match="proj_size=3.*Keras format"):
        fastlstm.Sequential([fastlstm.Bidirectional(fastlstm.LSTM(8, proj_size=3))]).save(
            tmp_path / "stack.keras")


def test_save_load(tmp_path):
    """fastlstm's file keeps proj_size and the projection kernel; the reader
    checks the projection entry's shape against the config before reading."""
    layer = fastlstm.LSTM(8, proj_size=3, return_sequences=True)
    x = np.random.default_rng(5).random((2, 4, 5), dtype=np.float32)
    expected = layer(x)
    layer.save(tmp_path / "layer.npz")
    loaded = fastlstm.load(tmp_path / "layer.npz")
    assert loaded.proj_size == 3 and np.array_equal(loaded(x), expected)
    weights = layer.get_weights()
    bad = dict(np.load(tmp_path / "layer.npz"))
    bad["weight_3"] = np.zeros((3, 8), np.float32)          # the transposed projection
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(ValueError, match=r"\(8, 3\)"):
        fastlstm.load(tmp_path / "bad.npz")
    del bad["weight_3"]                                     # a file without it
    np.savez(tmp_path / "short.npz", **bad)
    with pytest.raises(ValueError, match="shapes"):
        fastlstm.load(tmp_path / "short.npz")
    assert len(weights) == 4


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_stacks(dtype, tol):
    """fastlstm.from_torch of a 2-layer bidirectional nn.LSTM with proj_size
    (the second layer's input: 2 * proj_size), with initial states, and
    LSTM.from_torch / to_torch of one layer."""
    torch.manual_seed(6)
    module = torch.nn.LSTM(3, 10, num_layers=2, bidirectional=True, proj_size=4,
                           batch_first=True, dtype=TORCH[dtype])
    stack = fastlstm.from_torch(module)
    x = torch.randn(2, 5, 3, dtype=TORCH[dtype])
    h0, c0 = torch.randn(4, 2, 4, dtype=TORCH[dtype]), torch.randn(4, 2, 10, dtype=TORCH[dtype])
    with torch.no_grad():
        expected, _ = module(x, (h0, c0))
    actual = stack(x.numpy(), hx=(h0.numpy(), c0.numpy()))
    np.testing.assert_allclose(actual, expected.numpy(), **tol(dtype))
    bidirectional = stack.layers[0]
    assert isinstance(bidirectional, fastlstm.Bidirectional)
    assert bidirectional.compute_output_shape((None, 5, 3)) == (None, 5, 8)

    single = torch.nn.LSTM(3, 10, proj_size=4, batch_first=True, dtype=TORCH[dtype])
    layer = fastlstm.LSTM.from_torch(single, return_sequences=True)
    assert layer.proj_size == 4
    with torch.no_grad():
        expected, _ = single(x)
        again, _ = layer.to_torch()(x)
    np.testing.assert_allclose(layer(x.numpy()), expected.numpy(), **tol(dtype))
    np.testing.assert_allclose(again.numpy(), expected.numpy(), **tol(dtype))
