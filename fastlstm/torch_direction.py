"""One LSTM layer in one direction on PyTorch tensors, for ``fastlstm.torch``.

Three ways to run it, chosen by ``fastlstm.torch`` per call:

* ``infer``: NumPy arrays in and out, the inference kernel, no tape (under
  ``torch.no_grad``/``inference_mode``, or when nothing needs a gradient);
* ``Direction``: a ``torch.autograd.Function`` over ``fastlstm.training``
  (the recording forward keeps a tape that its backward reads);
* ``torch.ops.fastlstm.lstm_direction``: a ``torch.library`` custom op with
  a fake (meta) implementation and an autograd formula, which is what
  ``torch.compile`` and ``torch.export`` trace.  Its backward op runs the
  recording forward again (a traced graph cannot carry a tape).

All three read the weights through ``weights``: the kernel's pack of a
direction's ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` and, with
``proj_size``, ``weight_hr`` (``convert.torch_to_keras``, then
``_kernel.pack``; the projection kernel is ``weight_hr.T``), remade only when
one of the tensors changes (its ``_version`` counts in-place updates such
as an optimizer step; ``data_ptr`` and identity catch replaced tensors).

Sequences are batch-major (B, T, features) and in time order for both
directions; ``lengths`` (B,) marks the valid steps at the start of each row,
rows sorted longest first as in a PackedSequence: the kernels run each step
on the rows that have it (padded steps are not computed, their outputs are
zeros and their gradients zero; each row's final states are its own).
"""
from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from numpy.typing import NDArray

from . import _kernel, activations, convert, training, validation

Array = NDArray[Any]
_CODES = (activations.CODES["tanh"], activations.CODES["sigmoid"])
_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


class Pack(NamedTuple):
    """A direction's weights for the kernels (``kernel`` and
    ``recurrent_kernel`` are views of torch's tensors, Keras layout)."""
    signature: tuple[Any, ...] | None
    owner: Any                     # weakref to weight_ih
    others: tuple[Any, ...]        # strong references: their ids stay unique
    packed: Any
    kernel: Array
    recurrent_kernel: Array
    bias: Array
    projection_kernel: Array | None


# id(weight_ih) -> its Pack; an entry leaves when its weight_ih is freed.
# (A plain dict: torch's WeakIdKeyDictionary costs ~5 us a lookup, a
# quarter of a small call.)
_packs: dict[int, Pack] = {}


def _forget(key: int, owner: Any) -> None:
    if key in _packs and _packs[key].owner is owner:
        del _packs[key]


def _numpy(tensor: Any, dtype: Any) -> Array:
    """A detached tensor's values in the compute dtype (a view when it is
    already that dtype; half and bfloat16 are widened)."""
    return tensor.detach().to(dtype).numpy()  # type: ignore[no-any-return]


def _signature(tensors: tuple[Any, ...], dtype: Any) -> tuple[Any, ...] | None:
    """What a pack depends on; None when a tensor has no version counter
    (inference tensors), so nothing is cached."""
    signature: list[Any] = [dtype, _kernel.current_isa()]
    for tensor in tensors:
        if tensor is None:
            signature.append(None)
            continue
        try:
            version = tensor._version
        except RuntimeError:
            return None
        signature.append((id(tensor), version, tensor.data_ptr()))
    return tuple(signature)


def weights(tensors: Sequence[Any], dtype: Any, cache: bool = True) -> Pack:
    """The pack of ``(weight_ih, weight_hh, bias_ih, bias_hh, weight_hr)``
    (biases and weight_hr may be None) in ``dtype`` (torch.float32 or
    float64), cached on ``weight_ih`` until one of the tensors changes.

    Writes through ``tensor.data`` bypass the version counter, so a cached
    pack would miss them: the recording paths (training, where weights
    change every step anyway, and gradcheck perturbs ``.data``) pass
    ``cache=False``."""
    weight_ih, weight_hh, bias_ih, bias_hh, weight_hr = tensors
    signature = _signature(tuple(tensors), dtype) if cache else None
    key = id(weight_ih)
    cached = _packs.get(key) if signature is not None else None
    if cached is not None and cached.signature == signature:
        return cached      # the signature holds id(weight_ih): the same tensor
    biases = (None, None) if bias_ih is None else (_numpy(bias_ih, dtype),
                                                   _numpy(bias_hh, dtype))
    kernel, recurrent_kernel, *summed = convert.torch_to_keras(
        _numpy(weight_ih, dtype), _numpy(weight_hh, dtype), *biases)
    bias = summed[0] if summed else np.zeros(kernel.shape[1], kernel.dtype)
    projection = None if weight_hr is None else _numpy(weight_hr, dtype).T
    owner = None
    if signature is not None:
        owner = weakref.ref(weight_ih, lambda ref: _forget(key, ref))
    pack = Pack(signature, owner, tuple(tensors[1:]),
                _kernel.pack(kernel, recurrent_kernel, bias, projection),
                kernel, recurrent_kernel, bias, projection)
    if owner is not None:
        _packs[key] = pack
    return pack


