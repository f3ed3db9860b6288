"""``fastlstm.torch_direction``: which path a call takes, the pack cache,
and double backward refused, against ``torch.nn.LSTM`` with the same weights."""
import pytest
import torch

import fastlstm.torch as ft
from fastlstm import torch_direction, training


def _pair(seed=0, **config):
    torch.manual_seed(seed)
    theirs = torch.nn.LSTM(**config)
    ours = ft.LSTM(**config)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def _no_recording(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the recording forward ran")
    monkeypatch.setattr(training, "forward", refuse)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_no_grad_runs_the_inference_kernel(monkeypatch, context):
    theirs, ours = _pair(input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 3)
    _no_recording(monkeypatch)
    with context():
        output, (h_n, c_n) = ours(x)
        expected, (h_e, c_e) = theirs(x)
    assert output.grad_fn is None and not output.requires_grad
    for actual, wanted in ((output, expected), (h_n, h_e), (c_n, c_e)):
        torch.testing.assert_close(actual, wanted, rtol=1e-5, atol=1e-6)


def test_nothing_requiring_grad_runs_the_inference_kernel(monkeypatch):
    theirs, ours = _pair(input_size=3, hidden_size=4)
    ours.requires_grad_(False)
    _no_recording(monkeypatch)
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0].detach(), rtol=1e-5, atol=1e-6)


def test_pack_is_made_once_and_remade_after_an_optimizer_step(monkeypatch):
    """The inference path packs a direction's weights once; an in-place
    optimizer step (a new _version), load_state_dict and a replaced
    parameter each make it pack again, and the results follow the weights."""
    theirs, ours = _pair(input_size=3, hidden_size=4)
    packs = []
    real_pack = torch_direction._kernel.pack
    monkeypatch.setattr(torch_direction._kernel, "pack",
                        lambda *args: packs.append(1) or real_pack(*args))
    x = torch.randn(5, 2, 3)

    def check(expected_packs):
        with torch.no_grad():
            torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=1e-5, atol=1e-6)
        assert len(packs) == expected_packs

    check(1)
    check(1)                              # cached
    for module in (ours, theirs):         # the same step on both
        optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
        module(x)[0].square().sum().backward()
        optimizer.step()
    packs.clear()                         # the training forward packs its own
    check(1)
    theirs.bias_hh_l0.data.fill_(0.25)    # not seen by a version counter:
    ours.load_state_dict(theirs.state_dict())   # but load_state_dict copies in place
    check(2)
    ours.weight_hh_l0 = torch.nn.Parameter(ours.weight_hh_l0.detach() * 2)
    theirs.weight_hh_l0 = torch.nn.Parameter(theirs.weight_hh_l0.detach() * 2)
    check(3)


def test_functional_call_uses_the_given_weights():
    theirs, ours = _pair(input_size=3, hidden_size=4)
    x = torch.randn(5, 2, 3)
    for scale in (1.0, 0.5, 1.0):
        weights = {name: p.detach() * scale for name, p in ours.named_parameters()}
        with torch.no_grad():
            actual = torch.func.functional_call(ours, weights, (x,))[0]
            expected = torch.func.functional_call(theirs, weights, (x,))[0]
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def _penalised(module, head, x, on_input):
    """Issue 14's mixed graph: a loss, the gradient of it taken with
    create_graph=True, and a gradient penalty backpropagated."""
    module.zero_grad()
    head.zero_grad()
    x = x.clone().requires_grad_(on_input)
    output, _ = module(x)
    loss = head(output).square().mean()
    target = x if on_input else head.weight
    (grad,) = torch.autograd.grad(loss, target, create_graph=True)
    (loss + grad.square().sum()).backward()
    return [p.grad.clone() for p in module.parameters()]


def test_double_backward_through_the_lstm_is_refused():
    """A penalty on the input gradient needs the LSTM's second derivative:
    refused with a clear error (nn.LSTM computes it), never silently
    wrong."""
    _, ours = _pair(input_size=3, hidden_size=4, num_layers=2)
    head = torch.nn.Linear(4, 2)
    with pytest.raises(RuntimeError, match="double backward.*to_torch"):
        _penalised(ours, head, torch.randn(5, 2, 3), on_input=True)


def test_gradient_penalty_beside_the_lstm_is_exact():
    """A penalty on a later layer's weight gradient backpropagates through
    the LSTM's forward only: the same gradients as nn.LSTM."""
    theirs, ours = _pair(input_size=3, hidden_size=4, num_layers=2)
    head = torch.nn.Linear(4, 2)
    x = torch.randn(5, 2, 3)
    for actual, expected in zip(_penalised(ours, head, x, False),
                                _penalised(theirs, head, x, False), strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
