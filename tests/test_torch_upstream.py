"""PyTorch's own nn.LSTM behaviour tests (test/test_nn.py, ``TestNN``) that
apply on the CPU, ported to ``fastlstm.torch``: where upstream compares
two nn.LSTM implementations (CPU and cuDNN), nn.LSTM on the CPU is the
reference here and fastlstm.torch the implementation under test."""
import itertools
import pickle

import pytest
import torch
from torch.nn.utils import rnn as rnn_utils

import fastlstm.torch as ft


def _copy_of(reference, cls=ft.LSTM, **config):
    module = cls(**config)
    module.load_state_dict(reference.state_dict())
    return module


def test_LSTM_cell():
    """Upstream ``TestNN.test_LSTM_cell``: six steps of an LSTMCell with
    and without bias, then backward (here also compared with nn.LSTMCell)."""
    for bias in (True, False):
        torch.manual_seed(0)
        x, hx, cx = torch.randn(3, 10), torch.randn(3, 20), torch.randn(3, 20)
        reference = torch.nn.LSTMCell(10, 20, bias=bias)
        cell = _copy_of(reference, ft.LSTMCell, input_size=10, hidden_size=20, bias=bias)
        results = []
        for module in (cell, reference):
            h, c = hx, cx
            for _ in range(6):
                h, c = module(x, (h, c))
            (h + c).sum().backward()
            results.append([h, c] + [p.grad for p in module.parameters()])
        for actual, expected in zip(*results, strict=True):
            torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_rnn_initial_hidden_state():
    """Upstream ``TestNN.test_rnn_initial_hidden_state``: zero states given
    and no states give the same results."""
    rnn = ft.LSTM(30, 20, 2)
    x = torch.randn(10, 32, 30)
    hidden = torch.zeros(2, 32, 20)
    output1, hidden1 = rnn(x, (hidden, hidden))
    output2, hidden2 = rnn(x)
    torch.testing.assert_close(output1, output2, rtol=0, atol=0)
    torch.testing.assert_close(hidden1, hidden2, rtol=0, atol=0)


def test_rnn_retain_variables():
    """Upstream ``TestNN.test_rnn_retain_variables`` (float64): backward
    through one graph five times with retain_graph gives the same gradients."""
    rnn = ft.LSTM(10, 20, num_layers=2, dtype=torch.float64)
    x = torch.randn(5, 6, 10, dtype=torch.float64, requires_grad=True)
    output = rnn(x)
    output[0].sum().backward(retain_graph=True)
    grads = [x.grad.clone()] + [p.grad.clone() for p in rnn.parameters()]
    for _ in range(4):
        rnn.zero_grad()
        x.grad.zero_()
        output[0].sum().backward(retain_graph=True)
        for again, first in zip([x.grad] + [p.grad for p in rnn.parameters()], grads,
                                strict=True):
            torch.testing.assert_close(again, first, rtol=0, atol=0)


def _noncontiguous(tensor):
    """Upstream's ``make_noncontig``: the same values, every other element
    of a wider buffer."""
    return torch.stack([torch.zeros_like(tensor), tensor], tensor.dim()).select(tensor.dim(), 1)


def _forward_backward(rnn, input_val, hx_val, grad_output, grad_hy, cx_val=None,
                      grad_cy=None):
    """Upstream's ``forward_backward`` of ``_test_RNN_cpu_vs_cudnn`` (its
    projection section passes c's values and gradient: they have other
    shapes than h's)."""
    if isinstance(input_val, rnn_utils.PackedSequence):
        data = input_val.data.clone().requires_grad_(True)
        x = rnn_utils.PackedSequence(data, input_val.batch_sizes)
    else:
        x = data = input_val.clone().requires_grad_(True)
    cx_val = hx_val.add(1) if cx_val is None else cx_val
    grad_cy = grad_hy + 1 if grad_cy is None else grad_cy
    hx = (hx_val.clone().requires_grad_(True), cx_val.clone().requires_grad_(True))
    output, hy = rnn(x, hx)
    if isinstance(output, rnn_utils.PackedSequence):
        output = output.data
    torch.autograd.backward([output, hy[0], hy[1]], [grad_output, grad_hy, grad_cy])
    return ([output, hy[0], hy[1], data.grad, hx[0].grad, hx[1].grad]
            + [p.grad for p in rnn.parameters()])