def threads() -> int:
    """Threads for a call: torch's setting (``torch.set_num_threads``), at
    most the kernel's default."""
    return max(1, min(int(torch.get_num_threads()), _kernel.DEFAULT_THREADS))


def kernel_lengths(lengths: Any) -> Array | None:
    """``lengths`` (array or tensor, sorted longest first) as the kernels'
    intp array, or None."""
    if lengths is None:
        return None
    if isinstance(lengths, torch.Tensor):
        lengths = lengths.numpy()
    return np.ascontiguousarray(lengths, np.intp)


# ---------------------------------------------------------------- inference
def infer(x: Array, h: Array, c: Array, pack: Pack, lengths: Array | None,
          reverse: bool) -> Array:
    """Run the inference kernel: ``x`` (B, T, I) C-contiguous; ``h``, ``c``
    (B, H) overwritten with the final states.  Returns the (B, T, H)
    sequence in time order (zeros past each row's length)."""
    batch, timesteps = x.shape[:2]
    units = pack.recurrent_kernel.shape[0]
    # The kernel writes every step it computes: past a row's length, none.
    new = np.empty if lengths is None else np.zeros
    sequence = new((batch, timesteps, units), x.dtype)
    last = np.zeros((batch, units), x.dtype)
    _kernel.forward(x, pack.packed, h, c, last, None, sequence, reverse, *_CODES, threads(),
                    kernel_lengths(lengths))
    # fastlstm returns processing order; torch, time order.
    return sequence[:, ::-1] if reverse else sequence


# ------------------------------------------------------------------ training
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


DOUBLE_BACKWARD = (
    "fastlstm.torch: differentiating the gradient of an LSTM (double backward, e.g. a "
    "gradient penalty through it) is not supported; convert the module with "
    "module.to_torch() for that")


def _refuse_double_backward(grads: tuple[Any, ...]) -> tuple[Any, ...]:
    """Under ``create_graph=True``, gradients whose own graph would end here
    (silently treating them as constants): alias them with a node that
    raises ``DOUBLE_BACKWARD`` if anything backpropagates through it."""
    present = [g for g in grads if g is not None]
    if not torch.is_grad_enabled() or not present:
        return grads
    error = torch._C._functions.DelayedError(DOUBLE_BACKWARD.encode(), len(present))
    aliases = iter(error(*[g.detach().requires_grad_() for g in present]))
    return tuple(None if g is None else next(aliases) for g in grads)


def _record(x: Array, h0: Any, c0: Any, pack: Pack, lengths: Array | None, reverse: bool,
            workspace: training.Tape | None,
            ) -> tuple[Array, Array, Array, training.Tape]:
    """The recording forward on arrays: ``(sequence in processing order, h, c, tape)``;
    a MemoryError naming the parts when they cannot fit, before allocating."""
    batch, timesteps, features = x.shape
    units, itemsize = pack.kernel.shape[1] // 4, x.dtype.itemsize
    proj_size = 0 if pack.projection_kernel is None else pack.projection_kernel.shape[1]
    validation.within_memory(
        [("copies of x and the states", (x.size + 2 * batch * units) * itemsize),
         ("the training workspace", training.forward_bytes(
             batch, timesteps, features, units, x.dtype, workspace=workspace,
             proj_size=proj_size))],
        f"fastlstm.torch.LSTM on input of shape {x.shape}")
    sequence, _, h, c, tape = training.forward(
        x, pack.kernel, pack.recurrent_kernel, pack.bias, np.array(h0, x.dtype),
        np.array(c0, x.dtype), lengths=lengths, go_backwards=reverse, workspace=workspace,
        pack=lambda: pack.packed, num_threads=threads(),
        projection_kernel=pack.projection_kernel)
    assert sequence is not None       # return_sequence=True (for mypy)
    return sequence, h, c, tape


