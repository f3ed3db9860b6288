"""A plain NumPy LSTM: the oracle for tests, written from the equations.

Never used on the fast path.  It follows Keras 3's LSTM (TensorFlow and
torch backends) step by step:

    z = x_t @ kernel + h @ recurrent_kernel + bias      # gate blocks i, f, c, o
    i, f, o = rec_act(z_i), rec_act(z_f), rec_act(z_o)
    c = f * c + i * act(z_c)
    h = o * act(c)

A masked step keeps h and c; its output repeats the previous output, which
is zeros before the first unmasked step.

Dropout masks, as Keras 3's ``LSTMCell`` applies them in training (its
implementation 1 with per-gate masks): gate block g's part of z is
``(x_t * input_masks[g]) @ kernel_g + (h * recurrent_masks[g]) @
recurrent_kernel_g + bias_g``; one input mask serves all four gates.

``lstm_int8`` is the same loop with the int8 gates of
``fastlstm.quantization`` (the exact integers and roundings the int8
kernel computes).
"""
import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .activations import FUNCTIONS
from .quantization import Int8Weights, gates


def lstm(x: ArrayLike, kernel: NDArray[Any], recurrent_kernel: NDArray[Any],
         bias: NDArray[Any] | None = None, *,
         initial_state: tuple[ArrayLike, ArrayLike] | list[ArrayLike] | None = None,
         mask: ArrayLike | None = None, go_backwards: bool = False,
         activation: str = "tanh", recurrent_activation: str = "sigmoid",
         input_masks: NDArray[Any] | None = None, recurrent_masks: NDArray[Any] | None = None,
         ) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
    """Run an LSTM over ``x`` (batch, timesteps, features).

    ``input_masks`` (1 or 4, batch, features) and ``recurrent_masks`` (4,
    batch, units) are dropout masks (already scaled), one per sequence and
    gate block, or None.

    Returns ``(sequence, last_output, h, c)``: the outputs of every step in
    processing order (batch, timesteps, units), the last output, and the
    final states.  Computes in the dtype of ``kernel``.
    """
    dtype = np.asarray(kernel).dtype
    bias = np.zeros(kernel.shape[1], dtype) if bias is None else bias
    units = recurrent_kernel.shape[0]

    def gates(x_t: NDArray[Any], h: NDArray[Any]) -> NDArray[Any]:
        if input_masks is None and recurrent_masks is None:
            return x_t @ kernel + h @ recurrent_kernel + bias   # type: ignore[no-any-return]
        xs = [x_t] if input_masks is None else [x_t * m for m in input_masks]
        hs = [h] if recurrent_masks is None else [h * m for m in recurrent_masks]
        block = [slice(g * units, (g + 1) * units) for g in range(4)]
        return np.concatenate(
            [xs[g % len(xs)] @ kernel[:, block[g]] + hs[g % len(hs)] @ recurrent_kernel[:, block[g]]
             + bias[block[g]] for g in range(4)], axis=1)

    return _run(x, gates, units, dtype, initial_state, mask,
                go_backwards, activation, recurrent_activation)


def lstm_int8(x: ArrayLike, weights: Int8Weights, *,
              initial_state: tuple[ArrayLike, ArrayLike] | list[ArrayLike] | None = None,
              mask: ArrayLike | None = None, go_backwards: bool = False,
              activation: str = "tanh", recurrent_activation: str = "sigmoid",
              ) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
    """``lstm`` with int8 weights: each step's gates come from
    ``fastlstm.quantization.gates`` (inputs and h quantized per row, exact
    integer products, float32 dequantisation); the rest is ``lstm``'s,
    in float32."""
    units = weights.recurrent_kernel.shape[0]
    return _run(x, lambda x_t, h: gates(x_t, h, weights), units, np.dtype(np.float32),
                initial_state, mask, go_backwards, activation, recurrent_activation)


def _run(x: ArrayLike, step_gates: Callable[[NDArray[Any], NDArray[Any]], NDArray[Any]],
         units: int, dtype: np.dtype[Any],
         initial_state: tuple[ArrayLike, ArrayLike] | list[ArrayLike] | None,
         mask: ArrayLike | None, go_backwards: bool, activation: str,
         recurrent_activation: str,
         ) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
    """The time loop of ``lstm``; ``step_gates(x_t, h)`` gives z."""
    x = np.asarray(x, dtype)
    batch, timesteps, _ = x.shape
    act, rec_act = FUNCTIONS[activation], FUNCTIONS[recurrent_activation]
    if initial_state is None:
        h = np.zeros((batch, units), dtype)
        c = np.zeros((batch, units), dtype)
    else:
        h, c = (np.array(s, dtype) for s in initial_state)
    output = np.zeros((batch, units), dtype)
    sequence = np.zeros((batch, timesteps, units), dtype)
    steps = range(timesteps - 1, -1, -1) if go_backwards else range(timesteps)
    # Linear and relu activations leave h and c unbounded: over a long
    # sequence they overflow to inf (and inf - inf gives nan), as the
    # kernel's do.  That is the expected result there, not a warning.
    unbounded = {activation, recurrent_activation} & {"linear", "relu"}
    quiet: contextlib.AbstractContextManager[Any] = (
        np.errstate(over="ignore", invalid="ignore") if unbounded else contextlib.nullcontext())
    with quiet:
        for k, t in enumerate(steps):
            z = step_gates(x[:, t], h)
            i = rec_act(z[:, :units])
            f = rec_act(z[:, units:2 * units])
            g = act(z[:, 2 * units:3 * units])
            o = rec_act(z[:, 3 * units:])
            c_new = f * c + i * g
            h_new = o * act(c_new)
            if mask is None:
                h, c, output = h_new, c_new, h_new
            else:
                keep = np.asarray(mask, bool)[:, t, None]
                h = np.where(keep, h_new, h)
                c = np.where(keep, c_new, c)
                output = np.where(keep, h_new, output)
            sequence[:, k] = output
    return sequence, output, h, c
