"""fastlstm against torch.nn.LSTM with the same weights.

PyTorch's gate blocks i, f, g, o are Keras's i, f, c, o; weight_ih is
kernel.T, weight_hh is recurrent_kernel.T and the two biases add up to
Keras's one.  This file moves weights by hand, from those definitions, so it
checks the layer without trusting any of fastlstm's conversion code.
"""
import numpy as np
import pytest

import fastlstm

torch = pytest.importorskip("torch", reason="torch is installed by the [test] extra")


def torch_lstm(weights, dtype, rng):
    kernel, recurrent_kernel, bias = weights
    units = recurrent_kernel.shape[0]
    module = torch.nn.LSTM(kernel.shape[0], units, batch_first=True)
    module = module.to(torch.float32 if dtype == np.float32 else torch.float64)
    # split the bias at random between bias_ih and bias_hh
    share = rng.uniform(-1, 1, bias.shape).astype(dtype)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(kernel.T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(recurrent_kernel.T.copy()))
        module.bias_ih_l0.copy_(torch.from_numpy(bias - share))
        module.bias_hh_l0.copy_(torch.from_numpy(share))
    return module


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sequences", [False, True])
@pytest.mark.parametrize("state", [False, True])
@pytest.mark.parametrize("with_initial_state", [False, True])
def test_matches_torch(dtype, sequences, state, with_initial_state, make_weights, tol):
    rng = np.random.default_rng(11)
    batch, steps, input_dim, units = 6, 9, 5, 7
    weights = make_weights(input_dim, units, dtype, seed=4)
    x = rng.normal(size=(batch, steps, input_dim)).astype(dtype)
    h0, c0 = rng.normal(size=(2, batch, units)).astype(dtype)

    module = torch_lstm(weights, dtype, rng)
    with torch.inference_mode():
        args = (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None])
        out, (h_n, c_n) = module(torch.from_numpy(x), args if with_initial_state else None)
    out, h_n, c_n = out.numpy(), h_n[0].numpy(), c_n[0].numpy()

    layer = fastlstm.LSTM(units, return_sequences=sequences, return_state=state,
                          dtype=np.dtype(dtype).name)
    layer.set_weights(weights)
    got = layer(x, initial_state=[h0, c0] if with_initial_state else None)
    expected_output = out if sequences else out[:, -1]
    if state:
        output, h, c = got
        np.testing.assert_allclose(h, h_n, **tol(dtype))
        np.testing.assert_allclose(c, c_n, **tol(dtype))
    else:
        output = got
    np.testing.assert_allclose(output, expected_output, **tol(dtype))


def test_go_backwards_matches_torch_on_reversed_input(make_weights, tol):
    rng = np.random.default_rng(12)
    weights = make_weights(3, 4, np.float32, seed=5)
    x = rng.normal(size=(2, 6, 3)).astype(np.float32)
    with torch.inference_mode():
        out, _ = torch_lstm(weights, np.float32, rng)(torch.from_numpy(x[:, ::-1].copy()))
    layer = fastlstm.LSTM(4, return_sequences=True, go_backwards=True)
    layer.set_weights(weights)
    np.testing.assert_allclose(layer(x), out.numpy(), **tol(np.float32))


def test_long_sequence_matches_torch(make_weights):
    rng = np.random.default_rng(13)
    weights = make_weights(16, 32, np.float32, seed=6)
    x = rng.normal(size=(3, 1000, 16)).astype(np.float32)
    with torch.inference_mode():
        out, _ = torch_lstm(weights, np.float32, rng)(torch.from_numpy(x))
    layer = fastlstm.LSTM(32, return_sequences=True)
    layer.set_weights(weights)
    # 1000 recurrent steps let float32 rounding differences grow: 1e-5 absolute.
    np.testing.assert_allclose(layer(x), out.numpy(), rtol=1e-4, atol=1e-5)
