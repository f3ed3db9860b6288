"""``fastlstm.LSTM``: Keras 3's LSTM layer on a compiled CPU kernel."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _kernel, activations, initializers, quantization, validation
from ._typing import Array, Output, Shape
from .initializers import Initializer

if TYPE_CHECKING:
    from .quantization import Int8Weights
    from .training import Tape


class LSTM:
    """Long Short-Term Memory layer with the semantics of ``keras.layers.LSTM``.

    Parameters
    ----------
    units : int
        Dimensionality of the output space (and of the states h and c).
    activation : str, default "tanh"
        Applied to the candidate cell value and to the cell state; one of
        "tanh", "sigmoid", "hard_sigmoid", "relu", "linear" (or None).
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

    Weights are ``kernel (input_dim, 4*units)``, ``recurrent_kernel
    (units, 4*units)`` and ``bias (4*units,)``, gate blocks in Keras's order
    i, f, c, o.  The layer builds itself on its first call.

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
                 recurrent_dropout: float = 0.0, num_threads: int | None = None) -> None:
        # 4 * units columns must fit BLAS's 32-bit ints.
        self.units = validation.positive_int(units, "units", limit=(2**31 - 1) // 4)
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
        self.num_threads = validation.num_threads(num_threads)
        self.input_dim: int | None = None
        self._weights: list[Array] | None = None
        self._packed: _kernel.Packed | None = None
        self.grads: list[Array] | None = None             # filled by backward()
        self._tape: Tape | None = None          # workspace of the last training call
        self._dropout_rng: np.random.Generator | None = None   # drawn from seed on first dropout
        self._int8: Int8Weights | None = None   # set by fastlstm.quantize_dynamic
        self._packed_int8: Any = None           # the int8 kernel's layout of them

    # ------------------------------------------------------------------ build
    @property
    def built(self) -> bool:
        return self._weights is not None

    def build(self, input_shape: int | Sequence[int | None]) -> None:
        """Create the weights for ``input_shape``: an int (the feature size)
        or a shape whose last entry is the feature size."""
        if isinstance(input_shape, (tuple, list)):
            if not input_shape:
                raise ValueError("input_shape must not be empty")
            input_dim = input_shape[-1]
        else:
            input_dim = input_shape
        input_dim = validation.positive_int(input_dim, "input_dim (last entry of input_shape)")
        units, dtype = self.units, self.dtype
        # The initializers draw in float64 before casting.
        validation.affordable((input_dim + units + 1) * 4 * units, 8,
                              f"the weights of LSTM(units={units}) for input_dim={input_dim}")
        rng = np.random.default_rng(self.seed)
        kernel = initializers.initialize(
            self.kernel_initializer, (input_dim, 4 * units), dtype, rng)
        recurrent_kernel = initializers.initialize(
            self.recurrent_initializer, (units, 4 * units), dtype, rng)
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
        self.input_dim = input_dim
        self._store(weights)

    def _store(self, weights: list[Array]) -> None:
        for array in weights:
            array.flags.writeable = False   # only set_weights changes them
        self._weights = weights
        self._kernel_bias = (weights[2] if self.use_bias
                             else np.zeros(4 * self.units, self.dtype))
        self._packed = None   # the kernel's layout of the weights, made on the next call

    def _weight_shapes(self, input_dim: int) -> list[tuple[int, ...]]:
        shapes: list[tuple[int, ...]] = [(input_dim, 4 * self.units), (self.units, 4 * self.units)]
        if self.use_bias:
            shapes.append((4 * self.units,))
        return shapes

    def _require_built(self, what: str) -> list[Array]:
        """The weights, or a ValueError naming ``what`` needed them."""
        if self._weights is None:
            raise ValueError(
                f"{what}: the layer has no weights yet; call it on an input or "
                f"call build(input_dim) first")
        return self._weights

    # ---------------------------------------------------------------- weights
    @property
    def kernel(self) -> Array:
        return self._require_built("kernel")[0]

    @property
    def recurrent_kernel(self) -> Array:
        return self._require_built("recurrent_kernel")[1]

    @property
    def bias(self) -> Array | None:
        weights = self._require_built("bias")
        return weights[2] if self.use_bias else None

    def get_weights(self) -> list[Array]:
        """``[kernel, recurrent_kernel, bias]`` (no bias when use_bias=False), copies."""
        return [w.copy() for w in self._require_built("get_weights")]

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
        self.input_dim = input_dim
        if self._int8 is not None:      # an int8 layer quantizes what it is given
            self._set_int8(quantization.quantize_weights(
                arrays[0], arrays[1], arrays[2] if self.use_bias else None))
        else:
            self._store(arrays)

    def count_params(self) -> int:
        return sum(w.size for w in self._require_built("count_params"))

    # ------------------------------------------------------------------ int8
    @property
    def quantization(self) -> str | None:
        """"int8" for a layer made by ``fastlstm.quantize_dynamic``, else None."""
        return None if self._int8 is None else "int8"

    @property
    def int8_weights(self) -> Int8Weights | None:
        """The int8 weights and their scales (``fastlstm.quantization.Int8Weights``),
        or None for a float layer."""
        return self._int8

    def _set_int8(self, weights: Int8Weights) -> None:
        """Compute with ``weights``; the float weights become their dequantised values."""
        dequantized = weights.dequantized()
        self._store(dequantized if self.use_bias else dequantized[:2])
        self._int8 = weights
        self._packed_int8 = None

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
            Overrides the stored states of a stateful layer.
        lengths : array_like of int, shape (batch,), optional
            Shortcut for a right-padded mask: row b has ``lengths[b]`` valid
            steps (like PyTorch's ``pack_padded_sequence``).
        training : bool, default False
            Record the pass for ``backward`` and apply dropout.

        Returns
        -------
        The last output (batch, units), or the sequence (batch, timesteps,
        units) with ``return_sequences``; with ``return_state`` a list
        ``[output, h, c]``.
        """
        x = validation.inputs(x, self.input_dim, self.dtype)
        if not self.built:
            self.build(x.shape[2])
        batch, timesteps = x.shape[:2]
        mask = validation.mask_or_lengths(mask, lengths, batch, timesteps)
        h, c = self._start_states(initial_state, batch)
        if training and self._int8 is not None:
            raise ValueError("an int8 layer (made by quantize_dynamic) runs inference only; "
                             "got training=True")
        if training:
            # Imported here: the training kernel loads SciPy's BLAS, which
            # inference never needs (it is most of import fastlstm's time).
            from . import training as recorded
            sequence, last, h, c = recorded.layer_forward(self, x, mask, h, c)
            return self._finish(sequence, last, h, c)
        # Last output: carried by the kernel when there is a mask; zeros when
        # no step ran (timesteps == 0); otherwise the final h.
        last = np.zeros((batch, self.units), self.dtype)
        sequence = None
        if self.return_sequences:
            shape = (batch, timesteps, self.units)
            validation.affordable(batch * timesteps * self.units, self.dtype.itemsize,
                                  f"the output sequence {shape}")
            sequence = np.empty(shape, self.dtype)
        if self._int8 is not None and quantization.prefers_int8(batch, self.input_dim,
                                                                 self.units):
            quantization.forward(self, x, mask, h, c, last, sequence)
        else:
            packed = self._packed
            if packed is None or packed.selected != _kernel.current_isa():
                kernel, recurrent_kernel = self._require_built("__call__")[:2]
                packed = self._packed = _kernel.pack(kernel, recurrent_kernel,
                                                     self._kernel_bias)
            _kernel.forward(x, packed, h, c, last, mask, sequence, self.go_backwards,
                            activations.CODES[self.activation],
                            activations.CODES[self.recurrent_activation],
                            self.num_threads or _kernel.DEFAULT_THREADS)
        if mask is None and timesteps > 0:
            last[...] = h
        return self._finish(sequence, last, h, c)

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
        output = ((batch, timesteps, self.units) if self.return_sequences
                  else (batch, self.units))
        if self.return_state:
            return [output, (batch, self.units), (batch, self.units)]
        return output

    # ----------------------------------------------------------------- states
    def _start_states(self, initial_state: object, batch: int) -> tuple[Array, Array]:
        if self.stateful and initial_state is None and self._states is not None:
            validation.stateful_batch(self._states[0].shape[0], batch)
            return self._states[0].copy(), self._states[1].copy()
        return validation.initial_state(initial_state, batch, self.units, self.dtype)

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
            self._states = validation.initial_state(states, batch, self.units, self.dtype)
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
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LSTM:
        """A layer from ``get_config()`` or from a Keras ``LSTM`` config
        (keys that only matter for training, such as regularizers, are
        dropped)."""
        from . import serialization
        return cls(**serialization.constructor_kwargs(cls, config))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write config and weights to one ``.npz`` file; see ``fastlstm.load``."""
        from . import serialization
        serialization.save(self, path)

    @classmethod
    def from_torch(cls, module: Any, **kwargs: Any) -> LSTM:
        """A layer with the weights of a one-layer unidirectional
        ``torch.nn.LSTM``; ``kwargs`` go to the constructor.  The layer takes
        batch-major input whatever the module's ``batch_first``."""
        from . import torch_io
        return torch_io.layer_from_torch(cls, module, **kwargs)

    def to_torch(self) -> Any:
        """A ``torch.nn.LSTM`` (batch_first=True) that computes the same outputs."""
        from . import torch_io
        return torch_io.layer_to_torch(self)

    @classmethod
    def from_keras(cls, layer: Any) -> LSTM:
        """A layer with the config and weights of a live ``keras.layers.LSTM``."""
        from . import keras_io
        return keras_io.lstm_from_keras(cls, layer)

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
        from . import training
        return training.layer_backward(self, d_outputs, input_gradient)

    def __repr__(self) -> str:
        shape = f"input_dim={self.input_dim}, " if self.built else ""
        int8 = ", quantization='int8'" if self._int8 is not None else ""
        return (f"LSTM(units={self.units}, {shape}return_sequences={self.return_sequences}, "
                f"return_state={self.return_state}, dtype={self.dtype.name}{int8})")
