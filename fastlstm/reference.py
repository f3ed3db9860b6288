"""A plain NumPy LSTM: the oracle for tests, written from the equations.

Never used on the fast path.  It follows Keras 3's LSTM (TensorFlow and
torch backends) step by step:

    z = x_t @ kernel + h @ recurrent_kernel + bias      # gate blocks i, f, c, o
    i, f, o = rec_act(z_i), rec_act(z_f), rec_act(z_o)
    c = f * c + i * act(z_c)
    h = o * act(c)

A masked step keeps h and c; its output repeats the previous output, which
is zeros before the first unmasked step.
"""
import contextlib
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .activations import FUNCTIONS


def lstm(x: ArrayLike, kernel: NDArray[Any], recurrent_kernel: NDArray[Any],
         bias: NDArray[Any] | None = None, *,
         initial_state: tuple[ArrayLike, ArrayLike] | list[ArrayLike] | None = None,
         mask: ArrayLike | None = None, go_backwards: bool = False,
         activation: str = "tanh", recurrent_activation: str = "sigmoid",
         ) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
    """Run an LSTM over ``x`` (batch, timesteps, features).

    Returns ``(sequence, last_output, h, c)``: the outputs of every step in
    processing order (batch, timesteps, units), the last output, and the
    final states.  Computes in the dtype of ``kernel``.
    """
    dtype = np.asarray(kernel).dtype
    x = np.asarray(x, dtype)
    batch, timesteps, _ = x.shape
    units = recurrent_kernel.shape[0]
    act, rec_act = FUNCTIONS[activation], FUNCTIONS[recurrent_activation]
    bias = np.zeros(4 * units, dtype) if bias is None else bias
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
            z = x[:, t] @ kernel + h @ recurrent_kernel + bias
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
