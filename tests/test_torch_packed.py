"""``fastlstm.torch.LSTM`` on PackedSequence inputs against ``torch.nn.LSTM``:
the packed output (data, batch_sizes, sorted and unsorted indices), the
final states in the caller's order, and every gradient."""
import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pack_sequence

import fastlstm.torch as ft

TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-6),
             torch.float64: dict(rtol=1e-10, atol=1e-12)}


def _pair(dtype, **config):
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(dtype=dtype, **config)
    ours = ft.LSTM(dtype=dtype, **config)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def _run(module, make_input, hx, grad):
    """Outputs, and with ``grad`` the gradients of a random linear loss with
    respect to the packed data, the states and every parameter."""
    module.zero_grad()
    data = make_input().requires_grad_(grad)
    states = None if hx is None else tuple(s.clone().requires_grad_(grad) for s in hx)
    packed = make_input.pack(data)
    with torch.set_grad_enabled(grad):
        output, (h_n, c_n) = module(packed, states)
    assert isinstance(output, PackedSequence)
    results = [output.data, h_n, c_n]
    assert torch.equal(output.batch_sizes, packed.batch_sizes)
    for a, b in ((output.sorted_indices, packed.sorted_indices),
                 (output.unsorted_indices, packed.unsorted_indices)):
        assert (a is None and b is None) or torch.equal(a, b)
    if grad:
        generator = torch.Generator().manual_seed(5)
        loss = sum((r * torch.randn(r.shape, generator=generator, dtype=r.dtype)).sum()
                   for r in results)
        loss.backward()
        results += [data.grad] + ([s.grad for s in states] if states else [])
        results += [p.grad for p in module.parameters()]
    return results


class _Padded:
    """Padded (T, B, I) inputs packed with ``pack_padded_sequence``."""

    def __init__(self, lengths, features, dtype, enforce_sorted):
        self.lengths, self.enforce_sorted = torch.tensor(lengths), enforce_sorted
        generator = torch.Generator().manual_seed(1)
        self.x = torch.randn(max(lengths), len(lengths), features, generator=generator,
                             dtype=dtype)

    def __call__(self):
        return self.x.clone()

    def pack(self, x):
        return pack_padded_sequence(x, self.lengths, enforce_sorted=self.enforce_sorted)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("config", [
    dict(num_layers=1, bidirectional=False),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=2, bidirectional=False, bias=False),
])
@pytest.mark.parametrize("lengths, enforce_sorted, with_state", [
    ([6, 4, 4, 1], True, False),     # sorted, one sequence of one step
    ([3, 6, 1, 5, 6], False, True),  # unsorted: sorted_indices permute rows and states
])
@pytest.mark.parametrize("grad", [False, True])
def test_packed_matches_nn_lstm(dtype, config, lengths, enforce_sorted, with_state, grad):
    theirs, ours = _pair(dtype, input_size=3, hidden_size=4, **config)
    make_input = _Padded(lengths, 3, dtype, enforce_sorted)
    hx = None
    if with_state:
        directions = 2 if config["bidirectional"] else 1
        generator = torch.Generator().manual_seed(2)
        hx = [torch.randn(config["num_layers"] * directions, len(lengths), 4,
                          generator=generator, dtype=dtype) for _ in range(2)]
    actual = _run(ours, make_input, hx, grad)
    expected = _run(theirs, make_input, hx, grad)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, **TOLERANCE[dtype])


def test_pack_sequence_of_tensors_and_unbatched_lengths():
    """pack_sequence (the other way to build one), batch_first ignored as in
    nn.LSTM (PackedSequence data is time-major by construction)."""
    theirs, ours = _pair(torch.float32, input_size=2, hidden_size=3, batch_first=True)
    generator = torch.Generator().manual_seed(3)
    sequences = [torch.randn(n, 2, generator=generator) for n in (2, 7, 7, 3)]
    packed = pack_sequence(sequences, enforce_sorted=False)
    with torch.no_grad():
        (output, (h_n, _)), (expected, (h_e, _)) = ours(packed), theirs(packed)
    torch.testing.assert_close(output.data, expected.data, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h_n, h_e, rtol=1e-5, atol=1e-6)
    # Each sequence alone gives the same final state as in the batch.
    for row, sequence in enumerate(sequences):
        with torch.no_grad():
            _, (h_alone, _) = ours(sequence[None])
        np.testing.assert_allclose(h_alone[:, 0].numpy(), h_n[:, row].numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_packed_input_errors():
    module = ft.LSTM(3, 4)
    packed = pack_sequence([torch.zeros(2, 5)])
    with pytest.raises(ft.LSTMInputError, match="input_size. Expected 3, got 5"):
        module(packed)
    packed = pack_sequence([torch.zeros(2, 3)] * 2)
    with pytest.raises(ft.LSTMInputError, match=r"hidden\[0\] size \(1, 2, 4\)"):
        module(packed, (torch.zeros(1, 3, 4), torch.zeros(1, 3, 4)))


@pytest.mark.parametrize("grad", [False, True])
def test_many_lengths_as_nn_lstm(grad):
    """37 rows of lengths 1..23 (repeats included), unsorted, bidirectional
    and 2 layers: the kernels run each step on the rows that have it
    (tests/test_lengths.py); results as nn.LSTM's."""
    theirs, ours = _pair(torch.float64, input_size=3, hidden_size=4, num_layers=2,
                         bidirectional=True)
    lengths = torch.randint(1, 24, (37,), generator=torch.Generator().manual_seed(6))
    lengths[3] = 23
    make_input = _Padded(lengths.tolist(), 3, torch.float64, enforce_sorted=False)
    hx = [torch.randn(4, 37, 4, dtype=torch.float64) for _ in range(2)]
    for a, e in zip(_run(ours, make_input, hx, grad), _run(theirs, make_input, hx, grad),
                    strict=True):
        torch.testing.assert_close(a, e, **TOLERANCE[torch.float64])


def test_padded_steps_are_not_computed(monkeypatch):
    """The kernels get the PackedSequence's lengths (not a mask, not padded
    rows): one call per layer and direction, inference and training."""
    from fastlstm import _kernel

    calls = []
    for name in ("forward", "train_forward", "train_backward"):
        original = getattr(_kernel, name)

        def spy(*args, _original=original, _name=name):
            calls.append((_name, args[-1]))
            return _original(*args)
        monkeypatch.setattr(_kernel, name, spy)
    _, ours = _pair(torch.float32, input_size=3, hidden_size=4, bidirectional=True)
    packed = pack_sequence([torch.randn(n, 3) for n in (5, 2, 2)])
    with torch.no_grad():
        ours(packed)
    output, _ = ours(packed)
    output.data.sum().backward()
    assert [name for name, _ in calls] == ["forward"] * 2 + ["train_forward"] * 2 + [
        "train_backward"] * 2
    for _, lengths in calls:
        assert lengths.tolist() == [5, 2, 2]