def _cpu_vs_cudnn_case(bias, bidirectional, batch_first, contig, variable_len, dropout=0,
                       proj_size=0):
    """One combination of upstream's ``_test_RNN_cpu_vs_cudnn``: outputs,
    final states and all gradients of fastlstm.torch against nn.LSTM's
    (upstream's tolerance is 5e-5).  With ``proj_size`` (its "LSTM with
    projections" section) h has proj_size features and c its own values and
    gradient."""
    input_size, hidden_size, num_layers, seq_length, batch = 10, 6, 2, 7, 6
    torch.manual_seed(0)
    directions = 2 if bidirectional else 1
    features = proj_size or hidden_size
    shape = (batch, seq_length) if batch_first else (seq_length, batch)
    input_val = torch.randn(*shape, input_size)
    grad_output = torch.randn(*shape, features * directions)
    hx_val = torch.randn(num_layers * directions, batch, features)
    grad_hy = torch.randn(num_layers * directions, batch, features)
    cx_val = grad_cy = None
    if proj_size:
        cx_val = torch.randn(num_layers * directions, batch, hidden_size)
        grad_cy = torch.randn(num_layers * directions, batch, hidden_size)
    if not contig:
        grad_output, grad_hy = _noncontiguous(grad_output), _noncontiguous(grad_hy)
        input_val, hx_val = _noncontiguous(input_val), _noncontiguous(hx_val)
    if variable_len:
        lengths = [7, 5, 5, 2, 1, 1]
        input_val = rnn_utils.pack_padded_sequence(input_val, lengths,
                                                   batch_first=batch_first)
        grad_output = rnn_utils.pack_padded_sequence(grad_output, lengths,
                                                     batch_first=batch_first).data
    config = dict(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
                  bias=bias, dropout=dropout, bidirectional=bidirectional,
                  batch_first=batch_first, proj_size=proj_size)
    reference = torch.nn.LSTM(**config)
    rnn = _copy_of(reference, **config)
    arguments = (input_val, hx_val, grad_output, grad_hy, cx_val, grad_cy)
    actual = _forward_backward(rnn, *arguments)
    expected = _forward_backward(reference, *arguments)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=5e-6)


@pytest.mark.parametrize("dropout", [0, 1])
def test_RNN_cpu_vs_cudnn(dropout):
    """Upstream ``TestNN._test_RNN_cpu_vs_cudnn`` (no_dropout and
    with_dropout, p=1 being the only deterministic rate): every combination
    of bias, bidirectional, batch_first, contiguous and variable-length
    (PackedSequence) inputs."""
    for flags in itertools.product((True, False), repeat=5):
        bias, _, _, contig, _ = flags
        if dropout and not (bias and contig):    # test time: dropout on 8 of the 32
            continue
        _cpu_vs_cudnn_case(*flags, dropout=dropout)


def test_RNN_cpu_vs_cudnn_projections():
    """Upstream ``TestNN._test_RNN_cpu_vs_cudnn``, its "LSTM with
    projections" section (proj_size=3), on 8 of its 32 combinations (test
    time): each of bidirectional, contiguous and variable-length inputs
    with each other, bias and batch_first alternating with them."""
    for bidirectional, contig, variable_len in itertools.product((True, False), repeat=3):
        _cpu_vs_cudnn_case(bidirectional != contig, bidirectional, contig != variable_len,
                           contig, variable_len, proj_size=3)