def _weight_grads(dkernel: Array, drecurrent_kernel: Array, dbias: Array,
                  dprojection: Array | None, dtype: Any, has_bias: bool) -> tuple[Any, ...]:
    """Keras-layout weight gradients as gradients of (weight_ih, weight_hh,
    bias_ih, bias_hh, weight_hr) in the weights' ``dtype`` (None for absent
    tensors).  The two biases get separate tensors: autograd may adopt a
    returned gradient as a parameter's .grad."""
    dbias_ih = torch.from_numpy(dbias).to(dtype) if has_bias else None
    return (torch.from_numpy(dkernel).T.to(dtype),
            torch.from_numpy(drecurrent_kernel).T.to(dtype), dbias_ih,
            None if dbias_ih is None else dbias_ih.clone(),
            None if dprojection is None else torch.from_numpy(dprojection).T.to(dtype))


def _backward(tape: training.Tape, d_sequence: Any, d_h: Any, d_c: Any, reverse: bool,
              input_gradient: bool,
              ) -> tuple[Array | None, Array, Array, Array, Array, Array, Array | None]:
    """``training.backward`` on gradients given as tensors in time order."""
    if reverse:
        d_sequence = d_sequence.flip(1)
    dtype = tape.dtype
    return training.backward(
        tape, np.array(d_sequence.detach().numpy(), dtype, order="C"), None,
        np.array(d_h.detach().numpy(), dtype), np.array(d_c.detach().numpy(), dtype),
        input_gradient=input_gradient)


# torch is not analysed (see [tool.mypy]), so its classes are Any to mypy.
class Direction(torch.autograd.Function):  # type: ignore[misc]
    """One layer in one direction, recorded: ``(x (B, T, I), h0 (B, P or H),
    c0 (B, H), weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, lengths,
    reverse, free)`` -> ``(sequence (B, T, P or H) time order, h_n, c_n)``."""

    @staticmethod
    def forward(ctx: Any, x: Any, h0: Any, c0: Any, weight_ih: Any, weight_hh: Any,
                bias_ih: Any, bias_hh: Any, weight_hr: Any, lengths: Array | None,
                reverse: bool, free: list[training.Tape]) -> tuple[Any, Any, Any]:
        pack = weights((weight_ih, weight_hh, bias_ih, bias_hh, weight_hr), x.dtype,
                       cache=False)
        try:
            workspace: training.Tape | None = free.pop()
        except IndexError:             # none spare (e.g. a second forward before backward)
            workspace = None
        sequence, h, c, tape = _record(
            np.ascontiguousarray(x.detach().numpy()), h0.detach().numpy(),
            c0.detach().numpy(), pack, kernel_lengths(lengths), reverse, workspace)
        if reverse:        # a fresh array: a flipped view of one step keeps its
            sequence = sequence[:, ::-1].copy()     # negative stride, which torch refuses
        ctx.lease, ctx.reverse = _Lease(tape, free), reverse
        ctx.weight_dtype, ctx.has_bias = weight_ih.dtype, bias_ih is not None
        return torch.from_numpy(sequence), torch.from_numpy(h), torch.from_numpy(c)

    @staticmethod
    def backward(ctx: Any, d_sequence: Any, d_h: Any, d_c: Any) -> tuple[Any, ...]:
        dx, dh0, dc0, dkernel, drecurrent_kernel, dbias, dprojection = _backward(
            ctx.lease.tape, d_sequence, d_h, d_c, ctx.reverse, ctx.needs_input_grad[0])
        grads = ((None if dx is None else torch.from_numpy(dx)),
                 torch.from_numpy(dh0), torch.from_numpy(dc0),
                 *_weight_grads(dkernel, drecurrent_kernel, dbias, dprojection,
                                ctx.weight_dtype, ctx.has_bias))
        return _refuse_double_backward(grads) + (None, None, None)


