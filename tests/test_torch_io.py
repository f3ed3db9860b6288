"""PyTorch interop: LSTM.from_torch / to_torch and fastlstm.from_torch for
stacks, against torch.nn.LSTM with the same weights (non-zero biases)."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastlstm
from fastlstm import reference


def _module(seed, *args, dtype=torch.float32, **kwargs):
    torch.manual_seed(seed)
    module = torch.nn.LSTM(*args, dtype=dtype, **kwargs).eval()
    with torch.no_grad():   # torch's default biases are small: make them count
        for name, param in module.named_parameters():
            if name.startswith("bias"):
                param.uniform_(-0.5, 0.5)
    return module


def _run(module, x, lengths=None):
    with torch.no_grad():
        tensor = torch.from_numpy(x)
        if lengths is None:
            return module(tensor)
        packed = pack_padded_sequence(tensor, torch.from_numpy(lengths),
                                      batch_first=module.batch_first, enforce_sorted=False)
        output, state = module(packed)
        output, _ = pad_packed_sequence(output, batch_first=module.batch_first,
                                        total_length=x.shape[0 if not module.batch_first
                                                             else 1])
        return output, state


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch_first", [True, False])
def test_layer_from_torch(tol, dtype, bias, batch_first):
    module = _module(0, 3, 6, bias=bias, batch_first=batch_first,
                     dtype=getattr(torch, np.dtype(dtype).name))
    layer = fastlstm.LSTM.from_torch(module, return_sequences=True, return_state=True)
    assert layer.dtype == dtype and layer.use_bias == bias
    x = np.random.default_rng(1).uniform(-1, 1, (4, 5, 3)).astype(dtype)
    output, (h, c) = _run(module, x if batch_first else x.transpose(1, 0, 2).copy())
    output = output.numpy() if batch_first else output.numpy().transpose(1, 0, 2)
    sequence, h_ours, c_ours = layer(x)
    np.testing.assert_allclose(sequence, output, **tol(dtype))
    np.testing.assert_allclose(h_ours, h[0].numpy(), **tol(dtype))
    np.testing.assert_allclose(c_ours, c[0].numpy(), **tol(dtype))


def test_from_torch_weights_are_exact():
    module = _module(2, 3, 4)
    layer = fastlstm.LSTM.from_torch(module)
    sd = {k: v.numpy() for k, v in module.state_dict().items()}
    np.testing.assert_array_equal(layer.kernel, sd["weight_ih_l0"].T)
    np.testing.assert_array_equal(layer.recurrent_kernel, sd["weight_hh_l0"].T)
    np.testing.assert_array_equal(layer.bias, sd["bias_ih_l0"] + sd["bias_hh_l0"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_to_torch(make_weights, tol, dtype):
    weights = make_weights(3, 5, dtype, seed=3)
    layer = fastlstm.LSTM(5, return_sequences=True, dtype=dtype)
    layer.set_weights(weights)
    module = layer.to_torch()
    assert module.batch_first and not module.training
    sd = {k: v.numpy() for k, v in module.state_dict().items()}
    np.testing.assert_array_equal(sd["weight_ih_l0"], weights[0].T)
    np.testing.assert_array_equal(sd["weight_hh_l0"], weights[1].T)
    np.testing.assert_array_equal(sd["bias_ih_l0"], weights[2])
    assert not sd["bias_hh_l0"].any()
    x = np.random.default_rng(4).uniform(-1, 1, (2, 6, 3)).astype(dtype)
    np.testing.assert_allclose(_run(module, x)[0].numpy(), reference.lstm(x, *weights)[0],
                               **tol(dtype))
    np.testing.assert_allclose(layer(x), _run(module, x)[0].numpy(), **tol(dtype))


def test_to_torch_without_bias_round_trips(make_weights):
    layer = fastlstm.LSTM(5, use_bias=False)
    layer.set_weights(make_weights(3, 5, seed=5)[:2])
    module = layer.to_torch()
    assert module.bias is False
    back = fastlstm.LSTM.from_torch(module)
    for a, b in zip(back.get_weights(), layer.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_stack_from_torch(tol, num_layers, bidirectional, batch_first):
    module = _module(6, 3, 4, num_layers=num_layers, bidirectional=bidirectional,
                     batch_first=batch_first, dropout=0.1 if num_layers > 1 else 0.0)
    stack = fastlstm.from_torch(module)
    assert len(stack.layers) == num_layers
    x = np.random.default_rng(7).uniform(-1, 1, (5, 3, 3)).astype(np.float32)
    expected = _run(module, x)[0].numpy()
    got = stack(x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **tol(np.float32))


@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("lengths", [None, np.array([5, 2, 4])])
def test_stack_from_torch_takes_initial_states(tol, num_layers, bidirectional, lengths):
    """``stack(x, hx=(h_0, c_0))``: nn.LSTM's states, in its layout."""
    module = _module(10, 3, 4, num_layers=num_layers, bidirectional=bidirectional)
    stack = fastlstm.from_torch(module)
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, (5, 3, 3)).astype(np.float32)
    hx = [rng.uniform(-1, 1, (num_layers * (1 + bidirectional), 3, 4)).astype(np.float32)
          for _ in range(2)]
    with torch.no_grad():
        if lengths is None:
            expected = module(torch.from_numpy(x), tuple(map(torch.from_numpy, hx)))[0]
        else:
            packed = pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                          enforce_sorted=False)
            expected = pad_packed_sequence(
                module(packed, tuple(map(torch.from_numpy, hx)))[0], total_length=5)[0]
    got = stack(x, lengths=lengths, hx=hx)
    valid = (np.ones((3, 5), bool) if lengths is None
             else np.arange(5) < lengths[:, None]).T
    np.testing.assert_allclose(got[valid], expected.numpy()[valid], **tol(np.float32))
    with pytest.raises(ValueError, match=r"hx: h_0 must have shape \(num_layers"):
        stack(x, hx=[hx[0][None], hx[1]])


