"""``fastlstm.torch``: drop-ins for ``torch.nn.LSTM`` and ``torch.nn.LSTMCell``
whose passes run on fastlstm's CPU kernels.

Importing this module imports PyTorch; ``import fastlstm`` does not (the
attribute ``fastlstm.torch`` imports it on first use).

Each (layer, direction) runs through ``fastlstm.torch_direction``: the
inference kernel when no gradient is needed, a recorded autograd function
when one is, a ``torch.library`` custom op under ``torch.compile`` and
``torch.export``.  Stacking, the concatenation of directions and the
dropout between layers are ordinary PyTorch operations.  PyTorch's gate
order i, f, g, o is Keras's i, f, c, o: ``kernel = weight_ih.T``,
``recurrent_kernel = weight_hh.T``, ``bias = bias_ih + bias_hh``.

Dtypes: float32 and float64 compute in their own precision; float16 and
bfloat16 modules compute in float32 and return their dtype.  Under
``torch.autocast("cpu")`` (where ``nn.LSTM`` runs in the autocast dtype)
the kernels compute in float32 and the outputs come in the autocast dtype.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional
from torch.nn.utils.rnn import PackedSequence

from . import quantization, torch_direction
from .layer import LSTM as FastLSTM
from .torch_direction import Direction, lstm_direction

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


class LSTMInputError(ValueError, RuntimeError):
    """Bad input to a ``fastlstm.torch`` module: a ValueError, as fastlstm
    raises for bad input, and a RuntimeError, as ``nn.LSTM`` raises for most
    of the same mistakes (code that catches either keeps working)."""


JIT_UNSUPPORTED = (
    "{name} runs fastlstm's compiled kernels from Python, which TorchScript "
    "(torch.jit.script / torch.jit.trace) cannot record; call module.to_torch() for a "
    "torch.nn.{name} with the same weights, or use torch.compile / torch.export")


def _check_sizes(input_size: Any, hidden_size: Any, bias: Any) -> None:
    """``nn.RNNBase``'s checks and messages (TypeError for the type, ValueError
    for the value)."""
    if not isinstance(bias, bool):
        raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
    for value, name in ((input_size, "input_size"), (hidden_size, "hidden_size")):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
        if value <= 0:
            raise ValueError(f"{name} must be greater than zero, got {value}")


def _compute_dtypes(weight_dtype: Any, input_dtype: Any) -> tuple[Any, Any]:
    """``(compute dtype, output dtype)`` of a call; the input's dtype must
    match the weights' as in ``nn.LSTM``, except under autocast."""
    if torch.is_autocast_enabled("cpu"):
        return torch.float32, torch.get_autocast_dtype("cpu")
    if input_dtype != weight_dtype:
        raise LSTMInputError(
            f"RNN input dtype ({input_dtype}) does not match weight dtype ({weight_dtype}). "
            f"Convert input: input.to({weight_dtype}), or convert model: "
            f"model.to({input_dtype})")
    return (torch.float64 if weight_dtype == torch.float64 else torch.float32), weight_dtype


def _mode(tensors: list[Any]) -> str:
    """How to run: "op" while torch.compile/export trace, "autograd" when a
    gradient is needed, else "infer"."""
    if torch.compiler.is_compiling():
        return "op"
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return "autograd"
    return "infer"


def _direction(mode: str, x: Any, h0: Any, c0: Any, weights: list[Any],
               lengths: Any, reverse: bool, free: list[Any]) -> tuple[Any, Any, Any]:
    """One direction of one layer: x (B, T, I) -> (sequence (B, T, H) in
    time order, h_n, c_n), all in x's dtype."""
    if mode == "autograd":
        if lengths is not None:
            return torch_direction.record_packed(x, h0, c0, weights, lengths, reverse, free)
        return Direction.apply(x, h0, c0, *weights, None, reverse, free)  # type: ignore[no-any-return]
    if mode == "op":
        return lstm_direction(x, h0, c0, *weights,  # type: ignore[no-any-return]
                              None if lengths is None else torch.from_numpy(lengths), reverse)
    pack = torch_direction.weights(weights, x.dtype)
    h, c = h0.detach().numpy().copy(), c0.detach().numpy().copy()
    sequence = torch_direction.infer(x.detach().contiguous().numpy(), h, c, pack, lengths,
                                     reverse)
    # A reversed sequence is a view with a negative stride (numpy keeps it
    # even through ascontiguousarray when T = 1), which torch refuses.
    return (torch.from_numpy(sequence.copy() if reverse else sequence), torch.from_numpy(h),
            torch.from_numpy(c))