# ---------------------------------------------------------------- custom ops
@torch.library.custom_op("fastlstm::lstm_direction", mutates_args=())  # type: ignore[untyped-decorator]
def lstm_direction(x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor,
                   weight_ih: torch.Tensor, weight_hh: torch.Tensor,
                   bias_ih: torch.Tensor | None, bias_hh: torch.Tensor | None,
                   weight_hr: torch.Tensor | None, lengths: torch.Tensor | None,
                   reverse: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``torch.library`` form of one direction (see the module
    docstring): ``x`` (B, T, I) and the states in the compute dtype."""
    pack = weights((weight_ih, weight_hh, bias_ih, bias_hh, weight_hr), x.dtype)
    h, c = np.array(h0.detach().numpy()), np.array(c0.detach().numpy())
    sequence = infer(np.ascontiguousarray(x.detach().numpy()), h, c, pack, lengths, reverse)
    return (torch.from_numpy(sequence.copy() if reverse else sequence), torch.from_numpy(h),
            torch.from_numpy(c))


@lstm_direction.register_fake  # type: ignore[untyped-decorator]
def _(x: Any, h0: Any, c0: Any, weight_ih: Any, weight_hh: Any, bias_ih: Any, bias_hh: Any,
      weight_hr: Any, lengths: Any, reverse: bool) -> tuple[Any, Any, Any]:
    units = weight_hh.shape[1]      # the features of h: proj_size with weight_hr
    return (x.new_empty((x.shape[0], x.shape[1], units)), torch.empty_like(h0),
            torch.empty_like(c0))


@torch.library.custom_op("fastlstm::lstm_direction_backward",  # type: ignore[untyped-decorator]
                         mutates_args=())
def lstm_direction_backward(
        d_sequence: torch.Tensor, d_h: torch.Tensor, d_c: torch.Tensor, x: torch.Tensor,
        h0: torch.Tensor, c0: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
        bias_ih: torch.Tensor | None, bias_hh: torch.Tensor | None,
        weight_hr: torch.Tensor | None, lengths: torch.Tensor | None,
        reverse: bool) -> list[torch.Tensor]:
    """Gradients of ``lstm_direction`` with respect to ``x, h0, c0, weight_ih,
    weight_hh, bias, weight_hr`` (the bias gradient is zeros without biases,
    weight_hr's empty without it): the recording forward runs again, then
    the backward."""
    pack = weights((weight_ih, weight_hh, bias_ih, bias_hh, weight_hr), x.dtype, cache=False)
    *_, tape = _record(np.ascontiguousarray(x.detach().numpy()), h0.detach().numpy(),
                       c0.detach().numpy(), pack, kernel_lengths(lengths), reverse, None)
    dx, dh0, dc0, dkernel, drecurrent_kernel, dbias, dprojection = _backward(
        tape, d_sequence, d_h, d_c, reverse, True)
    assert dx is not None
    grads = _weight_grads(dkernel, drecurrent_kernel, dbias, dprojection, weight_ih.dtype,
                          True)
    dweight_hr = x.new_empty(0) if grads[4] is None else grads[4].contiguous()
    return [torch.from_numpy(dx), torch.from_numpy(dh0), torch.from_numpy(dc0),
            *(g.contiguous() for g in grads[:3]), dweight_hr]


@lstm_direction_backward.register_fake  # type: ignore[untyped-decorator]
def _(d_sequence: Any, d_h: Any, d_c: Any, x: Any, h0: Any, c0: Any, weight_ih: Any,
      weight_hh: Any, bias_ih: Any, bias_hh: Any, weight_hr: Any, lengths: Any,
      reverse: bool) -> list[Any]:
    return [torch.empty_like(x), torch.empty_like(h0), torch.empty_like(c0),
            torch.empty_like(weight_ih), torch.empty_like(weight_hh),
            weight_ih.new_empty(weight_ih.shape[0]),
            x.new_empty(0) if weight_hr is None else torch.empty_like(weight_hr)]


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    *tensors, reverse = inputs
    ctx.tensors, ctx.reverse = tensors, reverse


def _op_backward(ctx: Any, d_sequence: Any, d_h: Any, d_c: Any) -> tuple[Any, ...]:
    x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, lengths = ctx.tensors
    # Outputs the loss does not use may come without a gradient.
    if d_sequence is None:
        d_sequence = x.new_zeros(x.shape[0], x.shape[1], h0.shape[-1])
    d_h = torch.zeros_like(h0) if d_h is None else d_h
    d_c = torch.zeros_like(c0) if d_c is None else d_c
    dx, dh0, dc0, dweight_ih, dweight_hh, dbias, dweight_hr = lstm_direction_backward(
        d_sequence, d_h, d_c, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr,
        lengths, ctx.reverse)
    has_bias = bias_ih is not None
    return (dx, dh0, dc0, dweight_ih, dweight_hh, dbias if has_bias else None,
            dbias.clone() if has_bias else None,
            None if weight_hr is None else dweight_hr, None, None)


lstm_direction.register_autograd(_op_backward, setup_context=_setup_context)
