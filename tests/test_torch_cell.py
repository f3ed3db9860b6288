"""``fastlstm.torch.LSTMCell`` against ``torch.nn.LSTMCell``: state_dict,
outputs and gradients over a few steps, unbatched calls, errors."""
import pytest
import torch

import fastlstm.torch as ft

TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-6),
             torch.float64: dict(rtol=1e-10, atol=1e-12)}


def _pair(dtype, bias=True):
    torch.manual_seed(0)
    theirs = torch.nn.LSTMCell(3, 5, bias=bias, dtype=dtype)
    ours = ft.LSTMCell(3, 5, bias=bias, dtype=dtype)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def _unroll(cell, xs, state):
    """Three steps of the cell from ``state`` (None: zeros), then the
    gradients of a random linear loss of every h and the last c."""
    cell.zero_grad()
    xs = xs.clone().requires_grad_(True)
    hs = []
    for x in xs:
        state = cell(x, state)
        hs.append(state[0])
    generator = torch.Generator().manual_seed(4)
    outputs = torch.stack(hs + [state[1]])
    (outputs * torch.randn(outputs.shape, generator=generator, dtype=outputs.dtype)).sum() \
        .backward()
    return [outputs, xs.grad] + [p.grad for p in cell.parameters()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_state", [False, True])
def test_matches_nn_lstm_cell(dtype, bias, with_state):
    theirs, ours = _pair(dtype, bias)
    generator = torch.Generator().manual_seed(1)
    xs = torch.randn(3, 2, 3, generator=generator, dtype=dtype)
    state = (tuple(torch.randn(2, 5, generator=generator, dtype=dtype) for _ in range(2))
             if with_state else None)
    for a, e in zip(_unroll(ours, xs, state), _unroll(theirs, xs, state), strict=True):
        torch.testing.assert_close(a, e, **TOLERANCE[dtype])


def test_unbatched_and_no_grad():
    theirs, ours = _pair(torch.float32)
    x, h, c = torch.randn(3), torch.randn(5), torch.randn(5)
    with torch.no_grad():
        for actual, expected in zip(ours(x, (h, c)), theirs(x, (h, c)), strict=True):
            assert actual.shape == (5,)
            torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
    assert type(ours.to_torch()) is torch.nn.LSTMCell


def test_errors_as_nn_lstm_cell():
    """Upstream ``TestNN.test_RNN_cell_no_broadcasting`` (test/test_nn.py):
    states of another batch size raise a RuntimeError, not a broadcast."""
    theirs, ours = _pair(torch.float32)
    x, good, bad = torch.randn(3, 3), torch.randn(3, 5), torch.randn(1, 5)
    for cell in (theirs, ours):
        for hx in ((bad, good), (good, bad)):
            with pytest.raises(RuntimeError):
                cell(x, hx)
    with pytest.raises(ft.LSTMInputError, match="1D or 2D, got 3D"):
        ours(torch.randn(1, 3, 3))
    with pytest.raises(ft.LSTMInputError, match="input_size: got 4 expected 3"):
        ours(torch.randn(2, 4))
    with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
        ft.LSTMCell(3, 0)
