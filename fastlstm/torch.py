"""``fastlstm.torch.LSTM``: a drop-in ``torch.nn.LSTM`` whose forward and
backward passes run on fastlstm's kernels (CPU, float32/float64).

Importing this module imports PyTorch; ``import fastlstm`` does not.

Each (layer, direction) is one ``torch.autograd.Function`` over
``fastlstm.training.forward``/``backward``; stacking, the concatenation of
directions and the dropout between layers are ordinary PyTorch operations,
so autograd composes them.  PyTorch's gate order i, f, g, o is Keras's
i, f, c, o: ``kernel = weight_ih.T``, ``recurrent_kernel = weight_hh.T``,
``bias = bias_ih + bias_hh``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn import functional

from . import convert, training, validation


def _array(tensor: Any, copy: bool = False) -> NDArray[Any]:
    """The tensor's values as a C-contiguous NumPy array; ``copy`` for the
    arguments the kernels overwrite."""
    return np.array(tensor.detach().numpy(), order="C", copy=copy or None)


class _Lease:
    """A training tape lent to one autograd node.  When the node is freed
    (after a backward without ``retain_graph``, or with its outputs) the
    tape goes back to its layer's free list, so the next step reuses its
    pages instead of faulting in fresh ones (~20 ms a step at
    (64, 50, 256, 512))."""

    __slots__ = ("tape", "free")

    def __init__(self, tape: training.Tape, free: list[training.Tape]) -> None:
        self.tape, self.free = tape, free

    def __del__(self) -> None:
        if not self.free:              # one spare per (layer, direction)
            self.free.append(self.tape)


# torch is not analysed (see [tool.mypy]), so its classes are Any to mypy.
class _Direction(torch.autograd.Function):  # type: ignore[misc]
    """One LSTM layer in one direction, batch-major: x (B, T, I) ->
    outputs (B, T, H) in time order, h_n, c_n (B, H)."""

    @staticmethod
    def forward(ctx: Any, x: Any, h0: Any, c0: Any, weight_ih: Any, weight_hh: Any,
                bias_ih: Any, bias_hh: Any, reverse: bool,
                free: list[training.Tape]) -> tuple[Any, Any, Any]:
        biases = (None, None) if bias_ih is None else (bias_ih.detach().numpy(),
                                                       bias_hh.detach().numpy())
        kernel, recurrent_kernel, *summed = convert.torch_to_keras(
            weight_ih.detach().numpy(), weight_hh.detach().numpy(), *biases)
        bias = summed[0] if summed else np.zeros(kernel.shape[1], kernel.dtype)
        try:
            workspace: training.Tape | None = free.pop()
        except IndexError:             # none spare (e.g. a second forward before backward)
            workspace = None
        batch, timesteps, features = x.shape
        units, itemsize = recurrent_kernel.shape[0], kernel.dtype.itemsize
        validation.within_memory(
            [("copies of x and the states", (x.numel() + 2 * batch * units) * itemsize),
             ("the training workspace", training.forward_bytes(
                 batch, timesteps, features, units, kernel.dtype, workspace=workspace))],
            f"fastlstm.torch.LSTM on input of shape {tuple(x.shape)}")
        sequence, _, h, c, tape = training.forward(
            _array(x), kernel, recurrent_kernel, bias, _array(h0, True), _array(c0, True),
            go_backwards=reverse, workspace=workspace)
        assert sequence is not None     # return_sequence=True (for mypy)
        if reverse:        # fastlstm returns processing order; torch, time order
            sequence = np.ascontiguousarray(sequence[:, ::-1])
        ctx.lease, ctx.reverse = _Lease(tape, free), reverse
        ctx.has_bias = bias_ih is not None
        return torch.from_numpy(sequence), torch.from_numpy(h), torch.from_numpy(c)

    @staticmethod
    def backward(ctx: Any, d_sequence: Any, d_h: Any, d_c: Any) -> tuple[Any, ...]:
        d_sequence = d_sequence.flip(1) if ctx.reverse else d_sequence
        dx, dh0, dc0, dkernel, drecurrent_kernel, dbias = training.backward(
            ctx.lease.tape, _array(d_sequence), None, _array(d_h, True), _array(d_c, True),
            input_gradient=ctx.needs_input_grad[0])
        # Both biases get the gradient of their sum; separate tensors, since
        # autograd may adopt a returned gradient as the parameter's .grad.
        dbias_ih = dbias_hh = None
        if ctx.has_bias:
            dbias_ih = torch.from_numpy(dbias)
            dbias_hh = dbias_ih.clone()
        dx = None if dx is None else torch.from_numpy(dx)
        return (dx, torch.from_numpy(dh0), torch.from_numpy(dc0),
                torch.from_numpy(dkernel).T, torch.from_numpy(drecurrent_kernel).T,
                dbias_ih, dbias_hh, None, None)


class LSTM(nn.Module):  # type: ignore[misc]
    """``torch.nn.LSTM`` on fastlstm's CPU kernels.

    Same constructor, call signature, parameters and ``state_dict`` as
    ``torch.nn.LSTM`` (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
    ``bias_hh_l{k}``, with ``_reverse`` for the backward direction), so
    weights load either way.  Not supported: ``proj_size``, PackedSequence
    inputs, devices other than the CPU, dtypes other than float32/float64.

    Examples
    --------
    >>> import torch, fastlstm.torch
    >>> lstm = fastlstm.torch.LSTM(10, 16, num_layers=2, batch_first=True)
    >>> output, (h_n, c_n) = lstm(torch.randn(4, 7, 10))
    >>> output.sum().backward()
    >>> output.shape, h_n.shape, lstm.weight_hh_l1.grad.shape
    (torch.Size([4, 7, 16]), torch.Size([2, 4, 16]), torch.Size([64, 16]))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        for value, name in ((input_size, "input_size"), (hidden_size, "hidden_size"),
                            (num_layers, "num_layers")):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= dropout <= 1 or isinstance(dropout, bool):
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        if proj_size:
            raise ValueError(f"fastlstm.torch.LSTM has no proj_size, got {proj_size!r}")
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"fastlstm.torch.LSTM runs on the CPU, got device={device!r}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.bias = num_layers, bool(bias)
        self.batch_first, self.dropout = bool(batch_first), float(dropout)
        self.bidirectional, self.proj_size = bool(bidirectional), 0
        directions = 2 if bidirectional else 1
        gates = 4 * hidden_size
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size * directions
            for suffix in ("", "_reverse")[:directions]:
                shapes: dict[str, tuple[int, ...]] = {
                    "weight_ih": (gates, width), "weight_hh": (gates, hidden_size)}
                if self.bias:
                    shapes.update(bias_ih=(gates,), bias_hh=(gates,))
                for name, shape in shapes.items():
                    self.register_parameter(
                        f"{name}_l{layer}{suffix}",
                        nn.Parameter(torch.empty(shape, dtype=dtype)))
        self._free_tapes: list[list[training.Tape]] = [[] for _ in range(num_layers * directions)]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.LSTM``'s initialisation: every weight uniform in
        (-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        bound = 1 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def flatten_parameters(self) -> None:
        """No-op, for code written against ``nn.LSTM`` (whose cuDNN path
        wants one contiguous weight buffer)."""

    def _weights(self, layer: int, suffix: str) -> list[Any]:
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return [getattr(self, f"{name}_l{layer}{suffix}", None) for name in names]

    def forward(self, input: Any, hx: tuple[Any, Any] | None = None,
                ) -> tuple[Any, tuple[Any, Any]]:
        """``output, (h_n, c_n) = lstm(input, (h_0, c_0))`` as in ``nn.LSTM``."""
        if not isinstance(input, torch.Tensor):
            raise TypeError(
                f"fastlstm.torch.LSTM takes a tensor input, got {type(input).__name__}")
        dtype = self.weight_ih_l0.dtype
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"fastlstm.torch.LSTM computes in float32 or float64; its "
                            f"weights are {dtype} (call .float() or .double())")
        if input.dtype != dtype:
            raise TypeError(f"input dtype must match the weights ({dtype}), got {input.dtype}")
        if input.device.type != "cpu":
            raise ValueError(f"fastlstm.torch.LSTM runs on the CPU, got {input.device}")
        if input.dim() not in (2, 3) or input.shape[-1] != self.input_size:
            raise ValueError(
                f"input must have shape (L, N, {self.input_size}) (or batch first, or "
                f"unbatched (L, {self.input_size})), got {tuple(input.shape)}")
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(1)
        if not self.batch_first or not batched:
            x = x.transpose(0, 1)                       # -> (N, L, input_size)
        directions = 2 if self.bidirectional else 1
        state_shape = (self.num_layers * directions, x.shape[0], self.hidden_size)
        if hx is None:
            h0 = c0 = x.new_zeros(state_shape)
        else:
            h0, c0 = (s if batched else s.unsqueeze(1) for s in hx)
            for state, name in ((h0, "h_0"), (c0, "c_0")):
                if tuple(state.shape) != state_shape or state.dtype != dtype:
                    raise ValueError(
                        f"{name} must have shape {state_shape} and dtype {dtype}, "
                        f"got {tuple(state.shape)} {state.dtype}")
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            if layer and self.dropout and self.training:
                x = functional.dropout(x, self.dropout, training=True)
            outputs = []
            for direction, suffix in enumerate(("", "_reverse")[:directions]):
                index = layer * directions + direction
                sequence, h, c = _Direction.apply(
                    x, h0[index], c0[index], *self._weights(layer, suffix),
                    bool(direction), self._free_tapes[index])
                outputs.append(sequence)
                h_n.append(h)
                c_n.append(c)
            x = torch.cat(outputs, dim=2) if directions == 2 else outputs[0]
        output = x if self.batch_first and batched else x.transpose(0, 1).contiguous()
        h_n, c_n = torch.stack(h_n), torch.stack(c_n)
        if not batched:
            output, h_n, c_n = output.squeeze(1), h_n.squeeze(1), c_n.squeeze(1)
        return output, (h_n, c_n)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (torch.save, deepcopy) without the spare training tapes."""
        state = super().__getstate__()
        state["_free_tapes"] = [[] for _ in self._free_tapes]
        return state  # type: ignore[no-any-return]

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bias={self.bias}, batch_first={self.batch_first}, "
                f"dropout={self.dropout}, bidirectional={self.bidirectional}")
