"""int8 inference: the int8 weights, the exact integer arithmetic that the
kernel and the NumPy reference share, their file entries and the choice of
kernel (``fastlstm.quantize_dynamic``, in models.py, builds the layers).

The scheme (one definition for every instruction set, so the int8 products
are the same integers everywhere):

- **Weights**, per output column j (one unit of one gate): symmetric int8
  ``q = rint(w / s_j)`` in [-127, 127], ``s_j = max_k |w[k, j]| / 127``
  (float32).  -128 is never used, so ``-q`` is always representable.
- **Activations**, per row and step (each input row ``x[b, t]`` and each
  ``h[b]`` before every step): symmetric int8 ``q = rint(v * (127 / m))``,
  ``s = m / 127`` with ``m = max |v|`` over the row (float32 operations,
  rint rounding half to even).  A row of zeros has ``s = 0``; a row with a
  NaN or an infinity gets ``s = NaN`` (int8 cannot hold it, and NaN in,
  NaN out is what the float path gives).
- **Products** in exact int32: ``acc[b, j] = sum_k q_act[b, k] * q_w[k, j]``
  (the kernel feeds ``q_act + 128`` as unsigned bytes to vpdpbusd and starts
  the accumulator at ``-128 * sum_k q_w[k, j]``; the result is the same
  integer).
- **Gates** in float32, in this order of roundings, no fused multiply-add:
  ``p = bias + float(acc_x) * (s_x * s_kernel)``, then
  ``z = p + float(acc_h) * (s_h * s_recurrent)``; activations and the cell
  update as in the float32 layer.

Why symmetric int8 activations rather than torch's asymmetric 7-bit uint8:
h lies in (-1, 1) and standardised inputs are centred, so a zero point buys
nothing and would cost a per-row correction; 8 bits instead of 7 halve the
activations' rounding error; and with VNNI's vpdpbusd (4 byte products
summed straight into int32) nothing saturates.  The int16 saturation of
vpmaddubsw is why FBGEMM (torch) keeps activations to 7 bits; CPUs without
VNNI compute the same exact integers here with vpmaddwd on the even and odd
bytes instead.

Error bound of one step (used by the tests): with ``e_a = s_a / 2`` the
rounding error of an activation row and ``e_j = s_j / 2`` of column j,
``|z_int8 - z_float| <= e_x |K_j|_1 + e_K,j |x|_1 + n_in e_x e_K,j``
plus the same terms for h and the recurrent kernel.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _kernel
from ._typing import Array

# int32 accumulators hold sum_k q_a q_w exactly while n * 127 * 127 < 2**31,
# and the offset form (q_a + 128) * q_w, which vpdpbusd computes, while
# n * 255 * 127 < 2**31 (it wraps beyond, and the final sum is still exact,
# but stay clear of relying on that).
MAX_PRODUCT_LENGTH = (2**31 - 1) // (255 * 127)   # 66,306 inputs or units


@dataclass(frozen=True)
class Int8Weights:
    """One LSTM layer's weights as int8 with float32 column scales.

    Attributes
    ----------
    kernel : int8 array (input_dim, 4*units)
    kernel_scale : float32 array (4*units,)
    recurrent_kernel : int8 array (units, 4*units)
    recurrent_scale : float32 array (4*units,)
    bias : float32 array (4*units,)
        Kept in float32: it is added to the dequantised product.

    Gate blocks in Keras's order i, f, c, o.  ``kernel[k, j] *
    kernel_scale[j]`` is the weight the layer computes with.
    """

    kernel: Array
    kernel_scale: Array
    recurrent_kernel: Array
    recurrent_scale: Array
    bias: Array

    def dequantized(self) -> list[Array]:
        """``[kernel, recurrent_kernel, bias]`` in float32, the values the
        int8 numbers stand for."""
        return [self.kernel * self.kernel_scale, self.recurrent_kernel * self.recurrent_scale,
                self.bias.copy()]

    def arrays(self) -> dict[str, Array]:
        """The five arrays by name (the names used in saved files)."""
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = ("kernel", "kernel_scale", "recurrent_kernel", "recurrent_scale", "bias")


def quantize_columns(w: Array) -> tuple[Array, Array]:
    """``w (n, m)`` → ``(q int8 (n, m), scale float32 (m,))``, per column
    symmetric: ``q = rint(w / scale)`` in [-127, 127], ``scale = max|w| / 127``.

    Examples
    --------
    >>> import numpy as np
    >>> q, s = quantize_columns(np.array([[1.0, -0.5], [-0.25, 0.1]], np.float32))
    >>> q.tolist(), s.tolist() == [np.float32(1 / 127), np.float32(0.5 / 127)]
    ([[127, -127], [-32, 25]], True)
    """
    w = np.asarray(w, np.float32)
    if not np.isfinite(w).all():
        raise ValueError("quantize_dynamic: the weights hold NaN or infinity, "
                         "which int8 cannot represent")
    scale = np.max(np.abs(w), axis=0) / np.float32(127)
    safe = np.where(scale > 0, scale, np.float32(1))
    q = np.clip(np.rint(w / safe), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def quantize_rows(v: Array) -> tuple[Array, Array]:
    """Dynamic quantization of activation rows, bit for bit as the kernel
    does it: ``v (..., n)`` float32 → ``(q int8 (..., n), scale float32 (...))``.

    ``scale = m / 127`` and ``q = rint(v * (127 / m))`` with ``m = max|v|`` of
    the row; ``scale = 0`` (and q = 0) for a zero row, NaN (and q = 0) for a
    row holding NaN or an infinity.

    Examples
    --------
    >>> import numpy as np
    >>> q, s = quantize_rows(np.array([[0.5, -1.0, 0.25], [0, 0, 0]], np.float32))
    >>> q.tolist(), s.tolist() == [np.float32(1 / 127), 0.0]
    ([[64, -127, 32], [0, 0, 0]], True)
    """
    v = np.asarray(v, np.float32)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        m = np.max(np.abs(v), axis=-1, initial=np.float32(0))
        finite = np.isfinite(m)
        scale = np.where(finite, m / np.float32(127), np.float32(np.nan)).astype(np.float32)
        inverse = np.where(finite & (m > 0), np.float32(127) / m, np.float32(0))
        q = np.rint(v * inverse[..., None].astype(np.float32))
    q = np.where(finite[..., None], np.clip(q, -127, 127), 0).astype(np.int8)
    return q, scale


def quantize_weights(kernel: Array, recurrent_kernel: Array, bias: Array | None) -> Int8Weights:
    """Per-column int8 weights of one layer (``bias`` None: zeros)."""
    for array, name in ((kernel, "kernel"), (recurrent_kernel, "recurrent_kernel")):
        if array.shape[0] > MAX_PRODUCT_LENGTH:
            raise ValueError(
                f"quantize_dynamic: int8 products add at most {MAX_PRODUCT_LENGTH} terms "
                f"in int32, got a {name} with {array.shape[0]} rows")
    kq, ks = quantize_columns(kernel)
    rq, rs = quantize_columns(recurrent_kernel)
    b = (np.zeros(kernel.shape[1], np.float32) if bias is None
         else np.asarray(bias, np.float32).copy())
    return _frozen(Int8Weights(kq, ks, rq, rs, b))


def _frozen(weights: Int8Weights) -> Int8Weights:
    for array in weights.arrays().values():
        array.flags.writeable = False
    return weights


def gates(x: Array, h: Array, weights: Int8Weights) -> Array:
    """Pre-activation gates ``z (B, 4U)`` of one step from ``x (B, I)`` and
    ``h (B, U)``, computed exactly as the kernel does (see the module
    docstring): the oracle for the kernel's products."""
    qx, sx = quantize_rows(x)
    qh, sh = quantize_rows(h)
    acc_x = qx.astype(np.int64) @ weights.kernel.astype(np.int64)
    acc_h = qh.astype(np.int64) @ weights.recurrent_kernel.astype(np.int64)
    # Exact in int32 (|acc| <= n * 127 * 127 < 2**31, see MAX_PRODUCT_LENGTH).
    acc_x, acc_h = acc_x.astype(np.int32), acc_h.astype(np.int32)
    with np.errstate(invalid="ignore", over="ignore"):
        projection = weights.bias + acc_x.astype(np.float32) * (
            sx[:, None] * weights.kernel_scale[None, :])
        z: Array = projection + acc_h.astype(np.float32) * (
            sh[:, None] * weights.recurrent_scale[None, :])
    return z