def test_stack_without_bias_float64(tol):
    module = _module(12, 3, 4, num_layers=2, bidirectional=True, bias=False,
                     dtype=torch.float64)
    x = np.random.default_rng(13).uniform(-1, 1, (5, 2, 3))
    np.testing.assert_allclose(fastlstm.from_torch(module)(x), _run(module, x)[0].numpy(),
                               **tol(np.float64))


@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, False), (1, True),
                                                      (2, True)])
@pytest.mark.parametrize("batch_first", [False, True])
def test_lengths_match_packed_sequence(tol, num_layers, bidirectional, batch_first):
    module = _module(8, 3, 4, num_layers=num_layers, bidirectional=bidirectional,
                     batch_first=batch_first)
    stack = fastlstm.from_torch(module)
    lengths = np.array([6, 2, 4, 1])
    x = np.random.default_rng(9).uniform(-1, 1, (4, 6, 3)).astype(np.float32)
    if not batch_first:
        x = x.transpose(1, 0, 2).copy()
    expected = _run(module, x, lengths)[0].numpy()
    got = stack(x, lengths=lengths)
    if not batch_first:
        expected, got = expected.transpose(1, 0, 2), got.transpose(1, 0, 2)
    valid = np.arange(6) < lengths[:, None]
    np.testing.assert_allclose(got[valid], expected[valid], **tol(np.float32))
    if bidirectional:   # Keras's Bidirectional also outputs zeros at padded steps
        assert not got[~valid].any()


def test_single_layer_state_matches_packed_sequence(tol):
    module = _module(10, 3, 4, batch_first=True)
    layer = fastlstm.LSTM.from_torch(module, return_state=True)
    lengths = np.array([5, 1, 3])
    x = np.random.default_rng(11).uniform(-1, 1, (3, 5, 3)).astype(np.float32)
    _, (h, c) = _run(module, x, lengths)
    _, h_ours, c_ours = layer(x, lengths=lengths)
    np.testing.assert_allclose(h_ours, h[0].numpy(), **tol(np.float32))
    np.testing.assert_allclose(c_ours, c[0].numpy(), **tol(np.float32))


class _Custom(torch.nn.LSTM):
    def forward(self, x, hx=None):
        return super().forward(x * 2, hx)


@pytest.mark.parametrize("module,error,match", [
    (torch.nn.GRU(3, 4), TypeError, "torch.nn.LSTM, got GRU"),
    (torch.nn.RNN(3, 4, nonlinearity="relu"), TypeError, "torch.nn.LSTM, got RNN"),
    (_Custom(3, 4), TypeError, "_Custom overrides nn.LSTM.forward"),
    (torch.nn.LSTM(3, 4, dtype=torch.float16), TypeError, "float32 or float64, got "
                                                            "torch.float16"),
])
def test_unsupported_modules(module, error, match):
    with pytest.raises(error, match=match):
        fastlstm.from_torch(module)
    with pytest.raises(error, match=match):
        fastlstm.LSTM.from_torch(module)


def test_layer_from_torch_refuses_stacks():
    with pytest.raises(ValueError, match="num_layers=2, bidirectional=False.*from_torch"):
        fastlstm.LSTM.from_torch(torch.nn.LSTM(3, 4, num_layers=2))
    with pytest.raises(ValueError, match="bidirectional=True"):
        fastlstm.LSTM.from_torch(torch.nn.LSTM(3, 4, bidirectional=True))


def test_to_torch_errors(make_weights):
    with pytest.raises(ValueError, match="to_torch: the layer has no weights"):
        fastlstm.LSTM(4).to_torch()
    layer = fastlstm.LSTM(4, activation="relu")
    layer.set_weights(make_weights(3, 4))
    with pytest.raises(ValueError, match="activation='tanh'.*'relu'"):
        layer.to_torch()
    layer = fastlstm.LSTM(4, go_backwards=True)
    layer.set_weights(make_weights(3, 4))
    with pytest.raises(ValueError, match="go_backwards"):
        layer.to_torch()


def test_import_does_not_load_frameworks():
    code = ("import sys, fastlstm; "
            "print(sorted(m for m in ('torch', 'keras', 'h5py') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_missing_bias_tensor_is_named():
    module = torch.nn.LSTM(3, 4)
    module.bias_hh_l0 = None
    with pytest.raises(ValueError, match=r"must have the tensors \['weight_ih_l0', "
                                         r"'weight_hh_l0', 'bias_ih_l0', 'bias_hh_l0'\]; "
                                         r"bias_hh_l0 is None"):
        fastlstm.LSTM.from_torch(module)
    with pytest.raises(ValueError, match="bias_hh_l0 is None"):
        fastlstm.from_torch(module)
