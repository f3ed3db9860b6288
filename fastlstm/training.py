"""Training: the forward pass that records, backpropagation through time,
and Keras-style dropout masks, on plain arrays.

``forward`` / ``backward`` take Keras-layout weights and a ``Tape``, the
workspace in which the forward pass keeps what the backward pass needs.
``LSTM(...)(x, training=True)`` and ``LSTM.backward`` call them with the
layer's weights, workspace and dropout generator; ``fastlstm.torch``
builds its autograd function on them.

Dropout follows Keras 3's ``LSTMCell``: masks are drawn once per call (one
per sequence, shared by every step) and scaled by ``1 / (1 - rate)``.
Without recurrent dropout one input mask (batch, features) serves all four
gates; with recurrent dropout Keras switches to its per-gate implementation
and draws four input masks and four recurrent masks (batch, units), one per
gate block i, f, c, o.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from . import _kernel, activations

Array = NDArray[Any]

_INT_MAX = 2**31 - 1


def _row_stride(n: int, dtype: DTypeLike) -> int:
    """A row length >= n for buffers the weight-gradient tiles read down
    columns: rows whose byte size is a multiple of 512 would share a few
    cache sets."""
    itemsize = np.dtype(dtype).itemsize
    return n + 64 // itemsize if n * itemsize % 512 == 0 else n


class Tape:
    """Workspace of one training-mode forward pass and of its backward.

    Time-major buffers for the packed tiles (layout in
    ``src/kernel/train.c``): the record of each step, the h entering each
    step, and with dropout x times each gate's input mask and h times each
    gate's recurrent mask, which the tiles read per gate block.

    The backward pass writes only ``dz``, so a recorded pass can be
    backpropagated more than once (``retain_graph`` in PyTorch).  ``forward``
    also stores its inputs here (``xs``, weights, masks, ``c0``, flags).
    """

    # Set by forward: its inputs, kept for backward.
    kernel: Array
    recurrent_kernel: Array
    packed: Any
    mask: Array | None
    input_masks: Array | None
    recurrent_masks: Array | None
    hmask: Array | None
    c0: Array
    go_backwards: bool
    codes: tuple[int, int]
    num_threads: int

    def __init__(self, batch: int, timesteps: int, features: int, units: int,
                 dtype: DTypeLike, layout: tuple[int, int, int, bool]) -> None:
        """``layout`` is ``(width, blocks)`` of a pack, then the copies of x
        (1, or 4 with per-gate input masks) and whether h has recurrent masks."""
        self.shape = (timesteps, batch, units)
        self.features = features
        self.layout = layout
        self.dtype = np.dtype(dtype)
        width, blocks, x_gates, recurrent = layout
        padded = width * blocks
        ldh = _row_stride(padded, dtype)
        self.rec = np.empty((timesteps + 1, batch, 6 * padded), dtype)
        self.hs = np.empty((timesteps + 1, batch, ldh), dtype)
        self.hm = np.empty((4, timesteps + 1, batch, ldh), dtype) if recurrent else None
        self.dz = np.empty((blocks, timesteps * batch, 4 * width), dtype)
        self.xs = np.empty((x_gates, timesteps, batch, _row_stride(features, dtype)), dtype)
        # The weight gradients in packed columns, before unpacking.
        self.packed_grads = (np.empty((features, 4 * padded), dtype),
                             np.empty((units, 4 * padded), dtype),
                             np.empty(4 * padded, dtype))
        # Derived from ``packed`` by backward, cached while the pack is the same.
        self._unpacking: tuple[Any, Array, Array, Array] | None = None

    @staticmethod
    def values(batch: int, timesteps: int, features: int, units: int,
               layout: tuple[int, int, int, bool]) -> int:
        """How many values a tape of these sizes holds (``__init__``'s buffers)."""
        width, blocks, x_gates, recurrent = layout
        padded = width * blocks
        # rec (6 per padded unit), hs and hm (padded + 64 each), dz (4), xs;
        # the packed weight gradients.
        return ((timesteps + 1) * batch * (6 * padded + (1 + 4 * recurrent) * (padded + 64))
                + timesteps * batch * (4 * padded + x_gates * (features + 64))
                + (features + units + 1) * 4 * padded)

    def fits(self, batch: int, timesteps: int, features: int, units: int,
             dtype: DTypeLike, layout: tuple[int, ...]) -> bool:
        return (self.shape == (timesteps, batch, units) and self.features == features
                and self.dtype == dtype and self.layout == layout)

    def unpacking(self) -> tuple[Array, Array, Array]:
        """``(kernel_t, recurrent_kernel_t, columns)`` for the packed
        backward: the kernel and recurrent kernel transposed, in panels of 4W
        features / units (``_transposed_panels``), and for each Keras gate
        column its packed column."""
        packed = self.packed
        if self._unpacking is None or self._unpacking[0] is not packed:
            _, units, gates = packed.recurrent_kernel.shape
            self._unpacking = (packed, _transposed_panels(packed.kernel),
                               _transposed_panels(packed.recurrent_kernel),
                               _packed_columns(units, gates // 4))
        return self._unpacking[1:]


def _transposed_panels(panels: Array) -> Array:
    """A packed matrix [NB, K, 4W] (``_kernel.pack``) transposed, [4Up, K],
    and cut into panels of 4W of its K columns, zero-padded: [NQ, 4Up, 4W]."""
    blocks, rows, gates = panels.shape
    groups = -(-rows // gates)
    transposed = np.zeros((blocks * gates, groups * gates), panels.dtype)
    transposed[:, :rows] = panels.transpose(0, 2, 1).reshape(-1, rows)
    return np.ascontiguousarray(transposed.reshape(-1, groups, gates).transpose(1, 0, 2))


@functools.lru_cache(maxsize=64)
def _packed_columns(units: int, width: int) -> Array:
    """The packed column (``_kernel.pack``'s layout) of each Keras gate column."""
    unit = np.arange(units)
    columns = np.concatenate([(unit // width) * 4 * width + g * width + unit % width
                              for g in range(4)])
    columns.flags.writeable = False
    return columns


def forward_bytes(batch: int, timesteps: int, features: int, units: int, dtype: DTypeLike,
                  *, input_masks: int = 0, recurrent_masks: bool = False,
                  return_sequence: bool = True, workspace: Tape | None = None) -> int:
    """Bytes that ``forward`` and ``dropout_masks`` allocate at most for
    these sizes, for one memory check before a call allocates anything:
    ``input_masks`` is the number of input mask blocks (0, 1 or 4),
    ``workspace`` a tape that will be reused if it fits.  Sizes the
    training kernels cannot index are a ValueError."""
    if batch * timesteps > _INT_MAX:
        raise ValueError(
            f"training supports batch * timesteps up to {_INT_MAX}, got "
            f"batch={batch}, timesteps={timesteps}")
    # A pack's width divides 16, so 16-unit blocks bound its padding.
    blocks = -(-units // 16)
    layout = (16, blocks, 4 if input_masks == 4 else 1, recurrent_masks)
    values = (2 + return_sequence * timesteps) * batch * units        # c0, last, sequence
    if workspace is None or not (workspace.shape == (timesteps, batch, units)
                                 and workspace.features == features):
        values += Tape.values(batch, timesteps, features, units, layout)
    # The recurrent masks padded for the kernel.
    values += 4 * recurrent_masks * batch * 16 * blocks
    # Masks are drawn in float64, compared, scaled and cast: 4 copies at most.
    mask_values = input_masks * batch * features + 4 * recurrent_masks * batch * units
    return values * np.dtype(dtype).itemsize + mask_values * 4 * 8


def forward(x: Array, kernel: Array, recurrent_kernel: Array, bias: Array, h: Array,
            c: Array, *, mask: Array | None = None, go_backwards: bool = False,
            activation: str = "tanh", recurrent_activation: str = "sigmoid",
            input_masks: Array | None = None, recurrent_masks: Array | None = None,
            return_sequence: bool = True, workspace: Tape | None = None,
            pack: Callable[[], Any] | None = None, num_threads: int | None = None,
            ) -> tuple[Array | None, Array, Array, Array, Tape]:
    """Run one LSTM layer and record it for ``backward``.

    Allocates what ``forward_bytes`` counts: check it first (and the sizes
    it refuses), before copying the inputs.

    Parameters
    ----------
    x : (batch, timesteps, features) C-contiguous array of the weights' dtype
    kernel, recurrent_kernel, bias : Keras layout, C-contiguous, same dtype
    h, c : (batch, units) arrays, overwritten with the final states
    mask : uint8 (batch, timesteps) or None
    input_masks : (1 or 4, batch, features) or None
        Input dropout masks (already scaled), for all gates or per gate block.
    recurrent_masks : (4, batch, units) or None
        Recurrent dropout masks per gate block.
    workspace : Tape or None
        A previous tape whose buffers may be reused.
    pack : callable or None
        Returns these weights packed by ``_kernel.pack`` for the current
        instruction set (a layer's cached pack); None: packed here.
    num_threads : int or None
        Most threads (batch row groups); None: ``_kernel.DEFAULT_THREADS``.

    Returns
    -------
    sequence, last, h, c, tape
        ``sequence`` (processing order) is None unless ``return_sequence``.
        ``last`` is the output the kernel carries under ``mask`` (zeros
        before the first unmasked step); without a mask it stays zero, and
        the last output is the final ``h``.
    """
    batch, timesteps, features = x.shape
    units = recurrent_kernel.shape[0]
    dtype = kernel.dtype
    packed = _kernel.pack(kernel, recurrent_kernel, bias) if pack is None else pack()
    blocks, _, gates = packed.recurrent_kernel.shape
    width = gates // 4
    # Per-gate masks: each gate block reads its own masked copy of x or h.
    x_gates = 1 if input_masks is None else len(input_masks)
    layout = (width, blocks, x_gates, recurrent_masks is not None)
    tape = workspace
    if tape is None or not tape.fits(batch, timesteps, features, units, dtype, layout):
        tape = Tape(batch, timesteps, features, units, dtype, layout)
    # x time-major, once per input mask: [P, T, B, I] in rows _row_stride long.
    x_time_major = x.transpose(1, 0, 2)
    if input_masks is None:
        tape.xs[0, :, :, :features] = x_time_major
    else:
        np.multiply(x_time_major[None], input_masks[:, None], out=tape.xs[..., :features])
    tape.hmask = None
    if recurrent_masks is not None:
        tape.hmask = np.zeros((4, batch, width * blocks), dtype)
        tape.hmask[..., :units] = recurrent_masks
    tape.kernel, tape.recurrent_kernel = kernel, recurrent_kernel
    tape.packed = packed
    tape.mask, tape.input_masks, tape.recurrent_masks = mask, input_masks, recurrent_masks
    tape.c0 = c.copy()
    tape.go_backwards = bool(go_backwards)
    tape.codes = (activations.CODES[activation], activations.CODES[recurrent_activation])
    tape.num_threads = num_threads or _kernel.DEFAULT_THREADS
    last = np.zeros((batch, units), dtype)
    sequence = np.zeros((batch, timesteps, units), dtype) if return_sequence else None
    if batch and timesteps:
        _kernel.train_forward(tape.xs, features, packed, h, c, last, mask, tape.hmask,
                              sequence, tape.rec, tape.hs, tape.hm, tape.go_backwards,
                              *tape.codes, tape.num_threads)
    return sequence, last, h, c, tape


def backward(tape: Tape, d_sequence: Array | None = None, d_last: Array | None = None,
             d_h: Array | None = None, d_c: Array | None = None, *,
             input_gradient: bool = True,
             ) -> tuple[Array | None, Array, Array, Array, Array, Array]:
    """Backpropagate through the pass ``tape`` recorded.

    The gradients of the outputs (each may be None) are fresh C-contiguous
    arrays of the tape's dtype: ``d_sequence`` (batch, timesteps, units) in
    processing order, the others (batch, units); ``d_h``, ``d_c`` may be
    overwritten.  The tape is left as it was.  ``input_gradient=False``
    skips the product that forms ``dx`` (returned as None).

    Returns
    -------
    dx, dh0, dc0, dkernel, drecurrent_kernel, dbias
    """
    timesteps, batch, units = tape.shape
    dtype = tape.kernel.dtype
    features = tape.features

    def zeros() -> Array:
        return np.zeros((batch, units), dtype)

    dh = zeros() if d_h is None else d_h
    dc = zeros() if d_c is None else d_c
    dy = zeros() if d_last is None else d_last
    # The kernel writes dx in whole blocks of W features.
    width = tape.dz.shape[2] // 4
    padded_features = -(-features // width) * width
    dxs = np.zeros((timesteps, batch, padded_features), dtype) if input_gradient else None
    if batch and timesteps:
        dkernel, drecurrent_kernel, dbias = tape.packed_grads
        kernel_t, recurrent_kernel_t, columns = tape.unpacking()
        xmask = None
        if len(tape.xs) == 4:   # dx is the sum of each gate's part times its mask
            xmask = np.zeros((4, batch, padded_features), dtype)
            xmask[..., :features] = tape.input_masks
        _kernel.train_backward(tape.xs, features, xmask, tape.packed, kernel_t,
                               recurrent_kernel_t, tape.rec, tape.hs, tape.hmask, tape.hm,
                               tape.dz, tape.mask, d_sequence, dh, dc, dy, dxs, dkernel,
                               drecurrent_kernel, dbias, tape.go_backwards, *tape.codes,
                               tape.num_threads)
        dkernel, drecurrent_kernel = dkernel[:, columns], drecurrent_kernel[:, columns]
        dbias = dbias[columns]
    else:
        # Without steps the outputs are zeros or the initial states unchanged:
        # dh0, dc0 are d_h, d_c and nothing else receives a gradient.
        dkernel, drecurrent_kernel = (np.zeros_like(tape.kernel),
                                      np.zeros_like(tape.recurrent_kernel))
        dbias = np.zeros(4 * units, dtype)
    dx = None
    if dxs is not None:
        dx = np.ascontiguousarray(dxs[:, :, :features].transpose(1, 0, 2))
        if tape.input_masks is not None and len(tape.input_masks) == 1:
            dx *= tape.input_masks[0][:, None, :]
    return dx, dh, dc, dkernel, drecurrent_kernel, dbias


def dropout_masks(rng: np.random.Generator, rate: float, recurrent_rate: float,
                  batch: int, features: int, units: int, dtype: DTypeLike,
                  ) -> tuple[Array | None, Array | None]:
    """Draw one call's ``(input_masks, recurrent_masks)`` as Keras 3 does:
    (1 or 4, batch, features) and (4, batch, units), None for a zero rate."""
    blocks = 4 if recurrent_rate else 1

    def draw(rate: float, width: int) -> Array:
        keep = rng.random((blocks, batch, width)) >= rate
        return (keep / (1 - rate)).astype(dtype)

    input_masks = draw(rate, features) if rate else None
    recurrent_masks = draw(recurrent_rate, units) if recurrent_rate else None
    return input_masks, recurrent_masks