def step_error_bound(x: Array, h: Array, float_weights: list[Array],
                     weights: Int8Weights) -> Array:
    """Largest possible ``|z_int8 - z_float| (B, 4U)`` of one step's gates
    from the rounding of the activations (half their step) and of the
    weights (half a column's step, or the actual rounding when that is
    smaller), the module docstring's bound; float32 rounding not included."""
    bound = np.zeros((x.shape[0], weights.bias.shape[0]), np.float64)
    for v, w, wq, ws in ((x, float_weights[0], weights.kernel, weights.kernel_scale),
                         (h, float_weights[1], weights.recurrent_kernel,
                          weights.recurrent_scale)):
        v = np.asarray(v, np.float64)
        _, sv = quantize_rows(v.astype(np.float32))
        e_v = sv.astype(np.float64)[:, None] / 2                     # (B, 1)
        e_w = np.abs(wq * ws.astype(np.float64) - w)                 # (n, 4U), exact error
        w_hat = np.abs(wq * ws.astype(np.float64))
        # v_hat w_hat - v w = (v_hat - v) w_hat + v (w_hat - w)
        bound += e_v * w_hat.sum(axis=0) + np.abs(v) @ e_w
    return bound


# ------------------------------------------------------------------ files
def lstm_layers(model: Any) -> Iterator[Any]:
    """The LSTMs of a fastlstm layer or stack, in ``get_weights()`` order
    (by their attributes, so that this module needs no layer class)."""
    if hasattr(model, "int8_weights"):              # an LSTM
        yield model
    elif hasattr(model, "forward_layer"):           # a Bidirectional
        yield model.forward_layer
        yield model.backward_layer
    for layer in getattr(model, "layers", ()):      # a Sequential or an imported model
        yield from lstm_layers(layer)
    if hasattr(model, "takes_mask"):                # an imported model's LSTM/Bidirectional
        yield from lstm_layers(getattr(model, "layer", None))


