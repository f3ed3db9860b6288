"""``fastlstm.Sequential``: layers stacked one on top of the other."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike

from . import keras_io, serialization, validation
from ._typing import Array, Output, Shape
from .bidirectional import Bidirectional
from .layer import LSTM
from .masking import Masking

Layer = LSTM | Bidirectional | Masking
# The classes a stack holds, by the class name in configs.
LAYER_CLASSES: dict[str, type[Layer]] = {
    cls.__name__: cls for cls in (LSTM, Bidirectional, Masking)}


def _first(shape: Shape | list[Shape]) -> Shape:
    """The output's shape from ``compute_output_shape`` (the first of a list)."""
    return shape[0] if isinstance(shape, list) else shape


def _single_output(layer: Layer) -> bool:
    """Whether ``layer`` returns one array (so another layer can follow it)."""
    return not getattr(layer, "return_state", False) and getattr(
        layer, "merge_mode", "concat") is not None


class Sequential:
    """A stack of ``LSTM``, ``Bidirectional`` and ``Masking`` layers.

    Each layer's output feeds the next; a mask (from ``mask``, ``lengths`` or
    a ``Masking`` layer) goes on to the next layer while the time axis is
    kept (return_sequences=True), as in Keras.  Only the last layer may
    return several arrays (return_state, or merge_mode=None).

    Parameters
    ----------
    layers : list
    input_shape : (timesteps, features), optional
        Builds the layers; timesteps may be None.  Without it the stack
        builds on its first call.
    time_major : bool, default False
        Inputs (and sequence outputs) are (timesteps, batch, features), like
        PyTorch's ``batch_first=False``; masks and lengths stay batch-major.
    name : str, default "sequential"
        The model's name in ``summary()``; ``from_keras`` keeps the Keras
        model's (a functional model's is "functional" unless named).

    Examples
    --------
    >>> import fastlstm
    >>> model = fastlstm.Sequential([fastlstm.LSTM(16, seed=0)], input_shape=(4, 10))
    >>> model.count_params()
    1728
    """

    def __init__(self, layers: Sequence[Layer], input_shape: Sequence[int] | None = None,
                 time_major: bool = False, name: str = "sequential") -> None:
        layers = list(layers)
        if not layers:
            raise ValueError("Sequential needs at least one layer, got an empty list")
        for index, layer in enumerate(layers):
            if not isinstance(layer, (LSTM, Bidirectional, Masking)):
                raise TypeError(
                    f"Sequential layers must be fastlstm LSTM, Bidirectional or Masking, "
                    f"got {type(layer).__name__} at position {index}")
            if index < len(layers) - 1 and not _single_output(layer):
                raise ValueError(
                    f"layer {index} ({layer!r}) returns several arrays (return_state or "
                    f"merge_mode=None): only the last layer of a Sequential may")
            if index < len(layers) - 1 and not layer.return_sequences:
                # Keras refuses this too, when it builds the next layer.
                raise ValueError(
                    f"layer {index} ({layer!r}) returns its last output only "
                    f"(return_sequences=False), but the layer after it takes a sequence: "
                    f"only the last layer of a Sequential may")
        self.layers = layers
        self.time_major = bool(time_major)
        self.name = str(name)
        self.input_shape: tuple[int, ...] | None = None
        if input_shape is not None:
            self.build(input_shape)

    @property
    def built(self) -> bool:
        return all(layer.built for layer in self.layers)

    @property
    def input_dim(self) -> int | None:
        """The feature size the stack is built for, None before."""
        return next((layer.input_dim for layer in self.layers if layer.input_dim is not None),
                    None)

    @property
    def return_sequences(self) -> bool:
        return bool(self.layers) and self.layers[-1].return_sequences

    def build(self, input_shape: Sequence[int]) -> None:
        """Build every layer for ``input_shape`` = (timesteps, features)."""
        shape: Shape = (None,) + tuple(input_shape)
        if len(shape) != 3:
            raise ValueError(f"input_shape must be (timesteps, features), got {input_shape!r}")
        self.input_shape = tuple(input_shape)
        for index, layer in enumerate(self.layers):
            if isinstance(layer, Masking):
                continue
            if layer.built and layer.input_dim != shape[-1]:
                raise ValueError(
                    f"layer {index} ({layer!r}) takes {layer.input_dim} features, "
                    f"but the layer before it gives {shape[-1]}")
            if not layer.built:
                layer.build(shape)          # the last entry is the feature size
            shape = _first(layer.compute_output_shape(shape))

    def __call__(self, x: ArrayLike, mask: ArrayLike | None = None,
                 lengths: ArrayLike | None = None,
                 initial_state: Sequence[Sequence[ArrayLike] | None] | None = None) -> Output:
        """Run the stack on ``x``; returns what the last layer returns.

        ``mask`` (batch, timesteps) of bool or ``lengths`` (batch,) mark the
        valid steps, as for ``LSTM``.  ``initial_state`` has one entry per
        LSTM or Bidirectional layer: that layer's ``initial_state`` (or None).
        """
        if self.time_major:
            x = np.swapaxes(validation.inputs(x, None, self.layers[0].dtype), 0, 1)
        x = validation.inputs(x, None, self.layers[0].dtype)
        mask = validation.mask_or_lengths(mask, lengths, *x.shape[:2])
        recurrent = [layer for layer in self.layers if not isinstance(layer, Masking)]
        if initial_state is None:
            initial_state = [None] * len(recurrent)
        elif not isinstance(initial_state, (list, tuple)) or len(initial_state) != len(recurrent):
            raise ValueError(
                f"initial_state must be a list with one entry per LSTM or Bidirectional "
                f"layer ({len(recurrent)}), got {type(initial_state).__name__}"
                + (f" of length {len(initial_state)}" if isinstance(initial_state, (list, tuple))
                   else ""))
        states = iter(initial_state)
        for layer in self.layers:
            if isinstance(layer, Masking):
                mask = layer.compute_mask(x)
                x = layer(x)
                continue
            x = layer(x, mask=mask, initial_state=next(states))
            if not layer.return_sequences:
                mask = None
        if self.time_major and self.return_sequences:
            if not isinstance(x, list):
                return np.ascontiguousarray(np.swapaxes(x, 0, 1))
            # Sequences first: two with merge_mode=None, else one; then states.
            count = 2 if getattr(self.layers[-1], "merge_mode", "") is None else 1
            return [np.ascontiguousarray(np.swapaxes(a, 0, 1)) if i < count else a
                    for i, a in enumerate(x)]
        return x

    # --------------------------------------------------------------- states
    def reset_state(self) -> None:
        """Zero the stored states of every stateful layer."""
        for layer in self.layers:
            if not isinstance(layer, Masking) and layer.stateful:
                layer.reset_state()

    reset_states = reset_state

    # -------------------------------------------------------------- weights
    def get_weights(self) -> list[Array]:
        """All layers' weights in order, as Keras's ``model.get_weights()``."""
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Set a flat list shaped like ``get_weights()``."""
        weights = list(weights)
        counts = [_weight_count(layer) for layer in self.layers]
        if len(weights) != sum(counts):
            raise ValueError(f"Sequential weights must be a list of {sum(counts)} arrays, "
                             f"got {len(weights)}")
        start = 0
        for layer, count in zip(self.layers, counts, strict=True):
            layer.set_weights(weights[start:start + count])
            start += count

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers)

    def _weight_shapes(self, input_dim: int) -> list[tuple[int, ...]]:
        """The shapes ``get_weights()`` has for ``input_dim`` features."""
        shapes: list[tuple[int, ...]] = []
        features = input_dim
        for layer in self.layers:
            shapes += layer._weight_shapes(features)
            # Known feature sizes in, known out.
            features = cast(int, _first(layer.compute_output_shape((None, None, features)))[-1])
        return shapes

    def layer_names(self) -> list[str]:
        """Keras-style names: the snake-case class name, numbered from the
        second layer of a class on (``lstm``, ``lstm_1``, ...)."""
        return keras_io.layer_keys([type(layer).__name__ for layer in self.layers])

    def summary(self, print_fn: Callable[[str], object] = print) -> None:
        """Print a Keras-like table: layer (type), output shape, param #."""
        input_shape: Sequence[int | None] | None = self.input_shape
        if input_shape is None:
            if not self.built:
                raise ValueError("summary: the stack is not built; pass input_shape= "
                                 "or call it on an input first")
            first = next(layer for layer in self.layers if not isinstance(layer, Masking))
            input_shape = (None, first.input_dim)
        shape: Shape = (None,) + tuple(input_shape)
        rows = []
        for name, layer in zip(self.layer_names(), self.layers, strict=True):
            output = layer.compute_output_shape(shape)
            rows.append((f"{name} ({type(layer).__name__})", _format_shape(output),
                         f"{layer.count_params():,}"))
            shape = _first(output)
        widths = [max(len(r[i]) for r in rows + [("Layer (type)", "Output Shape", "Param #")])
                  for i in range(3)]
        line = "+-" + "-+-".join("-" * w for w in widths) + "-+"

        def row(cells: Sequence[str]) -> str:
            return ("| " + cells[0].ljust(widths[0]) + " | " + cells[1].ljust(widths[1])
                    + " | " + cells[2].rjust(widths[2]) + " |")

        total = self.count_params()
        lines = [f'Model: "{self.name}"', line, row(("Layer (type)", "Output Shape", "Param #")),
                 line.replace("-", "=")] + [row(r) for r in rows] + [line]
        lines += [f" Total params: {total:,}", f" Trainable params: {total:,}",
                  " Non-trainable params: 0"]
        print_fn("\n".join(lines))

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> Shape | list[Shape]:
        """Output shape(s) for ``input_shape``, in the stack's layout
        (time-major when ``time_major``, as ``__call__`` returns them)."""
        shape: Shape | list[Shape] = (_swap(tuple(input_shape)) if self.time_major
                                      else tuple(input_shape))
        for layer in self.layers:       # only the last may return several shapes
            shape = layer.compute_output_shape(_first(shape))
        if self.time_major and self.return_sequences:
            if not isinstance(shape, list):
                return _swap(shape)
            # Sequences first (two with merge_mode=None), then the states.
            count = 2 if getattr(self.layers[-1], "merge_mode", "") is None else 1
            return [_swap(s) if i < count else s for i, s in enumerate(shape)]
        return shape

    # --------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        return {"layers": [keras_io.to_dict(layer) for layer in self.layers],
                "input_shape": None if self.input_shape is None else list(self.input_shape),
                "time_major": self.time_major, "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        shape, layers = config.get("input_shape"), config["layers"]
        for key, value in (("input_shape", shape), ("layers", layers)):
            if not isinstance(value, list) and (value is not None or key == "layers"):
                raise TypeError(f"Sequential config: {key} must be a list, "
                                f"got {type(value).__name__}")
        layers = [keras_io.from_dict(layer, LAYER_CLASSES) for layer in layers]
        return cls(layers,
                   input_shape=None if shape is None else tuple(shape),
                   time_major=config.get("time_major", False),
                   name=config.get("name", "sequential"))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write config and weights to one ``.npz`` file; see ``fastlstm.load``."""
        serialization.save(self, path)

    def __repr__(self) -> str:
        return f"Sequential({self.layers!r})"


def _swap(shape: Shape) -> Shape:
    """(timesteps, batch, ...) <-> (batch, timesteps, ...)."""
    return (shape[1], shape[0]) + tuple(shape[2:])


def _weight_count(layer: Layer) -> int:
    if isinstance(layer, Bidirectional):
        return _weight_count(layer.forward_layer) + _weight_count(layer.backward_layer)
    if isinstance(layer, LSTM):
        return 2 + layer.use_bias + bool(layer.proj_size)
    return 0


def _format_shape(shape: Shape | list[Shape]) -> str:
    if isinstance(shape, list):
        return "[" + ", ".join(_format_shape(s) for s in shape) + "]"
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ")"