def _packed_layout(batch_sizes: Any) -> tuple[Any, Any, Any]:
    """Where a PackedSequence's rows go in a padded (B, T) batch (sorted
    order): ``(rows, steps, lengths)``, each row of its data at
    ``[rows[k], steps[k]]``; ``lengths`` (B,) int64."""
    sizes = batch_sizes.numpy()
    steps = np.repeat(np.arange(len(sizes)), sizes)
    rows = np.arange(len(steps)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    lengths = (sizes[None, :] > np.arange(sizes[0])[:, None]).sum(axis=1)
    return torch.from_numpy(rows), torch.from_numpy(steps), lengths


class _Recurrent(nn.Module):  # type: ignore[misc]
    """What LSTM and LSTMCell share: the parameters, their initialisation,
    dtypes, and refusing TorchScript."""

    input_size: int
    hidden_size: int

    def _register(self, suffix: str, width: int, bias: bool, dtype: Any) -> None:
        gates = 4 * self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {
            "weight_ih": (gates, width), "weight_hh": (gates, self.hidden_size)}
        if bias:
            shapes.update(bias_ih=(gates,), bias_hh=(gates,))
        for name, shape in shapes.items():
            self.register_parameter(name + suffix,
                                    nn.Parameter(torch.empty(shape, dtype=dtype)))

    def reset_parameters(self) -> None:
        """``nn.LSTM``'s initialisation: every weight uniform in
        (-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        bound = 1 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def _weights(self, suffix: str) -> list[Any]:
        """``[weight_ih, weight_hh, bias_ih, bias_hh]`` of one direction (None
        for missing biases), read from ``_parameters`` directly: a call
        reads them for every direction, and ``nn.Module.__getattr__`` is slow."""
        parameters = self._parameters
        return [parameters.get(name + suffix)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def _check_call(self, input: Any, weight_dtype: Any) -> None:
        if torch.jit.is_tracing() or torch.jit.is_scripting():
            raise RuntimeError(JIT_UNSUPPORTED.format(name=type(self).__name__))
        if weight_dtype not in _FLOATS:
            raise TypeError(f"{type(self).__name__} computes in floating point, the "
                            f"weights are {weight_dtype}")
        if input.device.type != "cpu":
            raise LSTMInputError(
                f"{type(self).__name__} runs on the CPU, got input on {input.device}")

    def __prepare_scriptable__(self) -> Any:
        """``torch.jit.script`` calls this first: refuse with directions."""
        raise RuntimeError(JIT_UNSUPPORTED.format(name=type(self).__name__))

    def _copy_into(self, module: Any) -> Any:
        module.load_state_dict(self.state_dict())
        return module.train(self.training)


class LSTM(_Recurrent):
    """``torch.nn.LSTM`` on fastlstm's CPU kernels.

    Same constructor, call signature (tensors and PackedSequence), outputs,
    parameters and ``state_dict`` as ``torch.nn.LSTM`` (``weight_ih_l{k}``,
    ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, with
    ``_reverse`` for the backward direction), so weights load either way.
    Not supported: ``proj_size``, devices other than the CPU, double
    backward (a clear error), TorchScript (a clear error; ``to_torch()``).

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
        if (isinstance(dropout, bool) or not isinstance(dropout, (int, float))
                or not 0 <= dropout <= 1):
            raise ValueError(f"dropout should be a number in range [0, 1] representing the "
                             f"probability of an element being zeroed, got {dropout!r}")
        if not isinstance(batch_first, bool):
            raise TypeError(f"batch_first should be of type bool, got: "
                            f"{type(batch_first).__name__}")
        _check_sizes(input_size, hidden_size, bias)
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError(f"num_layers must be greater than zero, got {num_layers!r}")
        if proj_size:
            raise ValueError(f"fastlstm.torch.LSTM has no projection: proj_size must be 0, "
                             f"got {proj_size!r} (torch.nn.LSTM computes it)")
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"fastlstm.torch.LSTM runs on the CPU, got device={device!r}")
        if dtype is not None and dtype not in _FLOATS:
            raise TypeError(f"dtype must be one of {list(_FLOATS)}, got {dtype}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.bias = num_layers, bias
        self.batch_first, self.dropout = batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, 0
        directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size * directions
            for suffix in self._suffixes(layer):
                self._register(suffix, width, bias, dtype)
        self._free_tapes: list[list[Any]] = [[] for _ in range(num_layers * directions)]
        # fastlstm.quantize_dynamic: one int8 fastlstm.LSTM per (layer, direction)
        self._int8_layers: list[Any] | None = None
        self.reset_parameters()

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"][:2 if self.bidirectional else 1]

    @property
    def all_weights(self) -> list[list[Any]]:
        """The parameters per (layer, direction), as ``nn.LSTM.all_weights``:
        ``[weight_ih, weight_hh, bias_ih, bias_hh]`` (no biases without bias)."""
        return [[w for w in self._weights(suffix) if w is not None]
                for layer in range(self.num_layers) for suffix in self._suffixes(layer)]

    def flatten_parameters(self) -> None:
        """No-op, for code written against ``nn.LSTM`` (whose cuDNN path
        wants one contiguous weight buffer)."""

    def to_torch(self) -> Any:
        """A ``torch.nn.LSTM`` with this module's configuration and a copy of
        its weights (for TorchScript, double backward, other devices)."""
        return self._copy_into(nn.LSTM(
            self.input_size, self.hidden_size, self.num_layers, self.bias, self.batch_first,
            self.dropout, self.bidirectional, dtype=self.weight_ih_l0.dtype))

    def forward(self, input: Any, hx: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
        """``output, (h_n, c_n) = lstm(input, (h_0, c_0))`` as in ``nn.LSTM``;
        ``input`` is a tensor (L, N, H_in) (batch first: (N, L, H_in);
        unbatched: (L, H_in)) or a PackedSequence, and then so is ``output``."""
        packed = isinstance(input, PackedSequence)
        if not packed and not isinstance(input, torch.Tensor):
            raise TypeError(f"fastlstm.torch.LSTM takes a tensor or a PackedSequence, "
                            f"got {type(input).__name__}")
        if torch.onnx.is_in_onnx_export():
            return self._onnx_forward(input, hx)
        data = input.data if packed else input
        self._check_call(data, self.weight_ih_l0.dtype)
        compute, out_dtype = _compute_dtypes(self.weight_ih_l0.dtype, data.dtype)
        rows = steps = lengths = None
        if packed:
            if data.dim() != 2:
                raise LSTMInputError(f"input must have 2 dimensions, got {data.dim()}")
            self._check_features(data)
            rows, steps, lengths = _packed_layout(input.batch_sizes)
            x = data.new_zeros(len(lengths), len(input.batch_sizes), self.input_size)
            x[rows, steps] = data                      # (N, L, H_in), sorted by length
            batched = True
        else:
            if input.dim() not in (2, 3):
                raise LSTMInputError(
                    f"LSTM: Expected input to be 2D or 3D, got {input.dim()}D instead")
            self._check_features(input)
            batched = input.dim() == 3
            x = input if batched else input.unsqueeze(1)
            if not self.batch_first or not batched:
                x = x.transpose(0, 1)                  # -> (N, L, H_in)
            if x.shape[1] == 0:
                raise LSTMInputError("Expected sequence length to be larger than 0 in RNN")
        h0, c0 = self._start_states(hx, x, batched, compute)
        if packed and hx is not None and input.sorted_indices is not None:
            h0 = h0.index_select(1, input.sorted_indices)
            c0 = c0.index_select(1, input.sorted_indices)
        output, h_n, c_n = self._layers(x.to(compute), h0, c0, lengths)
        if out_dtype != compute:
            output, h_n, c_n = (t.to(out_dtype) for t in (output, h_n, c_n))
        if packed:
            if input.unsorted_indices is not None:
                h_n = h_n.index_select(1, input.unsorted_indices)
                c_n = c_n.index_select(1, input.unsorted_indices)
            return (PackedSequence(output[rows, steps], input.batch_sizes,
                                   input.sorted_indices, input.unsorted_indices),
                    (h_n, c_n))
        if not self.batch_first or not batched:
            output = output.transpose(0, 1).contiguous()
        if not batched:
            output, h_n, c_n = output.squeeze(1), h_n.squeeze(1), c_n.squeeze(1)
        return output, (h_n, c_n)

    def _check_features(self, data: Any) -> None:
        if data.shape[-1] != self.input_size:
            raise LSTMInputError(f"input.size(-1) must be equal to input_size. Expected "
                                 f"{self.input_size}, got {data.shape[-1]}")

    def _state_shape(self, batch: int) -> tuple[int, int, int]:
        return (self.num_layers * (2 if self.bidirectional else 1), batch, self.hidden_size)

    def _start_states(self, hx: Any, x: Any, batched: bool, compute: Any) -> tuple[Any, Any]:
        """(h_0, c_0) as (layers * directions, N, H) tensors in ``compute``;
        (None, None) for zeros."""
        shape = self._state_shape(x.shape[0])
        if hx is None:
            return None, None
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise LSTMInputError(f"hx must be a tuple (h_0, c_0) of two tensors, got "
                                 f"{type(hx).__name__}")
        rank = 3 if batched else 2
        if any(not isinstance(s, torch.Tensor) or s.dim() != rank for s in hx):
            kind = "batched 3-D" if batched else "unbatched 2-D"
            dims = ", ".join(f"{s.dim()}-D" if isinstance(s, torch.Tensor)
                             else type(s).__name__ for s in hx)
            raise LSTMInputError(f"For {kind} input, hx and cx should also be {rank}-D but "
                                 f"got ({dims}) tensors")
        states = [s if batched else s.unsqueeze(1) for s in hx]
        for index, state in enumerate(states):
            if tuple(state.shape) != shape:
                raise LSTMInputError(f"Expected hidden[{index}] size {shape}, got "
                                     f"{list(state.shape)}")
            if state.dtype != x.dtype and not torch.is_autocast_enabled("cpu"):
                raise LSTMInputError(f"hidden[{index}] must have the input's dtype "
                                     f"{x.dtype}, got {state.dtype}")
        return states[0].to(compute), states[1].to(compute)

    def _layers(self, x: Any, h0: Any, c0: Any, lengths: Any) -> tuple[Any, Any, Any]:
        """The stack on batch-major x (N, L, H_in) -> (output (N, L, D*H), h_n, c_n)."""
        if self._int8_layers is not None:
            return self._int8_stack(x, h0, c0, lengths)
        mode = _mode([x, h0, c0, *self._parameters.values()])
        if mode == "infer":
            return self._infer_layers(x, h0, c0, lengths)
        if h0 is None:
            h0 = c0 = x.new_zeros(self._state_shape(x.shape[0]))
        h_n: list[Any] = []
        c_n: list[Any] = []
        for layer in range(self.num_layers):
            if layer and self.dropout and self.training:
                x = functional.dropout(x, self.dropout, training=True)
            outputs = []
            for direction, suffix in enumerate(self._suffixes(layer)):
                index = len(h_n)
                sequence, h, c = _direction(mode, x, h0[index], c0[index],
                                            self._weights(suffix), lengths, bool(direction),
                                            self._free_tapes[index])
                outputs.append(sequence)
                h_n.append(h)
                c_n.append(c)
            x = torch.cat(outputs, dim=2) if len(outputs) == 2 else outputs[0]
        return x, torch.stack(h_n), torch.stack(c_n)

    def _int8_stack(self, x: Any, h0: Any, c0: Any, lengths: Any) -> tuple[Any, Any, Any]:
        """``_layers`` of a module made by ``fastlstm.quantize_dynamic``."""
        if self.training:
            raise LSTMInputError("an int8 module (made by fastlstm.quantize_dynamic) runs in "
                                 "eval mode only; call .eval() on it")
        if lengths is not None:
            raise LSTMInputError("an int8 module takes padded tensors, not a PackedSequence")
        assert self._int8_layers is not None
        if h0 is None:
            h0 = c0 = x.new_zeros(self._state_shape(x.shape[0]))
        h_n: list[Any] = []
        c_n: list[Any] = []
        with torch.no_grad():
            for _ in range(self.num_layers):
                outputs = []
                for direction in range(2 if self.bidirectional else 1):
                    index = len(h_n)
                    fast = self._int8_layers[index]
                    sequence, h, c = fast(x.detach().numpy(), initial_state=[
                        h0[index].detach().numpy(), c0[index].detach().numpy()])
                    if direction:   # fastlstm returns processing order; torch, time order
                        sequence = np.ascontiguousarray(sequence[:, ::-1])
                    outputs.append(torch.from_numpy(sequence))
                    h_n.append(torch.from_numpy(h))
                    c_n.append(torch.from_numpy(c))
                x = torch.cat(outputs, dim=2) if len(outputs) == 2 else outputs[0]
        return x, torch.stack(h_n), torch.stack(c_n)

    def _infer_layers(self, x: Any, h0: Any, c0: Any, lengths: Any) -> tuple[Any, Any, Any]:
        """``_layers`` without autograd, on NumPy views of the tensors: the
        kernel writes each direction's final states straight into h_n, c_n."""
        if h0 is None:
            h_n = np.zeros(self._state_shape(x.shape[0]), _NUMPY[x.dtype])
            c_n = h_n.copy()
        else:
            h_n, c_n = h0.numpy().copy(), c0.numpy().copy()
        sequence = (x.detach() if x.requires_grad else x).contiguous().numpy()
        index = 0
        for layer in range(self.num_layers):
            if layer and self.dropout and self.training:
                sequence = functional.dropout(torch.from_numpy(sequence), self.dropout,
                                              training=True).numpy()
            outputs = []
            for direction, suffix in enumerate(self._suffixes(layer)):
                pack = torch_direction.weights(self._weights(suffix), x.dtype)
                run = torch_direction.infer if lengths is None else torch_direction.infer_packed
                outputs.append(run(sequence, h_n[index], c_n[index], pack, lengths,
                                   bool(direction)))
                index += 1
            sequence = np.concatenate(outputs, axis=2) if len(outputs) == 2 else outputs[0]
        return torch.from_numpy(sequence), torch.from_numpy(h_n), torch.from_numpy(c_n)

    def _onnx_forward(self, input: Any, hx: Any) -> tuple[Any, Any]:
        """Under torch.onnx.export: ``nn.LSTM``'s own computation on these
        parameters, which the exporters write as ONNX's LSTM operator."""
        if isinstance(input, PackedSequence):
            raise LSTMInputError("fastlstm.torch.LSTM: ONNX export takes padded tensors, "
                                 "not a PackedSequence")
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(1 if not self.batch_first else 0)
        if hx is None:
            directions = 2 if self.bidirectional else 1
            batch = x.shape[0 if self.batch_first else 1]
            zeros = x.new_zeros(self.num_layers * directions, batch, self.hidden_size)
            hx = (zeros, zeros)
        elif not batched:
            hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        flat = [w for weights in self.all_weights for w in weights]
        output, h_n, c_n = torch._VF.lstm(x, hx, flat, self.bias, self.num_layers,
                                          self.dropout, self.training, self.bidirectional,
                                          self.batch_first)
        if not batched:
            output = output.squeeze(1 if not self.batch_first else 0)
            h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
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


class LSTMCell(_Recurrent):
    """``torch.nn.LSTMCell`` on fastlstm's kernels: one step,
    ``h_1, c_1 = cell(input, (h_0, c_0))``.

    Same constructor, parameters (``weight_ih``, ``weight_hh``, ``bias_ih``,
    ``bias_hh``) and ``state_dict`` as ``torch.nn.LSTMCell``.  A step is a
    one-step layer call; over whole sequences ``fastlstm.torch.LSTM`` is
    much faster (the time loop runs in the kernel).

    Examples
    --------
    >>> import torch, fastlstm.torch
    >>> cell = fastlstm.torch.LSTMCell(10, 20)
    >>> h, c = cell(torch.randn(3, 10))
    >>> h, c = cell(torch.randn(3, 10), (h, c))
    >>> h.shape, c.shape
    (torch.Size([3, 20]), torch.Size([3, 20]))
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        _check_sizes(input_size, hidden_size, bias)
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"fastlstm.torch.LSTMCell runs on the CPU, got device={device!r}")
        if dtype is not None and dtype not in _FLOATS:
            raise TypeError(f"dtype must be one of {list(_FLOATS)}, got {dtype}")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self._register("", input_size, bias, dtype)
        self._free_tapes: list[Any] = []
        self.reset_parameters()

    def to_torch(self) -> Any:
        """A ``torch.nn.LSTMCell`` with a copy of this cell's weights."""
        return self._copy_into(nn.LSTMCell(self.input_size, self.hidden_size, self.bias,
                                           dtype=self.weight_ih.dtype))

    def forward(self, input: Any, hx: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
        """``(h_1, c_1)`` for ``input`` (N, H_in) or (H_in,) and states
        (N, H) or (H,) (zeros when ``hx`` is None)."""
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"fastlstm.torch.LSTMCell takes a tensor, got "
                            f"{type(input).__name__}")
        self._check_call(input, self.weight_ih.dtype)
        if input.dim() not in (1, 2):
            raise LSTMInputError(
                f"LSTMCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None:
            for index, value in enumerate(hx):
                if value.dim() not in (1, 2):
                    raise LSTMInputError(f"LSTMCell: Expected hx[{index}] to be 1D or 2D, "
                                         f"got {value.dim()}D instead")
        compute, out_dtype = _compute_dtypes(self.weight_ih.dtype, input.dtype)
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        if x.shape[1] != self.input_size:
            raise LSTMInputError(f"input has inconsistent input_size: got {x.shape[1]} "
                                 f"expected {self.input_size}")
        shape = (x.shape[0], self.hidden_size)
        if hx is None:
            h0 = c0 = x.new_zeros(shape, dtype=compute)
        else:
            h0, c0 = (s if batched else s.unsqueeze(0) for s in hx)
            for index, state in enumerate((h0, c0)):
                if tuple(state.shape) != shape:
                    raise LSTMInputError(f"hx[{index}] must have shape {shape}, got "
                                         f"{tuple(state.shape)}")
            h0, c0 = h0.to(compute), c0.to(compute)
        x = x.to(compute)
        mode = _mode([x, h0, c0, *self._parameters.values()])
        _, h, c = _direction(mode, x.unsqueeze(1), h0, c0, self._weights(""), None, False,
                             self._free_tapes)
        h, c = h.to(out_dtype), c.to(out_dtype)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (torch.save, deepcopy) without the spare training tape."""
        state = super().__getstate__()
        state["_free_tapes"] = []
        return state  # type: ignore[no-any-return]

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"


def quantized_module(module: LSTM) -> LSTM:
    """``fastlstm.quantize_dynamic`` of a module in eval mode: a copy whose
    (layer, direction) pairs compute with int8 weights, its float weight
    parameters set to their dequantised values."""
    if module.training:
        raise ValueError("quantize_dynamic: the module must be in eval mode (call .eval() "
                         "first); int8 modules run inference only")
    if module.weight_ih_l0.dtype != torch.float32:
        raise ValueError(f"quantize_dynamic: int8 modules compute in float32, got "
                         f"{module.weight_ih_l0.dtype} weights")
    new = copy.deepcopy(module)
    layers = []
    for layer in range(new.num_layers):
        for direction, suffix in enumerate(new._suffixes(layer)):
            weight_ih, weight_hh, bias_ih, bias_hh = new._weights(suffix)
            fast = FastLSTM(new.hidden_size, return_sequences=True, return_state=True,
                            go_backwards=bool(direction), use_bias=new.bias)
            kernel = weight_ih.detach().numpy().T.copy()
            recurrent_kernel = weight_hh.detach().numpy().T.copy()
            bias = None if bias_ih is None else (bias_ih + bias_hh).detach().numpy()
            fast.set_weights([kernel, recurrent_kernel] + ([] if bias is None else [bias]))
            fast._set_int8(quantization.quantize_weights(kernel, recurrent_kernel, bias))
            kernel, recurrent_kernel = fast.get_weights()[:2]     # dequantised
            with torch.no_grad():
                weight_ih.copy_(torch.from_numpy(kernel.T))
                weight_hh.copy_(torch.from_numpy(recurrent_kernel.T))
            layers.append(fast)
    new._int8_layers = layers
    return new