def file_entries(model: Any) -> dict[str, Array]:
    """The int8 arrays of ``model``'s int8 LSTMs for its ``.npz``:
    ``int8_{n}_{name}`` for the n-th LSTM of ``lstm_layers``."""
    entries = {}
    for n, layer in enumerate(lstm_layers(model)):
        if layer.int8_weights is not None:
            for name, array in layer.int8_weights.arrays().items():
                entries[f"int8_{n}_{name}"] = array
    return entries


def restore(model: Any, entries: dict[str, Array], path: object) -> None:
    """Give ``model``'s LSTMs the int8 weights that ``file_entries`` wrote
    (read back as ``entries``), checking every array: files are untrusted."""
    stored = set(entries)
    for n, layer in enumerate(lstm_layers(model)):
        names = {f"int8_{n}_{field}" for field in _FIELDS}
        present = names & stored
        stored -= present
        if not present:
            continue
        if present != names:
            raise ValueError(f"{path}: LSTM {n} has only some of its int8 arrays "
                             f"({sorted(present)}); expected {sorted(names)}")
        if not layer.built or layer.dtype != np.float32:
            raise ValueError(f"{path}: int8 weights for LSTM {n}, which is not a built "
                             f"float32 layer")
        units, input_dim = layer.units, layer.input_dim
        shapes = {"kernel": ((input_dim, 4 * units), np.int8),
                  "kernel_scale": ((4 * units,), np.float32),
                  "recurrent_kernel": ((units, 4 * units), np.int8),
                  "recurrent_scale": ((4 * units,), np.float32),
                  "bias": ((4 * units,), np.float32)}
        arrays = {}
        for field, (shape, dtype) in shapes.items():
            array = entries[f"int8_{n}_{field}"]
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(
                    f"{path}: int8_{n}_{field} must be {np.dtype(dtype).name} of shape "
                    f"{shape}, got {array.dtype.name} of shape {array.shape}")
            if dtype == np.int8 and array.size and array.min() < -127:
                raise ValueError(f"{path}: int8_{n}_{field} holds -128 (the range is "
                                 f"[-127, 127])")
            if field.endswith("scale") and not (np.isfinite(array).all()
                                                and (array >= 0).all()):
                raise ValueError(f"{path}: int8_{n}_{field} must be finite and >= 0")
            arrays[field] = np.array(array)
        layer._set_int8(_frozen(Int8Weights(**arrays)))
    if stored:
        raise ValueError(f"{path}: int8 arrays for LSTMs the model does not have: "
                         f"{sorted(stored)[:5]}")


# ------------------------------------------------------------------ calls
# Smallest gate product per row and step, 4 * units * (input_dim + units)
# multiply-adds, for which the int8 kernel beats the float32 kernel.
# Measured at 1 thread (CPU time, 2-core shared machine), int8 / float32:
# with VNNI (avx512-vnni) 1664: 0.81-0.88x, 5376: 0.90-1.09x, 8192: 1.24x,
# 12288: 1.15x, 21504: 1.55x, (32,100,64,256): 2.8x; without VNNI (the
# same sums by vpmaddwd, as many instructions as float32's FMAs) 0.82x at
# 21504, 0.93x at 98304, 1.03x at 327680; the portable int8 C is faster
# than the portable float C everywhere measured (1.2-1.75x).  amx runs the
# products of small layers on avx512-vnni's tiles (tiles_int8_amx.h): the
# VNNI threshold.
INT8_MIN_PRODUCT = {"vnni": 8192, "no vnni": 262144, "portable": 0}


def prefers_int8(input_dim: int | None, units: int) -> bool:
    """Whether an int8 layer of this shape runs the int8 kernel of the
    current instruction set; else the float32 kernel on the dequantised
    weights computes it (faster there, and closer to float)."""
    name = _kernel.int8_kernel()
    kind = ("portable" if name == "portable" else "vnni" if "vnni" in name or name == "amx"
            else "no vnni")
    return 4 * units * ((input_dim or 0) + units) >= INT8_MIN_PRODUCT[kind]


def pack(weights: Int8Weights) -> Any:
    """``weights`` in the layout of the current instruction set's int8 kernel."""
    return _kernel.pack_int8(weights.kernel, weights.kernel_scale, weights.recurrent_kernel,
                             weights.recurrent_scale, weights.bias)
