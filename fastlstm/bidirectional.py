"""``fastlstm.Bidirectional``: a forward and a backward LSTM over one sequence."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import keras_io, serialization, validation
from ._typing import Array, Output, Shape
from .layer import LSTM

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _merge(mode: str | None, forward: Array, backward: Array) -> Array | list[Array]:
    if mode == "concat":
        return np.concatenate([forward, backward], axis=-1)
    if mode == "sum":
        return forward + backward
    if mode == "mul":
        return forward * backward
    if mode == "ave":
        return (forward + backward) / 2
    return [forward, backward]


def _split(result: Output) -> tuple[Array, list[Array]]:
    """An LSTM's result → (output, its states [h, c] or [])."""
    if isinstance(result, list):
        return result[0], result[1:]
    return result, []


class Bidirectional:
    """Keras's ``Bidirectional`` wrapper around a ``fastlstm.LSTM``.

    Parameters
    ----------
    layer : fastlstm.LSTM
        Its config makes the forward layer (a new layer, as in Keras: the
        weights of ``layer`` are not reused) and, with ``go_backwards``
        flipped, the backward layer.
    merge_mode : {"concat", "sum", "mul", "ave", None}, default "concat"
        How the two outputs combine; None returns both, ``[y_fwd, y_bwd]``.
    backward_layer : fastlstm.LSTM, optional
        Used as the backward layer as is; it must have the opposite
        ``go_backwards`` and the same return_sequences, return_state and
        stateful as ``layer``.

    Calls return what Keras returns: the merged output, then with
    return_state ``fwd_h, fwd_c, bwd_h, bwd_c`` (five entries; six with
    merge_mode=None).  The backward sequence is flipped back to time order
    when return_sequences=True, and with a mask both directions then
    output zeros at masked steps (Keras sets ``zero_output_for_mask``).

    Examples
    --------
    >>> import numpy as np, fastlstm
    >>> x = np.random.default_rng(0).random((2, 5, 3), dtype=np.float32)
    >>> bi = fastlstm.Bidirectional(fastlstm.LSTM(4, return_sequences=True, seed=0))
    >>> bi(x).shape, bi.count_params()
    ((2, 5, 8), 256)
    """

    def __init__(self, layer: LSTM, merge_mode: str | None = "concat",
                 backward_layer: LSTM | None = None) -> None:
        if not isinstance(layer, LSTM):
            raise TypeError(f"Bidirectional expects a fastlstm.LSTM layer, "
                            f"got {type(layer).__name__}")
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"merge_mode must be one of {MERGE_MODES}, got {merge_mode!r}")
        config = layer.get_config()
        self.forward_layer = LSTM.from_config(config)
        if backward_layer is None:
            backward_layer = LSTM.from_config({**config, "go_backwards": not layer.go_backwards})
        elif not isinstance(backward_layer, LSTM):
            raise TypeError(f"backward_layer must be a fastlstm.LSTM, "
                            f"got {type(backward_layer).__name__}")
        for name in ("return_sequences", "return_state", "stateful", "dtype"):
            if getattr(backward_layer, name) != getattr(layer, name):
                raise ValueError(
                    f"backward_layer.{name} must equal layer.{name} = "
                    f"{getattr(layer, name)!r}, got {getattr(backward_layer, name)!r}")
        if backward_layer.go_backwards == layer.go_backwards:
            raise ValueError(
                f"backward_layer.go_backwards must be the opposite of layer.go_backwards "
                f"= {layer.go_backwards}, got {backward_layer.go_backwards}")
        self.backward_layer = backward_layer
        self.merge_mode = merge_mode
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self.stateful = layer.stateful
        self.dtype = layer.dtype

    @property
    def built(self) -> bool:
        return self.forward_layer.built and self.backward_layer.built

    @property
    def input_dim(self) -> int | None:
        return self.forward_layer.input_dim

    def build(self, input_shape: int | Sequence[int | None]) -> None:
        for layer in (self.forward_layer, self.backward_layer):
            if not layer.built:
                layer.build(input_shape)

    def __call__(self, x: ArrayLike, mask: ArrayLike | None = None,
                 initial_state: Sequence[ArrayLike] | None = None,
                 lengths: ArrayLike | None = None) -> Output:
        """Run both directions on ``x`` (batch, timesteps, features).

        ``mask``/``lengths`` as for ``LSTM``; ``initial_state`` is
        ``[fwd_h, fwd_c, bwd_h, bwd_c]``.
        """
        x = validation.inputs(x, self.forward_layer.input_dim, self.dtype)
        mask = validation.mask_or_lengths(mask, lengths, *x.shape[:2])
        validation.state_list(initial_state, 4, "Bidirectional initial_state")
        forward_state = backward_state = None
        if initial_state is not None:
            forward_state, backward_state = initial_state[:2], initial_state[2:]
        # lengths go on to the layers, which then compute no padded step
        given = dict(mask=mask) if lengths is None else dict(lengths=lengths)
        forward, forward_states = _split(
            self.forward_layer(x, initial_state=forward_state, **given))
        backward, backward_states = _split(
            self.backward_layer(x, initial_state=backward_state, **given))
        states = forward_states + backward_states
        if self.return_sequences:
            backward = backward[:, ::-1]
            if mask is not None:
                keep = mask[:, :, None].astype(bool)
                forward = np.where(keep, forward, 0).astype(self.dtype, copy=False)
                backward = np.where(keep, backward, 0).astype(self.dtype, copy=False)
            backward = np.ascontiguousarray(backward)
        output = _merge(self.merge_mode, forward, backward)
        if self.return_state:
            return (output if isinstance(output, list) else [output]) + states
        return output

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> Shape | list[Shape]:
        """Output shape(s) for ``input_shape`` (batch, timesteps, features)."""
        shapes = self.forward_layer.compute_output_shape(input_shape)
        states: list[Shape] = []
        if isinstance(shapes, list):      # return_state
            shape, states = shapes[0], shapes[1:] * 2
        else:
            shape = shapes
        if self.merge_mode == "concat":
            features = shape[-1]
            assert features is not None       # the layer's units or proj_size
            output = [shape[:-1] + (2 * features,)]
        elif self.merge_mode is None:
            output = [shape, shape]
        else:
            output = [shape]
        output += states
        return output[0] if len(output) == 1 else output

    # ---------------------------------------------------------------- states
    @property
    def states(self) -> list[Array] | None:
        """``[fwd_h, fwd_c, bwd_h, bwd_c]`` of a stateful layer, or None."""
        forward, backward = self.forward_layer.states, self.backward_layer.states
        return None if forward is None or backward is None else forward + backward

    def reset_state(self, states: Sequence[ArrayLike] | None = None) -> None:
        """Zero the stored states, or set them to ``[fwd_h, fwd_c, bwd_h, bwd_c]``."""
        validation.state_list(states, 4, "states")
        self.forward_layer.reset_state(None if states is None else states[:2])
        self.backward_layer.reset_state(None if states is None else states[2:])

    reset_states = reset_state

    # --------------------------------------------------------------- weights
    def get_weights(self) -> list[Array]:
        """Forward weights then backward weights, as in Keras."""
        return self.forward_layer.get_weights() + self.backward_layer.get_weights()

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Set ``get_weights()``-shaped weights (forward then backward)."""
        count = 2 + self.forward_layer.use_bias + bool(self.forward_layer.proj_size)
        expected = count + 2 + self.backward_layer.use_bias + bool(self.backward_layer.proj_size)
        if not isinstance(weights, (list, tuple)) or len(weights) != expected:
            raise ValueError(
                f"Bidirectional weights must be a list of {expected} arrays "
                f"(forward then backward), got "
                f"{len(weights) if isinstance(weights, (list, tuple)) else type(weights).__name__}")
        self.forward_layer.set_weights(list(weights[:count]))
        self.backward_layer.set_weights(list(weights[count:]))

    def count_params(self) -> int:
        return self.forward_layer.count_params() + self.backward_layer.count_params()

    def _weight_shapes(self, input_dim: int) -> list[tuple[int, ...]]:
        """The shapes ``get_weights()`` has for ``input_dim`` features."""
        return (self.forward_layer._weight_shapes(input_dim)
                + self.backward_layer._weight_shapes(input_dim))

    # ---------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        """Keras's Bidirectional config keys: merge_mode, layer, backward_layer."""
        return {"merge_mode": self.merge_mode, "layer": keras_io.to_dict(self.forward_layer),
                "backward_layer": keras_io.to_dict(self.backward_layer)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Bidirectional:
        """From ``get_config()`` or a Keras Bidirectional config."""
        def lstm(value: dict[str, Any]) -> LSTM:
            if value.get("class_name") != "LSTM":
                raise ValueError(f"Bidirectional supports LSTM layers only, "
                                 f"got {value.get('class_name')!r}")
            # Bidirectional sets zero_output_for_mask on its layers itself.
            inner = {k: v for k, v in value["config"].items() if k != "zero_output_for_mask"}
            return LSTM.from_config(inner)

        backward = config.get("backward_layer")
        return cls(lstm(config["layer"]), merge_mode=config.get("merge_mode", "concat"),
                   backward_layer=None if backward is None else lstm(backward))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write config and weights to one ``.npz`` file; see ``fastlstm.load``."""
        serialization.save(self, path)

    def __repr__(self) -> str:
        return f"Bidirectional({self.forward_layer!r}, merge_mode={self.merge_mode!r})"
