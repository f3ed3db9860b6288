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

    Two layouts (see ``src/_kernel.pyx`` and ``src/kernel/train.c``), both
    time-major:

    * packed (``packed`` is set): the weights packed for the inference
      tiles, which run the recurrence in both directions; the common case.
    * keras: Keras-layout buffers for the per-step BLAS code, used with
      recurrent dropout or per-gate input masks (which mask h or x per gate
      block inside a step's products).

    The backward pass writes only ``dz``, so a recorded pass can be
    backpropagated more than once (``retain_graph`` in PyTorch).  ``forward``
    also stores its inputs here (``xs``, weights, masks, ``c0``, flags).
    """

    # Set by forward: its inputs, kept for backward.
    xs: Array
    kernel: Array
    recurrent_kernel: Array
    projection_kernel: Array | None
    packed: Any
    mask: Array | None
    input_masks: Array | None
    recurrent_masks: Array | None
    c0: Array
    go_backwards: bool
    codes: tuple[int, int]
    num_threads: int

    def __init__(self, batch: int, timesteps: int, features: int, units: int,
                 dtype: DTypeLike, layout: tuple[int, ...], proj_size: int = 0) -> None:
        """``layout`` is ``(width, blocks)`` of a pack, or ``(recurrent_blocks,)``
        for the Keras layout; ``proj_size`` (packed layout only): the
        features of h of an LSTMP layer, 0 without a projection."""
        self.shape = (timesteps, batch, units)
        self.features = features
        self.layout = layout
        self.proj_size = proj_size
        self.dtype = np.dtype(dtype)
        # With a projection: m's record and dL/dh by panels (kernel/train.c).
        self.ms: Array | None = None
        self.dhs: Array | None = None
        if len(layout) == 2:
            width, blocks = layout
            padded = width * blocks
            projected = _projected_columns(proj_size, width)
            row = _row_stride(max(padded, projected), dtype)
            self.rec = np.empty((timesteps + 1, batch, 6 * padded), dtype)
            self.hs = np.empty((timesteps + 1, batch, row), dtype)
            self.dz = np.empty((blocks, timesteps * batch, 4 * width), dtype)
            self.xs = np.empty((1, timesteps, batch, _row_stride(features, dtype)), dtype)
            if proj_size:
                self.ms = np.empty((timesteps, batch, row), dtype)
                self.dhs = np.empty((projected // (4 * width), timesteps * batch,
                                     4 * width), dtype)
            # The weight gradients in packed columns, before unpacking.
            self.packed_grads = (np.empty((features, 4 * padded), dtype),
                                 np.empty((proj_size or units, 4 * padded), dtype),
                                 np.empty(4 * padded, dtype))
            self.packed_projection_grad = (np.empty((units, projected), dtype)
                                           if proj_size else None)
        else:
            recurrent_blocks, = layout
            shape = self.shape
            self.gates = np.empty((timesteps, batch, 4 * units), dtype)
            self.dz = np.empty_like(self.gates)
            self.cs = np.empty(shape, dtype)
            self.acts = np.empty(shape, dtype)
            self.hp = np.empty((recurrent_blocks,) + shape, dtype)
        # Derived from ``packed`` by backward, cached while the pack is the same.
        self._unpacking: tuple[Any, Array, Array, Array | None, Array] | None = None

    @staticmethod
    def values(batch: int, timesteps: int, features: int, units: int,
               layout: tuple[int, ...], proj_size: int = 0) -> int:
        """How many values a tape of these sizes holds (``__init__``'s buffers)."""
        if len(layout) == 2:
            width, blocks = layout
            padded = width * blocks
            projected = _projected_columns(proj_size, width)
            row = max(padded, projected) + 64
            # rec (6 per padded unit), hs, dz (4), xs; the packed weight
            # gradients; with a projection ms, dhs and its gradient.
            return ((timesteps + 1) * batch * (6 * padded + row)
                    + timesteps * batch * (4 * padded + features + 64)
                    + (features + (proj_size or units) + 1) * 4 * padded
                    + bool(proj_size) * (timesteps * batch * (row + projected)
                                         + units * projected))
        recurrent_blocks, = layout
        # gates and dz (4 units each), cs, acts and the recurrent_blocks hp.
        return timesteps * batch * units * (10 + recurrent_blocks)

    def fits(self, batch: int, timesteps: int, features: int, units: int,
             dtype: DTypeLike, layout: tuple[int, ...], proj_size: int = 0) -> bool:
        return (self.shape == (timesteps, batch, units) and self.features == features
                and self.dtype == dtype and self.layout == layout
                and self.proj_size == proj_size)

    def unpacking(self) -> tuple[Array, Array, Array | None, Array]:
        """``(kernel_t, recurrent_kernel_t, projection_t, columns)`` for the
        packed backward: the kernel and recurrent kernel transposed, in
        panels of 4W features / rows of h (``_transposed_panels``), the
        projection kernel transposed in panels of 4W units (None without
        one), and for each Keras gate column its packed column."""
        packed = self.packed
        if self._unpacking is None or self._unpacking[0] is not packed:
            units = self.shape[2]
            width = packed.width
            projection_t = None
            if packed.projection is not None:
                projection_t = _transposed_projection(packed.projection, units,
                                                      packed.proj_size)
            self._unpacking = (packed, _transposed_panels(packed.kernel),
                               _transposed_panels(packed.recurrent_kernel), projection_t,
                               _packed_columns(units, width))
        return self._unpacking[1:]


def _transposed_panels(panels: Array) -> Array:
    """A packed matrix [NB, K, 4W] (``_kernel.pack``) transposed, [4Up, K],
    and cut into panels of 4W of its K columns, zero-padded: [NQ, 4Up, 4W]."""
    blocks, rows, gates = panels.shape
    groups = -(-rows // gates)
    transposed = np.zeros((blocks * gates, groups * gates), panels.dtype)
    transposed[:, :rows] = panels.transpose(0, 2, 1).reshape(-1, rows)
    return np.ascontiguousarray(transposed.reshape(-1, groups, gates).transpose(1, 0, 2))


def _projected_columns(proj_size: int, width: int) -> int:
    """The projection panels' columns (``kernel/projection.h``): proj_size
    rounded up to 4W."""
    return -(-proj_size // (4 * width)) * 4 * width


def _transposed_projection(panels: Array, units: int, proj_size: int) -> Array:
    """Projection panels [NPB, U, 4W] (``_kernel.pack``) as the projection
    kernel transposed, [Pq, U], cut into panels of 4W units, zero-padded:
    [NQ, Pq, 4W]."""
    npb, _, gates = panels.shape
    columns = -(-units // gates) * gates
    transposed = np.zeros((npb * gates, columns), panels.dtype)
    transposed[:, :units] = panels.transpose(0, 2, 1).reshape(-1, units)
    return np.ascontiguousarray(transposed.reshape(-1, columns // gates, gates)
                                .transpose(1, 0, 2))


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
                  return_sequence: bool = True, workspace: Tape | None = None,
                  proj_size: int = 0) -> int:
    """Bytes that ``forward`` and ``dropout_masks`` allocate at most for
    these sizes, for one memory check before a call allocates anything:
    ``input_masks`` is the number of input mask blocks (0, 1 or 4),
    ``workspace`` a tape that will be reused if it fits.  Sizes the
    training kernels cannot index are a ValueError."""
    if batch * timesteps > _INT_MAX:
        raise ValueError(
            f"training supports batch * timesteps up to {_INT_MAX}, got "
            f"batch={batch}, timesteps={timesteps}")
    fused = not recurrent_masks and input_masks <= 1
    # A pack's width divides 16, so 16-unit blocks bound its padding.
    layout = (16, -(-units // 16)) if fused else (4 if recurrent_masks else 1,)
    values = (2 + return_sequence * timesteps) * batch * units        # c0, last, sequence
    if workspace is None or not (workspace.shape == (timesteps, batch, units)
                                 and workspace.features == features
                                 and workspace.proj_size == proj_size):
        values += Tape.values(batch, timesteps, features, units, layout, proj_size)
    if not fused:                       # x time-major, once per input mask
        values += max(1, input_masks) * timesteps * batch * features
    # Masks are drawn in float64, compared, scaled and cast: 4 copies at most.
    mask_values = input_masks * batch * features + 4 * recurrent_masks * batch * units
    return values * np.dtype(dtype).itemsize + mask_values * 4 * 8


def forward(x: Array, kernel: Array, recurrent_kernel: Array, bias: Array, h: Array,
            c: Array, *, mask: Array | None = None, go_backwards: bool = False,
            activation: str = "tanh", recurrent_activation: str = "sigmoid",
            input_masks: Array | None = None, recurrent_masks: Array | None = None,
            return_sequence: bool = True, workspace: Tape | None = None,
            pack: Callable[[], Any] | None = None, num_threads: int | None = None,
            projection_kernel: Array | None = None,
            ) -> tuple[Array | None, Array, Array, Array, Tape]:
    """Run one LSTM layer and record it for ``backward``.

    Allocates what ``forward_bytes`` counts: check it first (and the sizes
    it refuses), before copying the inputs.

    Parameters
    ----------
    x : (batch, timesteps, features) C-contiguous array of the weights' dtype
    kernel, recurrent_kernel, bias : Keras layout, C-contiguous, same dtype
        (``recurrent_kernel`` is (proj_size, 4 * units) with a projection)
    h, c : (batch, proj_size or units), (batch, units) arrays, overwritten
        with the final states
    mask : uint8 (batch, timesteps) or None
    input_masks : (1 or 4, batch, features) or None
        Input dropout masks (already scaled), for all gates or per gate block.
    recurrent_masks : (4, batch, units) or None
        Recurrent dropout masks per gate block.
    workspace : Tape or None
        A previous tape whose buffers may be reused.
    pack : callable or None
        Returns these weights packed by ``_kernel.pack`` for the current
        instruction set (a layer's cached pack), called only when the packed
        tiles run; None: packed here.
    num_threads : int or None
        Most threads (batch row groups); None: ``_kernel.DEFAULT_THREADS``.
    projection_kernel : (units, proj_size) array or None
        An LSTMP layer's projection (h = (o * act(c)) @ projection_kernel);
        packed runs only (no per-gate masks).

    Returns
    -------
    sequence, last, h, c, tape
        ``sequence`` (processing order) is None unless ``return_sequence``.
        ``last`` is the output the kernel carries under ``mask`` (zeros
        before the first unmasked step); without a mask it stays zero, and
        the last output is the final ``h``.
    """
    batch, timesteps = x.shape[:2]
    units = recurrent_kernel.shape[1] // 4
    proj_size = 0 if projection_kernel is None else projection_kernel.shape[1]
    outputs = proj_size or units
    dtype = kernel.dtype
    # Per-gate masks of h or x change each gate block's product: BLAS per step.
    fused = recurrent_masks is None and (input_masks is None or len(input_masks) == 1)
    if proj_size and not fused:
        raise ValueError("a projection (proj_size) runs on the packed tiles only: "
                         "no recurrent dropout or per-gate input masks")
    packed: Any = None
    if fused:
        packed = (_kernel.pack(kernel, recurrent_kernel, bias, projection_kernel)
                  if pack is None else pack())
        blocks, _, gates = packed.recurrent_kernel.shape
        layout: tuple[int, ...] = (gates // 4, blocks)
    else:
        layout = (1 if recurrent_masks is None else 4,)
    features = x.shape[2]
    tape = workspace
    if tape is None or not tape.fits(batch, timesteps, features, units, dtype, layout,
                                     proj_size):
        tape = Tape(batch, timesteps, features, units, dtype, layout, proj_size)
    # The kernel wants x time-major, once per input mask: [P, T, B, I]; the
    # packed path's rows are _row_stride long.
    x_time_major = x.transpose(1, 0, 2)
    if fused:
        xs = tape.xs
        if input_masks is None:
            xs[0, :, :, :features] = x_time_major
        else:
            np.multiply(x_time_major, input_masks[0], out=xs[0, :, :, :features])
    elif input_masks is None:
        xs = np.ascontiguousarray(x_time_major)[None]
    else:
        xs = np.multiply(x_time_major[None], input_masks[:, None, :, :], order="C")
    tape.xs, tape.kernel, tape.recurrent_kernel = xs, kernel, recurrent_kernel
    tape.packed = packed
    tape.mask, tape.input_masks, tape.recurrent_masks = mask, input_masks, recurrent_masks
    tape.c0 = c.copy()
    tape.go_backwards = bool(go_backwards)
    tape.codes = (activations.CODES[activation], activations.CODES[recurrent_activation])
    tape.num_threads = num_threads or _kernel.DEFAULT_THREADS
    tape.projection_kernel = projection_kernel
    last = np.zeros((batch, outputs), dtype)
    sequence = np.zeros((batch, timesteps, outputs), dtype) if return_sequence else None
    if batch and timesteps:
        if fused:
            _kernel.train_forward(xs[0], features, packed, h, c, last, mask, sequence,
                                  tape.rec, tape.hs, tape.ms, tape.go_backwards,
                                  *tape.codes, tape.num_threads)
        else:
            _kernel.dropout_forward(xs, kernel, recurrent_kernel, bias, h, c, last, mask,
                                    recurrent_masks, sequence, tape.gates, tape.cs,
                                    tape.acts, tape.hp, tape.go_backwards, *tape.codes,
                                    _kernel.current_isa())
    return sequence, last, h, c, tape


def backward(tape: Tape, d_sequence: Array | None = None, d_last: Array | None = None,
             d_h: Array | None = None, d_c: Array | None = None, *,
             input_gradient: bool = True,
             ) -> tuple[Array | None, Array, Array, Array, Array, Array, Array | None]:
    """Backpropagate through the pass ``tape`` recorded.

    The gradients of the outputs (each may be None) are fresh C-contiguous
    arrays of the tape's dtype: ``d_sequence`` (batch, timesteps, H) in
    processing order, ``d_last`` and ``d_h`` (batch, H), ``d_c`` (batch,
    units), where H is the proj_size of an LSTMP tape, else units; ``d_h``,
    ``d_c`` may be overwritten.  The tape is left as it was.
    ``input_gradient=False`` skips the product that forms ``dx`` (returned
    as None).

    Returns
    -------
    dx, dh0, dc0, dkernel, drecurrent_kernel, dbias, dprojection_kernel
        ``dprojection_kernel`` is None without a projection.
    """
    timesteps, batch, units = tape.shape
    outputs = tape.proj_size or units
    dtype = tape.kernel.dtype

    def zeros(n: int = outputs) -> Array:
        return np.zeros((batch, n), dtype)

    dh = zeros() if d_h is None else d_h
    dc = zeros(units) if d_c is None else d_c
    dy = zeros() if d_last is None else d_last
    dprojection = None
    # The kernel overwrites these (GEMMs with beta = 0); without steps they
    # stay zero.
    new: Callable[..., Array] = np.empty if batch and timesteps else np.zeros
    dxs = new(tape.xs.shape[:3] + (tape.features,), dtype) if input_gradient else None
    if tape.packed is not None:
        dkernel, drecurrent_kernel, dbias = tape.packed_grads
        dprojection = tape.packed_projection_grad
        if batch and timesteps:
            kernel_t, recurrent_kernel_t, projection_t, columns = tape.unpacking()
            if input_gradient:    # the kernel writes whole blocks of W features
                width = tape.dz.shape[2] // 4
                dxs = np.zeros((1, timesteps, batch, -(-tape.features // width) * width),
                               dtype)
            _kernel.train_backward(tape.xs[0], tape.features, tape.packed, kernel_t,
                                   recurrent_kernel_t, projection_t, tape.rec, tape.hs,
                                   tape.ms, tape.dz, tape.dhs, tape.mask, d_sequence, dh, dc,
                                   dy, None if dxs is None else dxs[0], dkernel,
                                   drecurrent_kernel, dprojection, dbias, tape.go_backwards,
                                   *tape.codes, tape.num_threads)
            dkernel, drecurrent_kernel = dkernel[:, columns], drecurrent_kernel[:, columns]
            dbias = dbias[columns]
            if dprojection is not None:
                dprojection = dprojection[:, :tape.proj_size].copy()
        else:
            dkernel, drecurrent_kernel = (np.zeros_like(tape.kernel),
                                          np.zeros_like(tape.recurrent_kernel))
            dbias = np.zeros(4 * units, dtype)
            if tape.projection_kernel is not None:
                dprojection = np.zeros_like(tape.projection_kernel)
    else:
        dkernel = new(tape.kernel.shape, dtype)
        drecurrent_kernel = new(tape.recurrent_kernel.shape, dtype)
        dbias = new(4 * units, dtype)
        if batch and timesteps:
            _kernel.dropout_backward(tape.xs, tape.kernel,
                                     np.ascontiguousarray(tape.recurrent_kernel.T),
                                     tape.gates, tape.dz, tape.cs, tape.acts, tape.hp,
                                     tape.c0, tape.mask, tape.recurrent_masks, d_sequence,
                                     dh, dc, dy, dxs, dkernel, drecurrent_kernel, dbias,
                                     tape.go_backwards, *tape.codes)
    # Without steps the outputs are zeros or the initial states unchanged:
    # dh0, dc0 are d_h, d_c and nothing else receives a gradient.
    if dxs is None:
        dx = None
    elif tape.input_masks is None:
        dx = np.ascontiguousarray(dxs[0, :, :, :tape.features].transpose(1, 0, 2))
    else:
        dx = np.einsum("ptbi,pbi->bti", dxs[..., :tape.features], tape.input_masks,
                       order="C")
    return dx, dh, dc, dkernel, drecurrent_kernel, dbias, dprojection


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