def test_rnn_proj_args_check():
    """Upstream ``TestNN.test_rnn_proj_args_check``: an LSTM with proj_size
    refuses, with a RuntimeError, an input of the wrong feature size, and
    states of the wrong batch size, layer count or width (h has proj_size
    features, c hidden_size)."""
    input_size, hidden_size, proj_size, num_layers, batch, seq_len = 3, 5, 2, 2, 4, 6
    bad = 7        # upstream's prime: no size divides it
    x_shape = (seq_len, batch, input_size)
    h_shape = (num_layers, batch, proj_size)
    c_shape = (num_layers, batch, hidden_size)

    def changed(shape, dim, size):
        return shape[:dim] + (size,) + shape[dim + 1:]

    cases = [(changed(x_shape, 2, bad), h_shape, c_shape),        # input size
             (x_shape, changed(h_shape, 1, bad), c_shape),        # batch of h
             (x_shape, h_shape, changed(c_shape, 1, bad)),        # batch of c
             (x_shape, changed(h_shape, 0, bad), c_shape),        # layers of h
             (x_shape, h_shape, changed(c_shape, 0, bad)),        # layers of c
             (x_shape, changed(h_shape, 2, hidden_size), c_shape),  # h as wide as c
             (x_shape, h_shape, changed(c_shape, 2, proj_size))]    # c as narrow as h
    module = ft.LSTM(input_size, hidden_size, num_layers, proj_size=proj_size)
    reference = torch.nn.LSTM(input_size, hidden_size, num_layers, proj_size=proj_size)
    for shapes in cases:
        x, h, c = (torch.randn(shape) for shape in shapes)
        for lstm in (module, reference):
            with pytest.raises(RuntimeError):
                lstm(x, (h, c))


@pytest.mark.parametrize("p, train", list(itertools.product((0, 0.1234), (True, False))))
def test_RNN_dropout_state(p, train):
    """Upstream ``TestNN.test_RNN_dropout_state``: dropout between layers
    draws anew each call in training mode, and a pickled copy computes the
    same in eval mode or without dropout."""
    rnn = ft.LSTM(100, 100, 2, bias=False, dropout=p).train(train)
    x, hx = torch.rand(1, 1, 100), torch.rand(2, 1, 100)
    output1, hy1 = rnn(x, (hx, hx))
    output2, hy2 = rnn(x, (hx, hx))
    output3, hy3 = pickle.loads(pickle.dumps(rnn))(x, (hx, hx))
    if p == 0 or not train:
        for a, b in ((output1, output2), (output1, output3), (hy1[0], hy2[0]),
                     (hy1[0], hy3[0])):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    else:
        assert not torch.equal(output1, output2) and not torch.equal(output1, output3)


@pytest.mark.parametrize("train", [True, False])
def test_RNN_change_dropout(train):
    """Upstream ``TestNN.test_RNN_change_dropout``: the ``dropout``
    attribute may change between calls and takes effect at once."""
    torch.manual_seed(0)
    rnn = ft.LSTM(100, 100, 2, dropout=0).train(train)
    x = torch.rand(3, 2, 100)
    previous = None
    for p in (0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0):
        rnn.dropout = p
        output1, _ = rnn(x)
        output2, _ = rnn(x)
        if p in (0, 1) or not train:
            torch.testing.assert_close(output1, output2, rtol=0, atol=0)
        else:
            assert not torch.equal(output1, output2)
        if previous is not None:
            assert torch.equal(output1, previous) == (not train)
        previous = output1


def test_RNN_input_size_zero():
    """Upstream ``TestNN.test_RNN_input_size_zero``: an empty batch gives
    empty outputs and states."""
    rnn = ft.LSTM(input_size=3, hidden_size=4)
    output, (h_n, c_n) = rnn(torch.zeros((5, 0, 3)))
    assert output.shape == (5, 0, 4) and h_n.shape == c_n.shape == (1, 0, 4)
