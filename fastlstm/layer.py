"""``fastlstm.LSTM``: Keras 3's LSTM layer on a compiled CPU kernel."""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import (
    _kernel,
    activations,
    initializers,
    keras_io,
    quantization,
    serialization,
    torch_io,
    training,
    validation,
)
from ._typing import Array, Output, Shape
from .initializers import Initializer
from .quantization import Int8Weights


class _Weights:
    """One version of a layer's weights: read-only arrays, the bias the
    kernel adds (zeros without use_bias) and their pack for the kernel,
    made on first use.  ``set_weights`` replaces the whole object, so a
    call that took it computes with one version throughout.

    An int8 layer's version also holds its int8 weights (``int8``); its
    float arrays are their dequantised values.  An LSTMP layer's (``projected``)
    lists its projection kernel last."""

    __slots__ = ("arrays", "kernel", "recurrent_kernel", "bias", "projection_kernel",
                 "packed_cache", "int8", "packed_int8_cache")

    def __init__(self, arrays: list[Array], units: int,
                 int8: Int8Weights | None = None, projected: bool = False) -> None:
        for array in arrays:
            array.flags.writeable = False
        self.arrays = arrays                              # as get_weights() lists them
        self.kernel, self.recurrent_kernel = arrays[0], arrays[1]
        self.projection_kernel = arrays[-1] if projected else None
        self.bias = (arrays[2] if len(arrays) - projected > 2
                     else np.zeros(4 * units, arrays[0].dtype))
        self.packed_cache: _kernel.Packed | None = None
        self.int8 = int8
        self.packed_int8_cache: _kernel.PackedInt8 | None = None

    @classmethod
    def quantized(cls, int8: Int8Weights, units: int, use_bias: bool,
                  ) -> _Weights:
        """The version that computes with ``int8``."""
        arrays = int8.dequantized()
        return cls(arrays if use_bias else arrays[:2], units, int8)

    def packed_int8(self) -> _kernel.PackedInt8:
        """The int8 weights in the layout of the current instruction set's int8 kernel."""
        assert self.int8 is not None
        packed = self.packed_int8_cache
        if packed is None or packed.selected != _kernel.current_isa():
            packed = self.packed_int8_cache = quantization.pack(self.int8)
        return packed

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled without the packs, which the next call makes again (an
        # int8 version keeps its int8 weights).
        return _Weights, (self.arrays, self.kernel.shape[1] // 4, self.int8,
                          self.projection_kernel is not None)

    def packed(self) -> _kernel.Packed:
        """These weights in the kernel's layout for the current instruction set."""
        packed = self.packed_cache
        if packed is None or packed.selected != _kernel.current_isa():
            packed = self.packed_cache = _kernel.pack(self.kernel, self.recurrent_kernel,
                                                      self.bias, self.projection_kernel)
        return packed


class LSTM:
    """Long Short-Term Memory layer with the semantics of ``keras.layers.LSTM``.

    Parameters
    ----------
    units : int
        Dimensionality of the output space (and of the states h and c).
    activation : str, default "tanh"
        Applied to the candidate cell value and to the cell state; any
        elementwise activation Keras 3 names, with Keras's defaults: "tanh",
        "sigmoid", "hard_sigmoid", "relu", "linear" (or None), "elu", "selu",
        "gelu" (the erf form), "silu" ("swish"), "softplus", "softsign",
        "exponential", "relu6", "leaky_relu" (slope 0.2), "hard_silu"
        ("hard_swish"), "mish".
    recurrent_activation : str, default "sigmoid"
        Applied to the input, forget and output gates (same choices).
    use_bias : bool, default True
    kernel_initializer, recurrent_initializer, bias_initializer : str or callable
        "glorot_uniform", "orthogonal", "zeros", "ones", or ``f(shape, dtype)``.
    unit_forget_bias : bool, default True
        Put ones in the forget-gate block of the initial bias.
    return_sequences : bool, default False
        Return the output of every step, shape (batch, timesteps, units).
    return_state : bool, default False
        Also return the final states: ``[output, h, c]``.
    go_backwards : bool, default False
        Process the sequence in reverse; the returned sequence is in
        processing order (reversed), as in Keras.
    stateful : bool, default False
        Carry the final states of a call into the next call (for one fixed
        batch size); see ``states`` and ``reset_state``.  An explicit
        ``initial_state`` overrides the stored states.
    dropout, recurrent_dropout : float in [0, 1), default 0
        Fraction of the inputs / of the recurrent state h dropped in
        training calls (Keras 3's masks: one per sequence, see
        ``fastlstm.training``).
    seed : int or None
        Seed of the weight initializers and of the dropout masks.
    dtype : "float32" or "float64"
    num_threads : int or None, default None
        Most threads the kernel uses.  None: the CPUs this process may run
        on, capped by ``OMP_NUM_THREADS`` when that is set.  Results are
        bitwise identical for any number of threads.
    proj_size : int or None, default None
        An LSTM with projections (LSTMP), as ``torch.nn.LSTM(proj_size=...)``:
        ``h = (o * act(c)) @ projection_kernel`` has ``proj_size`` features
        (0 < proj_size < units; None or 0: no projection), the outputs and h
        have proj_size features, c keeps ``units``, and the recurrent kernel
        multiplies the projected h.  Keras has no such layer: these layers
        cannot be exported to Keras.  Not combined with recurrent_dropout.

    Weights are ``kernel (input_dim, 4*units)``, ``recurrent_kernel
    (units, 4*units)`` and ``bias (4*units,)``, gate blocks in Keras's order
    i, f, c, o; with ``proj_size``, ``recurrent_kernel`` is (proj_size,
    4*units) and ``get_weights()`` lists ``projection_kernel (units,
    proj_size)`` last (torch's ``weight_hr_l0.T``).  The layer builds itself
    on its first call.

    Examples
    --------
    >>> import numpy as np, fastlstm
    >>> x = np.random.default_rng(0).random((100, 4, 10), dtype=np.float32)
    >>> layer = fastlstm.LSTM(16, return_state=True)
    >>> output, state_h, state_c = layer(x)
    >>> output.shape, state_c.shape, layer.count_params()
    ((100, 16), (100, 16), 1728)
    """

    def __init__(self, units: int, activation: str | None = "tanh",
                 recurrent_activation: str | None = "sigmoid", use_bias: bool = True,
                 kernel_initializer: Initializer = "glorot_uniform",
                 recurrent_initializer: Initializer = "orthogonal",
                 bias_initializer: Initializer = "zeros", unit_forget_bias: bool = True,
                 return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, stateful: bool = False, seed: int | None = None,
                 dtype: DTypeLike = "float32", dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, num_threads: int | None = None,
                 proj_size: int | None = None) -> None:
        # 4 * units columns fit a 32-bit int (validation._INT_MAX says why).
        self.units = validation.positive_int(units, "units", limit=(2**31 - 1) // 4)
        self.proj_size = validation.proj_size(proj_size, self.units)
        self.activation = activations.canonical(activation, "activation")
        self.recurrent_activation = activations.canonical(
            recurrent_activation, "recurrent_activation")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.check(kernel_initializer, "kernel_initializer")
        self.recurrent_initializer = initializers.check(
            recurrent_initializer, "recurrent_initializer")
        self.bias_initializer = initializers.check(bias_initializer, "bias_initializer")
        self.unit_forget_bias = bool(unit_forget_bias)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self._states: tuple[Array, Array] | None = None   # kept between calls when stateful
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed
        self.dtype = validation.layer_dtype(dtype)
        self.dropout = validation.dropout_rate(dropout, "dropout")
        self.recurrent_dropout = validation.dropout_rate(recurrent_dropout, "recurrent_dropout")
        if self.proj_size and self.recurrent_dropout:
            raise ValueError(f"recurrent_dropout is not supported with proj_size "
                             f"(got proj_size={self.proj_size}, recurrent_dropout="
                             f"{self.recurrent_dropout}); torch.nn.LSTM has neither")
        self.num_threads = validation.num_threads(num_threads)
        self.input_dim: int | None = None
        self._weights: _Weights | None = None   # None until set, or drawn on first use
        self._lock = threading.Lock()            # orders drawing and setting the weights
        self._training = threading.Lock()        # held by a training call and by backward
        self.grads: list[Array] | None = None             # filled by backward()
        self._tape: training.Tape | None = None           # workspace of the last training call
        self._dropout_rng: np.random.Generator | None = None   # drawn from seed on first dropout

    # ------------------------------------------------------------------ build
    @property
    def built(self) -> bool:
        return self.input_dim is not None

    def build(self, input_shape: int | Sequence[int | None]) -> None:
        """Build the layer for ``input_shape``: an int (the feature size) or a
        shape whose last entry is the feature size.  The weights are drawn
        from the initializers when first needed, so a layer whose weights
        are set or loaded next never draws them."""
        if isinstance(input_shape, (tuple, list)):
            if not input_shape:
                raise ValueError("input_shape must not be empty")
            input_dim = input_shape[-1]
        else:
            input_dim = input_shape
        input_dim = validation.positive_int(input_dim, "input_dim (last entry of input_shape)")
        with self._lock:
            self.input_dim = input_dim
            self._weights = None

    def _draw(self, input_dim: int) -> list[Array]:
        """New weights from the initializers, reproducible from ``seed``."""
        units, dtype = self.units, self.dtype
        # The initializers draw in float64 before casting.
        validation.affordable((input_dim + units + 1) * 4 * units, 8,
                              f"the weights of LSTM(units={units}) for input_dim={input_dim}")
        rng = np.random.default_rng(self.seed)
        kernel = initializers.initialize(
            self.kernel_initializer, (input_dim, 4 * units), dtype, rng)
        recurrent_kernel = initializers.initialize(
            self.recurrent_initializer, (self.proj_size or units, 4 * units), dtype, rng)
        weights = [kernel, recurrent_kernel]
        if self.use_bias:
            if self.unit_forget_bias:
                bias = np.concatenate([
                    initializers.initialize(self.bias_initializer, (units,), dtype, rng),
                    np.ones(units, dtype),
                    initializers.initialize(self.bias_initializer, (2 * units,), dtype, rng),
                ])
            else:
                bias = initializers.initialize(self.bias_initializer, (4 * units,), dtype, rng)
            weights.append(bias)
        if self.proj_size:      # drawn last: the other weights are as without it
            weights.append(initializers.initialize(
                self.kernel_initializer, (units, self.proj_size), dtype, rng))
        return weights

    def _weight_shapes(self, input_dim: int) -> list[tuple[int, ...]]:
        """The shapes ``get_weights()`` has for ``input_dim`` features."""
        shapes: list[tuple[int, ...]] = [(input_dim, 4 * self.units),
                                         (self.proj_size or self.units, 4 * self.units)]
        if self.use_bias:
            shapes.append((4 * self.units,))
        if self.proj_size:
            shapes.append((self.units, self.proj_size))
        return shapes

    @property
    def _outputs(self) -> int:
        """Features of the outputs and of h: proj_size, or units without one."""
        return self.proj_size or self.units

    def _require_built(self, what: str) -> _Weights:
        """The current weights (drawn now if the layer was built without
        them), or a ValueError naming ``what`` needed them."""
        weights = self._weights
        if weights is not None:
            return weights
        with self._lock:        # one draw, which set_weights cannot overtake
            if self._weights is None:
                if self.input_dim is None:
                    raise self._unbuilt(what)
                try:
                    self._weights = _Weights(self._draw(self.input_dim), self.units,
                                             projected=bool(self.proj_size))
                except (MemoryError, ValueError, TypeError):
                    # Weights that cannot be drawn: unbuilt.  (An interrupt
                    # leaves the layer built, to draw on its next call.)
                    self.input_dim = None
                    raise
            return self._weights

    @staticmethod
    def _unbuilt(what: str) -> ValueError:
        return ValueError(f"{what}: the layer has no weights yet; call it on an input or "
                          f"call build(input_dim) first")

    @property
    def _packed(self) -> _kernel.Packed | None:
        """The kernel's layout of the weights, once a call has made it."""
        return None if self._weights is None else self._weights.packed_cache

    # ---------------------------------------------------------------- weights
    @property
    def kernel(self) -> Array:
        return self._require_built("kernel").kernel

    @property
    def recurrent_kernel(self) -> Array:
        return self._require_built("recurrent_kernel").recurrent_kernel

    @property
    def bias(self) -> Array | None:
        weights = self._require_built("bias")
        return weights.bias if self.use_bias else None

    @property
    def projection_kernel(self) -> Array | None:
        """(units, proj_size): h = (o * act(c)) @ projection_kernel; None
        without proj_size."""
        return self._require_built("projection_kernel").projection_kernel

    def get_weights(self) -> list[Array]:
        """``[kernel, recurrent_kernel, bias]`` (no bias when use_bias=False),
        then ``projection_kernel`` with proj_size; copies."""
        return [w.copy() for w in self._require_built("get_weights").arrays]

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Set the weights from a list shaped like ``get_weights()``.

        An unbuilt layer builds itself from the kernel's shape."""
        input_dim = self.input_dim
        if input_dim is None:
            first = weights[0] if isinstance(weights, (list, tuple)) and weights else None
            shape = () if first is None else np.shape(first)
            if len(shape) != 2 or shape[1] != 4 * self.units or shape[0] == 0:
                raise ValueError(
                    f"weights[0] must have shape (input_dim, {4 * self.units}), got {shape}")
            input_dim = shape[0]
        arrays = validation.weights(weights, self._weight_shapes(input_dim), self.dtype)
        # Calls from now on use the new version; calls already running keep theirs.
        with self._lock:
            self.input_dim = input_dim
            if self.quantization == "int8":     # an int8 layer quantizes what it is given
                self._set_int8(quantization.quantize_weights(
                    arrays[0], arrays[1], arrays[2] if self.use_bias else None))
                return
            self._weights = _Weights(arrays, self.units, projected=bool(self.proj_size))

    def count_params(self) -> int:
        input_dim = self.input_dim
        if input_dim is None:
            raise self._unbuilt("count_params")
        return sum(int(np.prod(shape)) for shape in self._weight_shapes(input_dim))

    # ------------------------------------------------------------------ int8
    @property
    def quantization(self) -> str | None:
        """"int8" for a layer made by ``fastlstm.quantize_dynamic``, else None."""
        return None if self.int8_weights is None else "int8"

    @property
    def int8_weights(self) -> Int8Weights | None:
        """The int8 weights and their scales (``fastlstm.Int8Weights``),
        or None for a float layer."""
        return None if self._weights is None else self._weights.int8

    def _set_int8(self, weights: Int8Weights) -> None:
        """Compute with ``weights`` (a float32 layer's, of its shapes); the
        float weights become their dequantised values."""
        self._weights = _Weights.quantized(weights, self.units, self.use_bias)

    # ------------------------------------------------------------------- call
    def __call__(self, x: ArrayLike, mask: ArrayLike | None = None,
                 initial_state: Sequence[ArrayLike] | None = None,
                 lengths: ArrayLike | None = None, training: bool = False) -> Output:
        """Run the layer on ``x`` (batch, timesteps, features).

        Parameters
        ----------
        x : array_like
            Inputs; bool, integer and float values are cast to the layer's dtype.
        mask : array_like of bool, shape (batch, timesteps), optional
            False marks a step to skip: h and c are carried over and the
            output repeats the previous step's output (zeros before the
            first unmasked step).
        initial_state : [h, c], each (batch, units), optional
            (h: (batch, proj_size) with a projection).
            Overrides the stored states of a stateful layer.
        lengths : array_like of int, shape (batch,), optional
            Shortcut for a right-padded mask: row b has ``lengths[b]`` valid
            steps (like PyTorch's ``pack_padded_sequence``).  Outputs are
            those of the mask; at inference the padded steps are not
            computed at all (the kernel runs step t on the rows that have
            it), so a batch of mixed lengths costs its valid steps.
        training : bool, default False
            Record the pass for ``backward`` and apply dropout.

        Returns
        -------
        The last output (batch, units), or the sequence (batch, timesteps,
        units) with ``return_sequences``; with ``return_state`` a list
        ``[output, h, c]``.  With ``proj_size`` the outputs and h have
        proj_size features (c keeps units).
        """
        array = validation.input_array(x, None)
        if self.input_dim is None:
            with self._lock:      # racing first calls build once
                if self.input_dim is None:
                    self.input_dim = array.shape[2]
        weights = self._require_built("__call__")   # one version for the whole call
        # Checked against the weights this call uses (another thread may have
        # built the layer for other inputs).
        array = validation.input_array(array, weights.kernel.shape[0])
        if not training:
            return self._call(weights, array, mask, initial_state, lengths, training)
        with self._training_call():
            return self._call(weights, array, mask, initial_state, lengths, training)

    @contextlib.contextmanager
    def _training_call(self) -> Iterator[None]:
        """Hold the layer's recorded pass for one training call or backward."""
        if not self._training.acquire(blocking=False):
            raise RuntimeError(
                "LSTM: another thread is in a training call (training=True or backward) "
                "on this layer; training calls on one layer must not run concurrently, "
                "since the layer keeps one recorded pass for backward (use a layer per "
                "thread; inference calls may run concurrently)")
        try:
            yield
        finally:
            self._training.release()

    def _call(self, weights: _Weights, array: Array, mask: ArrayLike | None,
              initial_state: Sequence[ArrayLike] | None, lengths: ArrayLike | None,
              training: bool) -> Output:
        batch, timesteps, _ = array.shape
        self._check_memory(array, training, mask is not None or lengths is not None)
        # Inference on float weights computes no padded step given lengths.
        row_lengths = None
        if lengths is not None and mask is None and not training and weights.int8 is None \
                and batch > 0:
            row_lengths = validation.sequence_lengths(lengths, batch, timesteps)
        else:
            masks = validation.mask_or_lengths(mask, lengths, batch, timesteps)
        h, c = self._start_states(initial_state, batch)
        if training and weights.int8 is not None:
            raise ValueError("an int8 layer (made by quantize_dynamic) runs inference only; "
                             "got training=True")
        if row_lengths is not None:
            sequence, last = self._infer_lengths(weights, array, row_lengths, h, c)
            return self._finish(sequence, last, h, c)
        x = np.ascontiguousarray(array, dtype=self.dtype)
        if training:
            sequence, last = self._record(weights, x, masks, h, c)
        else:
            sequence, last = self._infer(weights, x, masks, h, c)
        # The kernels carry the last output under a mask (zeros before the
        # first unmasked step); without one it is the final h.
        if masks is None and timesteps > 0:
            last[...] = h
        return self._finish(sequence, last, h, c)

    def _check_memory(self, x: Array, recording: bool, masked: bool) -> None:
        """One check, before anything is allocated, that everything a call
        on ``x`` allocates fits in memory."""
        batch, timesteps, features = x.shape
        units, itemsize = self.units, self.dtype.itemsize
        copy = not (x.flags.c_contiguous and x.dtype == self.dtype)
        parts = [(f"a C-contiguous {self.dtype.name} copy of x", copy * x.size * itemsize),
                 ("the mask", 2 * batch * timesteps * masked),
                 ("the states", 5 * batch * units * itemsize)]
        if recording:
            input_masks = (4 if self.recurrent_dropout else 1) if self.dropout else 0
            parts.append(("the training workspace", training.forward_bytes(
                batch, timesteps, features, units, self.dtype, input_masks=input_masks,
                recurrent_masks=bool(self.recurrent_dropout),
                return_sequence=self.return_sequences, workspace=self._tape,
                proj_size=self.proj_size)))
        else:
            sequence = batch * timesteps * self._outputs * self.return_sequences
            # The kernel's workspace: bounded projection chunks, per-row
            # states (with a projection also m, its rows padded to 4W).
            states = (6 * batch * (units + 64) if self.proj_size
                      else 4 * batch * (units + 16))
            parts += [("the output sequence", sequence * itemsize),
                      ("rows sorted by length (lengths): x and the sequence",
                       masked * (x.size + sequence) * itemsize),
                      ("the kernel workspace", 2**20 + states * itemsize)]
        validation.within_memory(parts, f"LSTM(units={units}) on x of shape {x.shape}")

    def _infer(self, weights: _Weights, x: Array, mask: Array | None, h: Array, c: Array,
               ) -> tuple[Array | None, Array]:
        """The inference pass: ``(sequence or None, last)``; h and c become the final states."""
        batch, timesteps = x.shape[:2]
        last = np.zeros((batch, self._outputs), self.dtype)
        sequence = None
        if self.return_sequences:
            sequence = np.empty((batch, timesteps, self._outputs), self.dtype)
        codes = (activations.CODES[self.activation],
                 activations.CODES[self.recurrent_activation])
        threads = self.num_threads or _kernel.DEFAULT_THREADS
        if weights.int8 is not None and quantization.prefers_int8(self.input_dim, self.units):
            _kernel.forward_int8(x, weights.packed_int8(), h, c, last, mask, sequence,
                                 self.go_backwards, *codes, threads)
        else:       # float layers, and int8 layers where int8 cannot be faster
            _kernel.forward(x, weights.packed(), h, c, last, mask, sequence,
                            self.go_backwards, *codes, threads)
        return sequence, last

    def _infer_lengths(self, weights: _Weights, array: Array, lengths: Array, h: Array,
                       c: Array) -> tuple[Array | None, Array]:
        """``_infer`` with ``lengths`` (batch,) intp: the kernel runs step t
        on the rows that have it (rows sorted longest first, then put back),
        computing no padded step; the outputs at padded steps are then
        those of a right-padded mask, as Keras gives them: the last output
        repeated (zeros before a row's first step)."""
        batch, timesteps = array.shape[:2]
        order = np.argsort(-lengths, kind="stable")
        in_order = bool(np.all(order == np.arange(batch)))
        rows = slice(None) if in_order else order
        x = np.ascontiguousarray(array[rows], dtype=self.dtype)
        sorted_lengths = np.ascontiguousarray(lengths[rows])
        h_sorted, c_sorted = np.ascontiguousarray(h[rows]), np.ascontiguousarray(c[rows])
        sequence = None
        if self.return_sequences:
            sequence = np.empty((batch, timesteps, self._outputs), self.dtype)
        _kernel.forward(x, weights.packed(), h_sorted, c_sorted,
                        np.zeros((batch, self._outputs), self.dtype), None, sequence,
                        self.go_backwards, activations.CODES[self.activation],
                        activations.CODES[self.recurrent_activation],
                        self.num_threads or _kernel.DEFAULT_THREADS, sorted_lengths)
        h[rows], c[rows] = h_sorted, c_sorted
        last = np.where((lengths > 0)[:, None], h, 0).astype(self.dtype, copy=False)
        if sequence is None:
            return None, last
        # Padded steps in processing order: after a row's steps (forward),
        # before them (backwards, whose outputs there stay zero).
        step = np.arange(timesteps)
        if self.go_backwards:
            row, k = np.nonzero(step >= (timesteps - sorted_lengths)[:, None])
            padded = np.ones((batch, timesteps), bool)
            padded[row, k] = False
            sequence[padded] = 0
        else:
            row, k = np.nonzero(step >= sorted_lengths[:, None])
            ended = sorted_lengths[row] > 0
            sequence[row[~ended], k[~ended]] = 0
            sequence[row[ended], k[ended]] = sequence[row[ended], sorted_lengths[row[ended]] - 1]
        if in_order:
            return sequence, last
        unsorted = np.empty_like(sequence)
        unsorted[order] = sequence
        return unsorted, last

    def _record(self, weights: _Weights, x: Array, mask: Array | None, h: Array, c: Array,
                ) -> tuple[Array | None, Array]:
        """The training pass: as ``_infer``, with this call's dropout, and
        recorded in the layer's workspace for ``backward``."""
        input_masks = recurrent_masks = None
        if self.dropout or self.recurrent_dropout:
            if self._dropout_rng is None:
                self._dropout_rng = np.random.default_rng(self.seed)
            input_masks, recurrent_masks = training.dropout_masks(
                self._dropout_rng, self.dropout, self.recurrent_dropout, x.shape[0],
                x.shape[2], self.units, self.dtype)
        # The pass reuses the previous tape's buffers: until it returns (a signal
        # handler may raise in the middle) there is no tape to backpropagate.
        workspace, self._tape = self._tape, None
        sequence, last, _, _, self._tape = training.forward(
            x, weights.kernel, weights.recurrent_kernel, weights.bias, h, c, mask=mask,
            go_backwards=self.go_backwards, activation=self.activation,
            recurrent_activation=self.recurrent_activation, input_masks=input_masks,
            recurrent_masks=recurrent_masks, return_sequence=self.return_sequences,
            workspace=workspace, pack=weights.packed, num_threads=self.num_threads,
            projection_kernel=weights.projection_kernel)
        return sequence, last

    def _finish(self, sequence: Array | None, last: Array, h: Array, c: Array) -> Output:
        """Store the final states of a stateful layer; arrange the outputs as Keras does."""
        if self.stateful:
            self._states = (h.copy(), c.copy())
        output = last if sequence is None else sequence   # sequence: return_sequences
        if self.return_state:
            return [output, h, c]
        return output

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> Shape | list[Shape]:
        """Shape of the output for ``input_shape`` (batch, timesteps,
        features), entries may be None; a list of three shapes with
        return_state."""
        batch, timesteps = tuple(input_shape)[:2]
        output = ((batch, timesteps, self._outputs) if self.return_sequences
                  else (batch, self._outputs))
        if self.return_state:
            return [output, (batch, self._outputs), (batch, self.units)]
        return output

    # ----------------------------------------------------------------- states
    def _start_states(self, initial_state: object, batch: int) -> tuple[Array, Array]:
        if self.stateful and initial_state is None and self._states is not None:
            validation.stateful_batch(self._states[0].shape[0], batch)
            return self._states[0].copy(), self._states[1].copy()
        return validation.initial_state(initial_state, batch, self.units, self.dtype,
                                        self.proj_size)

    @property
    def states(self) -> list[Array] | None:
        """``[h, c]`` stored by a stateful layer (copies), None before its first call."""
        if self._states is None:
            return None
        return [state.copy() for state in self._states]

    def reset_state(self, states: Sequence[ArrayLike] | None = None) -> None:
        """Zero the stored states of a stateful layer, or set them to ``[h, c]``
        (each (batch, units); this also sets the batch size)."""
        if not self.stateful:
            raise ValueError("reset_state: the layer is not stateful (stateful=False)")
        if states is not None:
            validation.state_list(states, 2, "states")
            batch = (np.shape(states[0]) or (None,))[0]
            self._states = validation.initial_state(states, batch, self.units, self.dtype,
                                                    self.proj_size)
        elif self._states is not None:
            h, c = self._states
            self._states = (np.zeros_like(h), np.zeros_like(c))

    reset_states = reset_state      # the tf.keras name

    # ------------------------------------------------------- config and I/O
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments under Keras's ``LSTM`` config keys."""
        return {
            "units": self.units, "activation": self.activation,
            "recurrent_activation": self.recurrent_activation,
            "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer,
            "recurrent_initializer": self.recurrent_initializer,
            "bias_initializer": self.bias_initializer,
            "unit_forget_bias": self.unit_forget_bias,
            "return_sequences": self.return_sequences, "return_state": self.return_state,
            "go_backwards": self.go_backwards, "stateful": self.stateful,
            "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed, "dtype": self.dtype.name,
            # Keras has no projection: the key appears only where it is used.
            **({"proj_size": self.proj_size} if self.proj_size else {}),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LSTM:
        """A layer from ``get_config()`` or from a Keras ``LSTM`` config
        (keys that only matter for training, such as regularizers, are
        dropped)."""
        return cls(**keras_io.constructor_kwargs(cls, config))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write config and weights to one ``.npz`` file; see ``fastlstm.load``."""
        serialization.save(self, path)

    @classmethod
    def from_torch(cls, module: Any, **kwargs: Any) -> LSTM:
        """A layer with the weights of a one-layer unidirectional
        ``torch.nn.LSTM``; ``kwargs`` go to the constructor.  The layer takes
        batch-major input whatever the module's ``batch_first``.

        Weights: ``kernel = weight_ih.T``, ``recurrent_kernel = weight_hh.T``,
        ``bias = bias_ih + bias_hh`` and, for ``proj_size > 0``,
        ``projection_kernel = weight_hr.T``; units, proj_size, use_bias and
        dtype come from the module.
        """
        arguments, weights = torch_io.single_layer(module)
        layer = cls(arguments.pop("units"), **{**arguments, **kwargs})
        layer.set_weights(weights)
        return layer

    def to_torch(self) -> Any:
        """A ``torch.nn.LSTM`` (batch_first=True) that computes the same
        outputs; the bias goes to ``bias_ih`` and ``bias_hh`` is zero."""
        weights = self._require_built("to_torch")
        return torch_io.to_module(weights.arrays, self.activation, self.recurrent_activation,
                                  self.go_backwards, self.proj_size)

    @classmethod
    def from_keras(cls, layer: Any) -> LSTM:
        """A layer with the config and weights of a live ``keras.layers.LSTM``."""
        if keras_io.keras_class(layer) != "LSTM":
            raise TypeError(f"LSTM.from_keras expects a keras.layers.LSTM, got "
                            f"{type(layer).__name__}; use fastlstm.from_keras for others")
        result = cls.from_config(keras_io.without_initializers(layer.get_config()))
        weights = layer.get_weights()
        if weights:
            result.set_weights(weights)
        return result

    def backward(self, d_outputs: Any, input_gradient: bool = True) -> list[Array | None]:
        """Backpropagate through the last ``training=True`` call.

        Parameters
        ----------
        d_outputs : array or list
            Gradient of the loss with respect to what that call returned,
            shaped like it: one array, or ``[d_output, d_h, d_c]`` with
            ``return_state``; None stands for a zero gradient.
        input_gradient : bool, default True
            False skips the product that forms ``d_x`` (returned as None),
            for a first layer whose input needs no gradient.

        Returns
        -------
        [d_x, d_h0, d_c0]
            Gradients with respect to the input and the initial states
            (at the zero states when none was given).  The weight
            gradients go to ``layer.grads``, ordered like ``get_weights()``.

        The layer keeps the last training call's activations in a workspace
        it reuses, so ``backward`` refers to that call, and training calls
        on one layer must not run concurrently from several threads.

        Examples
        --------
        >>> import numpy as np, fastlstm
        >>> layer = fastlstm.LSTM(4, seed=0)
        >>> out = layer(np.ones((2, 3, 5)), training=True)
        >>> d_x, d_h0, d_c0 = layer.backward(np.ones_like(out))
        >>> d_x.shape, [g.shape for g in layer.grads]
        ((2, 3, 5), [(5, 16), (4, 16), (16,)])
        """
        with self._training_call():
            tape = self._tape
            if tape is None:
                raise RuntimeError("LSTM.backward needs a call with training=True first")
            d_sequence, d_last, d_h, d_c = self._output_gradients(d_outputs, tape.shape)
            dx, dh0, dc0, dkernel, drecurrent_kernel, dbias, dprojection = training.backward(
                tape, d_sequence, d_last, d_h, d_c, input_gradient=input_gradient)
            self.grads = ([dkernel, drecurrent_kernel] + ([dbias] if self.use_bias else [])
                          + ([] if dprojection is None else [dprojection]))
            return [dx, dh0, dc0]

    def _output_gradients(self, d_outputs: Any, shape: tuple[int, int, int],
                          ) -> tuple[Array | None, ...]:
        """``backward``'s d_outputs, shaped like a call's outputs for a
        recorded (timesteps, batch, units), as training.backward takes them:
        ``(d_sequence, d_last, d_h, d_c)``."""
        timesteps, batch, units = shape
        outputs = self._outputs
        output_shape = ((batch, timesteps, outputs) if self.return_sequences
                        else (batch, outputs))
        if self.return_state:
            if not isinstance(d_outputs, (list, tuple)) or len(d_outputs) != 3:
                raise ValueError(
                    "d_outputs must be a list [d_output, d_h, d_c] like the layer's "
                    f"outputs (return_state=True), got {type(d_outputs).__name__}")
            d_output, d_h, d_c = d_outputs
        else:
            d_output, d_h, d_c = d_outputs, None, None
        # The kernel only reads the sequence gradient; it overwrites the others.
        d_output = validation.gradient(d_output, output_shape, self.dtype, "d_outputs[0]",
                                       copy=not self.return_sequences)
        d_h = validation.gradient(d_h, (batch, outputs), self.dtype, "d_outputs[1]")
        d_c = validation.gradient(d_c, (batch, units), self.dtype, "d_outputs[2]")
        if self.return_sequences:
            return d_output, None, d_h, d_c
        return None, d_output, d_h, d_c

    def __getstate__(self) -> dict[str, Any]:
        """Pickle configuration, weights and stored states only (what Dask
        ships to its workers): the kernel's packed copy of the weights is
        made again on the next call, and the last training call's workspace,
        its gradients (tens of times the weights) and the locks are left out."""
        state = self.__dict__.copy()
        state.update(_tape=None, grads=None, _lock=None, _training=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock(), _training=threading.Lock())

    def __repr__(self) -> str:
        shape = f"input_dim={self.input_dim}, " if self.built else ""
        int8 = ", quantization='int8'" if self.quantization else ""
        proj = f"proj_size={self.proj_size}, " if self.proj_size else ""
        return (f"LSTM(units={self.units}, {proj}{shape}"
                f"return_sequences={self.return_sequences}, "
                f"return_state={self.return_state}, dtype={self.dtype.name}{int8})")
