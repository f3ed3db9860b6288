"""NumPy forms of the Keras 3 layers that surround LSTMs in a model.

Each class takes the layer's Keras config (``layer.get_config()``, or the
``config`` entry of a saved model) and computes, at inference, what the
layer computes in Keras.  LSTM and Bidirectional run on fastlstm's kernel
(``fastlstm.LSTM``, ``fastlstm.Bidirectional``); everything else is a few
NumPy operations over whole arrays.

Every layer has the same small interface, used by ``fastlstm.keras_model``:

- ``weight_shapes(input_shapes)``: the shapes of its weights, in Keras's
  order, for the shapes of its inputs (None for an unknown entry), so that a
  file's arrays are checked before they are read;
- ``set_weights(arrays)`` and ``weights``;
- ``call(inputs, mask=None, **state)``;
- ``output_shape(input_shapes)`` and ``compute_mask(inputs, mask)`` (Keras's
  ``compute_mask``; layers that do not support masking drop the mask);
- ``count_params()``.

Masks follow Keras 3: ``supports_masking`` layers pass the mask on
unchanged (Dense, Activation, the dropout and noise layers,
TimeDistributed, the normalizations); Embedding(mask_zero) and Masking make
one; LSTM and Bidirectional consume it and keep it only with
return_sequences; Concatenate and Add/Multiply combine the masks of their
inputs; GlobalAveragePooling1D averages over the unmasked steps; the others
(Flatten, Reshape, RepeatVector, Conv1D, the pooling layers,
GlobalMaxPooling1D) drop it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import activations, keras_activations, keras_io
from .bidirectional import Bidirectional as FastBidirectional
from .layer import LSTM as FastLSTM

Array = NDArray[Any]
Shape = tuple[int | None, ...]
Config = dict[str, Any]


def _get(config: Config, key: str, where: str, kinds: type | tuple[type, ...],
         default: Any = ..., allow_none: bool = False) -> Any:
    """``config[key]`` checked to be of ``kinds``; a missing key takes ``default``."""
    if key not in config:
        if default is ...:
            raise ValueError(f"{where}: the config has no {key!r} entry")
        return default
    value = config[key]
    if value is None and allow_none:
        return None
    if isinstance(value, bool) and kinds in (int, (int, float)):
        raise TypeError(f"{where}: config {key!r} must be {_kind_name(kinds)}, got {value!r}")
    if not isinstance(value, kinds):
        raise TypeError(f"{where}: config {key!r} must be {_kind_name(kinds)}, got {value!r}")
    return value


def _kind_name(kinds: type | tuple[type, ...]) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(k.__name__ for k in kinds)


def _positive(config: Config, key: str, where: str, default: Any = ...) -> int:
    value = _get(config, key, where, int, default)
    if value <= 0:
        raise ValueError(f"{where}: config {key!r} must be a positive int, got {value!r}")
    return int(value)


def _one_int(config: Config, key: str, where: str, default: Any = ...) -> int:
    """Keras writes 1-D sizes as an int or a one-entry list."""
    value = _get(config, key, where, (int, list, tuple), default)
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ValueError(f"{where}: config {key!r} must hold one int, got {value!r}")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{where}: config {key!r} must be a positive int, got {value!r}")
    return value


def _choice(config: Config, key: str, where: str, choices: Sequence[Any], default: Any) -> Any:
    value = config.get(key, default)
    if value not in choices:
        raise ValueError(f"{where}: config {key!r} must be one of {list(choices)}, "
                         f"got {value!r}")
    return value


def compute_dtype(config: Config, where: str) -> np.dtype[Any]:
    """The dtype a layer computes in: float64 for a float64 policy, else
    float32 (mixed_float16 / mixed_bfloat16 keep float32 variables, which
    fastlstm computes with in float32)."""
    value = config.get("dtype")
    if isinstance(value, dict):      # Keras 3: a DTypePolicy
        inner = value.get("config")
        value = inner.get("name") if isinstance(inner, dict) else None
    if value is None:
        return np.dtype(np.float32)
    if not isinstance(value, str):
        raise TypeError(f"{where}: config 'dtype' must be a dtype name, got {value!r}")
    if value == "float64":
        return np.dtype(np.float64)
    if value in ("float32", "mixed_float16", "mixed_bfloat16", "float16", "bfloat16"):
        return np.dtype(np.float32)
    raise ValueError(f"{where}: config 'dtype' must be a float dtype policy (float32, "
                     f"float64, mixed_float16, mixed_bfloat16), got {value!r}")


class Layer:
    """The shared parts: name, config, weights."""

    # Keras's class name (set by the model: several Keras classes share one
    # class here, such as the dropout layers).
    class_name = ""
    # Keras's supports_masking: the layer passes (or makes) a mask.
    supports_masking = False
    # The layer's call reads the mask of its input(s).
    takes_mask = False

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        self.where = f"layer {name!r} ({type(self).__name__})"
        self.dtype = compute_dtype(config, self.where)
        self.weights: list[Array] = []

    def weight_shapes(self, input_shapes: list[Shape]) -> list[Shape]:
        return []

    def set_weights(self, arrays: Sequence[Array]) -> None:
        shapes = self.weight_shapes(self.input_shapes)
        if len(arrays) != len(shapes):
            raise ValueError(f"{self.where} has {len(shapes)} weights, got {len(arrays)}")
        checked = []
        for index, (array, shape) in enumerate(zip(arrays, shapes, strict=True)):
            array = np.asarray(array)
            if array.ndim != len(shape) or any(
                    e is not None and e != a for e, a in zip(shape, array.shape, strict=True)):
                raise ValueError(f"{self.where}: weight {index} must have shape "
                                 f"{_show(shape)}, got {array.shape}")
            if array.dtype.kind not in "fiub":
                raise TypeError(f"{self.where}: weight {index} must be numeric, "
                                f"got dtype {array.dtype}")
            checked.append(np.array(array, dtype=self.dtype))
        self.weights = checked

    # The input shapes the layer was placed on; set by the model.
    input_shapes: list[Shape] = []

    def count_params(self) -> int:
        return sum(int(w.size) for w in self.weights)

    def non_trainable_params(self, input_shapes: list[Shape]) -> int:
        """How many of the parameters Keras counts as non-trainable."""
        return 0

    def output_shape(self, input_shapes: list[Shape]) -> Shape | list[Shape]:
        return input_shapes[0]

    def compute_mask(self, inputs: list[Array], mask: Any) -> Any:
        # Keras: supports_masking layers pass the mask of their first input on.
        if not self.supports_masking:
            return None
        return mask[0] if isinstance(mask, list) else mask

    def call(self, inputs: list[Array], mask: Any = None) -> Array | list[Array]:
        raise NotImplementedError

    def cast(self, x: Array) -> Array:
        return np.asarray(x, dtype=self.dtype)


def _show(shape: Shape) -> str:
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + (
        ",)" if len(shape) == 1 else ")")


# ------------------------------------------------------------------ layers
class InputLayer(Layer):
    def __init__(self, name: str, config: Config) -> None:
        super().__init__(name, {k: v for k, v in config.items() if k != "dtype"})
        shape = config.get("batch_shape", config.get("batch_input_shape"))
        if not isinstance(shape, (list, tuple)) or not shape or not all(
                s is None or (isinstance(s, int) and not isinstance(s, bool) and s >= 0)
                for s in shape):
            raise ValueError(f"{self.where}: config 'batch_shape' must be a list of sizes "
                             f"(None for unknown), got {shape!r}")
        self.batch_shape: Shape = (None,) + tuple(shape[1:])
        dtype = config.get("dtype") or "float32"
        if isinstance(dtype, dict):
            dtype = (dtype.get("config") or {}).get("name", "float32")
        self.input_dtype = str(dtype)

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        return self.batch_shape


class Identity(Layer):
    """Dropout, SpatialDropout1D, GaussianNoise, GaussianDropout: the
    identity at inference."""

    supports_masking = True

    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        return inputs[0]


class Activation(Layer):
    supports_masking = True

    def __init__(self, name: str, config: Config) -> None:
        super().__init__(name, config)
        self.function = keras_activations.function(config.get("activation"), self.where)

    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        return self.function(self.cast(inputs[0]))


class Dense(Layer):
    supports_masking = True

    def __init__(self, name: str, config: Config) -> None:
        super().__init__(name, config)
        self.units = _positive(config, "units", self.where)
        self.use_bias = bool(_get(config, "use_bias", self.where, bool, True))
        self.function = keras_activations.function(config.get("activation"), self.where)
        if config.get("lora_rank"):
            raise ValueError(f"{self.where}: LoRA-enabled Dense layers (lora_rank="
                             f"{config['lora_rank']!r}) are not supported")

    def weight_shapes(self, input_shapes: list[Shape]) -> list[Shape]:
        shapes: list[Shape] = [(input_shapes[0][-1], self.units)]
        return shapes + [(self.units,)] if self.use_bias else shapes

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        return input_shapes[0][:-1] + (self.units,)

    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        y = self.cast(inputs[0]) @ self.weights[0]
        if self.use_bias:
            y += self.weights[1]
        return self.function(y)


class TimeDistributed(Layer):
    """TimeDistributed(Dense): Dense acts on the last axis, so applying it to
    every step at once is the same."""

    supports_masking = True

    def __init__(self, name: str, config: Config) -> None:
        super().__init__(name, config)
        inner = _get(config, "layer", self.where, dict)
        if inner.get("class_name") != "Dense":
            raise ValueError(f"{self.where}: fastlstm supports TimeDistributed(Dense) only, "
                             f"got TimeDistributed({inner.get('class_name')!r})")
        inner_config = _get(inner, "config", self.where, dict)
        self.inner = Dense(str(inner_config.get("name", name)), inner_config)

    def weight_shapes(self, input_shapes: list[Shape]) -> list[Shape]:
        return self.inner.weight_shapes(input_shapes)

    def set_weights(self, arrays: Sequence[Array]) -> None:
        self.inner.input_shapes = self.input_shapes
        self.inner.set_weights(arrays)
        self.weights = self.inner.weights

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        return self.inner.output_shape(input_shapes)

    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        return self.inner.call(inputs)


class Embedding(Layer):
    def __init__(self, name: str, config: Config) -> None:
        super().__init__(name, config)
        self.input_dim = _positive(config, "input_dim", self.where)
        self.output_dim = _positive(config, "output_dim", self.where)
        self.mask_zero = bool(_get(config, "mask_zero", self.where, bool, False))
        if config.get("quantization_config") or config.get("lora_rank"):
            raise ValueError(f"{self.where}: quantized or LoRA embeddings are not supported")

    def weight_shapes(self, input_shapes: list[Shape]) -> list[Shape]:
        return [(self.input_dim, self.output_dim)]

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        return input_shapes[0] + (self.output_dim,)

    def compute_mask(self, inputs: list[Array], mask: Any) -> Any:
        return np.not_equal(inputs[0], 0) if self.mask_zero else None

    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        # Keras casts the indices to int32 (truncating floats).
        indices = np.asarray(inputs[0])
        if indices.dtype.kind == "f":
            if not np.isfinite(indices).all():
                raise ValueError(f"{self.where}: the input holds NaN or infinite indices")
            indices = np.trunc(indices)
        indices = indices.astype(np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.input_dim):
            raise ValueError(f"{self.where}: indices must be in [0, {self.input_dim}), got "
                             f"values from {indices.min()} to {indices.max()}")
        return np.asarray(self.weights[0][indices])


class Masking(Layer):
    def __init__(self, name: str, config: Config) -> None:
        super().__init__(name, config)
        self.mask_value = _get(config, "mask_value", self.where, (int, float), 0.0)

    def compute_mask(self, inputs: list[Array], mask: Any) -> Array:
        return np.asarray(np.any(self.cast(inputs[0]) != self.mask_value, axis=-1))

    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        x = self.cast(inputs[0])
        return np.where(np.any(x != self.mask_value, axis=-1, keepdims=True), x, 0).astype(
            self.dtype, copy=False)


class RepeatVector(Layer):
    def __init__(self, name: str, config: Config) -> None:
        super().__init__(name, config)
        self.n = _positive(config, "n", self.where)

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        batch, features = input_shapes[0]
        return (batch, self.n, features)

    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        x = inputs[0]
        return np.ascontiguousarray(np.broadcast_to(x[:, None, :], (x.shape[0], self.n,
                                                                    x.shape[1])))


class Flatten(Layer):
    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        rest = input_shapes[0][1:]
        size = None if None in rest else math.prod(s for s in rest if s is not None)
        return (input_shapes[0][0], size)

    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        x = inputs[0]
        return x.reshape(x.shape[0], -1)


class Reshape(Layer):
    def __init__(self, name: str, config: Config) -> None:
        super().__init__(name, config)
        target = _get(config, "target_shape", self.where, (list, tuple))
        if not all(isinstance(s, int) and not isinstance(s, bool) and (s > 0 or s == -1)
                   for s in target) or list(target).count(-1) > 1:
            raise ValueError(f"{self.where}: config 'target_shape' must hold positive ints "
                             f"and at most one -1, got {target!r}")
        self.target = tuple(target)

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        if -1 not in self.target:
            return (input_shapes[0][0],) + self.target
        rest = input_shapes[0][1:]
        known = math.prod(s for s in self.target if s != -1)
        size = None if None in rest else math.prod(rest) // known   # type: ignore[arg-type]
        return (input_shapes[0][0],) + tuple(size if s == -1 else s for s in self.target)

    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        x = inputs[0]
        try:
            return x.reshape((x.shape[0],) + self.target)
        except ValueError:
            raise ValueError(f"{self.where}: cannot reshape an input of shape {x.shape} "
                             f"to (batch,) + {self.target}") from None


class _Merge(Layer):
    supports_masking = True

    def compute_mask(self, inputs: list[Array], mask: Any) -> Any:
        # Keras's Merge.compute_mask: a mask only when every input has one.
        if not isinstance(mask, list) or any(m is None for m in mask):
            return None
        return np.logical_or.reduce([np.asarray(m, bool) for m in mask])


class Add(_Merge):
    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        result = self.cast(inputs[0]).copy()
        for x in inputs[1:]:
            result = result + self.cast(x)
        return np.asarray(result)


class Multiply(_Merge):
    takes_mask = True

    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        # Keras's Multiply: a masked input counts as 1 at its masked steps;
        # when every input has a mask, steps masked in all of them are 0.
        masks = mask if isinstance(mask, list) else [None] * len(inputs)
        result = None
        keep = None
        for x, m in zip(inputs, masks, strict=True):
            x = self.cast(x)
            if m is not None:
                m = np.broadcast_to(np.asarray(m, bool)[..., None], x.shape)
                x = np.where(m, x, 1).astype(self.dtype, copy=False)
                keep = m if keep is None else keep | m
            result = x if result is None else result * x
        assert result is not None
        if all(m is not None for m in masks) and keep is not None:
            result = np.where(keep, result, 0).astype(self.dtype, copy=False)
        return result


class Concatenate(Layer):
    supports_masking = True

    def __init__(self, name: str, config: Config) -> None:
        super().__init__(name, config)
        self.axis = _get(config, "axis", self.where, int, -1)

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        shape = list(input_shapes[0])
        for other in input_shapes[1:]:
            a, b = shape[self.axis], other[self.axis]
            shape[self.axis] = None if a is None or b is None else a + b
        return tuple(shape)

    def compute_mask(self, inputs: list[Array], mask: Any) -> Any:
        # Keras's Concatenate.compute_mask: unmasked inputs count as all
        # True, the masks are broadcast to the inputs, concatenated and
        # reduced with any() over the last axis.
        if not isinstance(mask, list) or all(m is None for m in mask):
            return None
        full = []
        for x, m in zip(inputs, mask, strict=True):
            if m is None:
                full.append(np.ones(np.shape(x), bool))
            else:
                m = np.asarray(m, bool)
                while m.ndim < np.ndim(x):
                    m = m[..., None]
                full.append(np.broadcast_to(m, np.shape(x)))
        return np.any(np.concatenate(full, axis=self.axis), axis=-1)

    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        return np.concatenate([self.cast(x) for x in inputs], axis=self.axis)


class _GlobalPooling1D(Layer):
    def __init__(self, name: str, config: Config) -> None:
        super().__init__(name, config)
        fmt = _choice(config, "data_format", self.where, ("channels_last", "channels_first"),
                      "channels_last")
        self.steps_axis = 1 if fmt == "channels_last" else 2
        self.keepdims = bool(_get(config, "keepdims", self.where, bool, False))

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        shape = list(input_shapes[0])
        if self.keepdims:
            shape[self.steps_axis] = 1
        else:
            del shape[self.steps_axis]
        return tuple(shape)

    def compute_mask(self, inputs: list[Array], mask: Any) -> None:
        return None


class GlobalAveragePooling1D(_GlobalPooling1D):
    supports_masking = True
    takes_mask = True

    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        x = self.cast(inputs[0])
        if mask is None:
            return np.asarray(x.mean(axis=self.steps_axis, keepdims=self.keepdims))
        # Keras: the mean over the unmasked steps (0/0 = NaN for a row
        # with none, as in Keras).
        keep = np.expand_dims(np.asarray(mask, bool), 2 if self.steps_axis == 1 else 1)
        total = np.where(keep, x, 0).sum(axis=self.steps_axis, keepdims=self.keepdims)
        count = keep.astype(self.dtype).sum(axis=self.steps_axis, keepdims=self.keepdims)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray((total / count).astype(self.dtype, copy=False))


class GlobalMaxPooling1D(_GlobalPooling1D):
    # Keras 3's GlobalMaxPooling1D takes no mask: padded steps count.
    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        return np.asarray(self.cast(inputs[0]).max(axis=self.steps_axis, keepdims=self.keepdims))


class BatchNormalization(Layer):
    supports_masking = True

    def __init__(self, name: str, config: Config) -> None:
        super().__init__(name, config)
        self.axis = _get(config, "axis", self.where, (int, list), -1)
        if isinstance(self.axis, list):
            if len(self.axis) != 1:
                raise ValueError(f"{self.where}: config 'axis' must be one axis, "
                                 f"got {self.axis!r}")
            self.axis = self.axis[0]
        self.epsilon = float(_get(config, "epsilon", self.where, (int, float), 1e-3))
        self.center = bool(_get(config, "center", self.where, bool, True))
        self.scale = bool(_get(config, "scale", self.where, bool, True))
        if config.get("renorm"):
            raise ValueError(f"{self.where}: renorm=True is not supported")

    def weight_shapes(self, input_shapes: list[Shape]) -> list[Shape]:
        size = input_shapes[0][self.axis]
        return [(size,)] * (int(self.scale) + int(self.center) + 2)

    def non_trainable_params(self, input_shapes: list[Shape]) -> int:
        size = input_shapes[0][self.axis]      # the moving mean and variance
        return 0 if size is None else 2 * size

    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        x = self.cast(inputs[0])
        shape = [1] * x.ndim
        shape[self.axis] = x.shape[self.axis]
        weights = list(self.weights)
        gamma = weights.pop(0) if self.scale else None
        beta = weights.pop(0) if self.center else None
        mean, variance = weights
        inv = 1 / np.sqrt(variance + self.dtype.type(self.epsilon))
        if gamma is not None:
            inv = inv * gamma
        offset = -mean * inv
        if beta is not None:
            offset = offset + beta
        return np.asarray(x * inv.reshape(shape) + offset.reshape(shape))


class LayerNormalization(Layer):
    supports_masking = True

    def __init__(self, name: str, config: Config) -> None:
        super().__init__(name, config)
        axis = _get(config, "axis", self.where, (int, list), -1)
        self.axes = tuple(axis) if isinstance(axis, list) else (axis,)
        if not self.axes or not all(isinstance(a, int) and not isinstance(a, bool)
                                    for a in self.axes):
            raise ValueError(f"{self.where}: config 'axis' must be ints, got {axis!r}")
        self.epsilon = float(_get(config, "epsilon", self.where, (int, float), 1e-3))
        self.center = bool(_get(config, "center", self.where, bool, True))
        self.scale = bool(_get(config, "scale", self.where, bool, True))
        self.rms_scaling = bool(_get(config, "rms_scaling", self.where, bool, False))

    def weight_shapes(self, input_shapes: list[Shape]) -> list[Shape]:
        shape = tuple(input_shapes[0][a] for a in self.axes)
        return [shape] * (int(self.scale) + int(self.center and not self.rms_scaling))

    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        x = self.cast(inputs[0])
        axes = tuple(a % x.ndim for a in self.axes)
        shape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
        weights = list(self.weights)
        gamma = weights.pop(0).reshape(shape) if self.scale else None
        epsilon = self.dtype.type(self.epsilon)
        if self.rms_scaling:
            # Keras 3's (deprecated) rms_scaling divides by the standard
            # deviation, not the root mean square: x * rsqrt(var + eps) * gamma.
            y = x / np.sqrt(np.var(x, axis=axes, keepdims=True) + epsilon)
            return np.asarray(y * gamma if gamma is not None else y)
        beta = weights.pop(0).reshape(shape) if self.center else None
        mean = x.mean(axis=axes, keepdims=True)
        variance = np.square(x - mean).mean(axis=axes, keepdims=True)
        inv = 1 / np.sqrt(variance + epsilon)
        if gamma is not None:
            inv = inv * gamma
        offset = -mean * inv
        if beta is not None:
            offset = offset + beta
        return np.asarray(x * inv + offset)


def _padded_steps(x: Array, size: int, stride: int, dilation: int, padding: str,
                  fill: float) -> tuple[Array, int]:
    """``x`` (batch, steps, channels) padded as Keras pads for ``padding``,
    and the number of output steps."""
    steps = x.shape[1]
    span = (size - 1) * dilation + 1
    if padding == "causal":
        left, right = span - 1, 0
    elif padding == "same":
        out = -(-steps // stride)
        total = max((out - 1) * stride + span - steps, 0)
        left, right = total // 2, total - total // 2
    else:
        left = right = 0
    if left or right:
        x = np.pad(x, ((0, 0), (left, right), (0, 0)), constant_values=fill)
    return x, max((x.shape[1] - span) // stride + 1, 0)


def _window_reduce(x: Array, size: int, stride: int, count: int, ufunc: np.ufunc) -> Array:
    """``ufunc`` over each window of ``size`` steps (every ``stride``-th):
    ``size`` strided views combined in place, no gathered copy of the windows."""
    if count == 0:
        return np.zeros((x.shape[0], 0) + x.shape[2:], x.dtype)
    span = stride * (count - 1) + 1
    out = np.array(x[:, :span:stride])
    for k in range(1, size):
        ufunc(out, x[:, k:k + span:stride], out=out)
    return out


# The most bytes Conv1D's window buffer holds: an L2-sized block of rows,
# reused for every block of the batch.
_CONV_CHUNK_BYTES = 1 << 18


class Conv1D(Layer):
    def __init__(self, name: str, config: Config) -> None:
        super().__init__(name, config)
        self.filters = _positive(config, "filters", self.where)
        self.size = _one_int(config, "kernel_size", self.where)
        self.stride = _one_int(config, "strides", self.where, 1)
        self.dilation = _one_int(config, "dilation_rate", self.where, 1)
        self.groups = _positive(config, "groups", self.where, 1)
        self.padding = _choice(config, "padding", self.where, ("valid", "same", "causal"),
                               "valid")
        _choice(config, "data_format", self.where, ("channels_last",), "channels_last")
        if self.filters % self.groups:
            raise ValueError(f"{self.where}: filters={self.filters} is not a multiple of "
                             f"groups={self.groups}")
        self.use_bias = bool(_get(config, "use_bias", self.where, bool, True))
        self.function = keras_activations.function(config.get("activation"), self.where)

    def weight_shapes(self, input_shapes: list[Shape]) -> list[Shape]:
        channels = input_shapes[0][-1]
        per_group = None if channels is None else channels // self.groups
        shapes: list[Shape] = [(self.size, per_group, self.filters)]
        return shapes + [(self.filters,)] if self.use_bias else shapes

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        batch, steps, _ = input_shapes[0]
        if steps is not None:
            span = (self.size - 1) * self.dilation + 1
            if self.padding == "valid":
                steps = max((steps - span) // self.stride + 1, 0)
            else:
                steps = -(-steps // self.stride)
        return (batch, steps, self.filters)

    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        x = self.cast(inputs[0])
        kernel = self.weights[0]                     # (size, channels / groups, filters)
        x, count = _padded_steps(x, self.size, self.stride, self.dilation, self.padding, 0)
        batch, channels = x.shape[0], x.shape[2]
        per_group, out_group = kernel.shape[1], self.filters // self.groups
        # im2col a few batch items at a time: their windows as rows (items *
        # count, size, channels) in one buffer of at most _CONV_CHUNK_BYTES,
        # filled by one strided copy per kernel position, then one GEMM per
        # group straight into the output, whose rows then take the bias and
        # the activation.  The whole batch's windows at once (size times the
        # input) and the activation's full-size temporaries cost more in
        # fresh pages than in arithmetic: at batch 256 of the CNN-LSTM
        # benchmark (benchmarks/keras_models.py) this layer took 17 ms that
        # way on a 2-core Zen 3 VM, and 4.4 ms with the same memory reused.
        y = np.empty((batch, count, self.filters), x.dtype)
        window_floats = count * self.size * channels
        items = max(1, _CONV_CHUNK_BYTES // max(1, window_floats * x.itemsize))
        buffer = np.empty(min(items, batch) * window_floats, x.dtype)
        span = self.stride * (count - 1) + 1
        for first in range(0, batch if count else 0, items):
            part = x[first:first + items]
            columns = buffer[:len(part) * window_floats].reshape(
                len(part), count, self.size, channels)
            for k in range(self.size):
                start = k * self.dilation
                columns[:, :, k] = part[:, start:start + span:self.stride]
            rows = columns.reshape(len(part) * count, self.size, channels)
            out = y[first:first + items].reshape(len(part) * count, self.filters)
            for g in range(self.groups):
                np.matmul(rows[:, :, g * per_group:(g + 1) * per_group].reshape(len(rows), -1),
                          kernel[:, :, g * out_group:(g + 1) * out_group].reshape(-1, out_group),
                          out=out[:, g * out_group:(g + 1) * out_group])
            if self.use_bias:
                out += self.weights[1]
            out[...] = self.function(out)
        return y


class _Pooling1D(Layer):
    def __init__(self, name: str, config: Config) -> None:
        super().__init__(name, config)
        self.size = _one_int(config, "pool_size", self.where, 2)
        stride = config.get("strides")
        self.stride = self.size if stride is None else _one_int(config, "strides", self.where)
        self.padding = _choice(config, "padding", self.where, ("valid", "same"), "valid")
        _choice(config, "data_format", self.where, ("channels_last",), "channels_last")

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        batch, steps, channels = input_shapes[0]
        if steps is not None:
            steps = (max((steps - self.size) // self.stride + 1, 0) if self.padding == "valid"
                     else -(-steps // self.stride))
        return (batch, steps, channels)


class MaxPooling1D(_Pooling1D):
    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        x, count = _padded_steps(self.cast(inputs[0]), self.size, self.stride, 1,
                                 self.padding, -np.inf)
        return _window_reduce(x, self.size, self.stride, count, np.maximum)


class AveragePooling1D(_Pooling1D):
    def call(self, inputs: list[Array], mask: Any = None) -> Array:
        x = self.cast(inputs[0])
        # The mean over the real steps of each window: padding is not counted.
        ones = np.ones(x.shape[:2] + (1,), self.dtype)
        x, count = _padded_steps(x, self.size, self.stride, 1, self.padding, 0)
        ones, _ = _padded_steps(ones, self.size, self.stride, 1, self.padding, 0)
        total = _window_reduce(x, self.size, self.stride, count, np.add)
        return np.asarray(total / _window_reduce(ones, self.size, self.stride, count, np.add))


# ------------------------------------------------------- on fastlstm's kernel
def _with_dtype(value: Any, dtype: str) -> Any:
    """A config whose every dtype policy, at any depth, is ``dtype`` (the
    dtype the layer computes in)."""
    if isinstance(value, dict):
        return {k: dtype if k == "dtype" else _with_dtype(v, dtype) for k, v in value.items()}
    return value


def _check_kernel_activations(config: Config, where: str) -> None:
    for key in ("activation", "recurrent_activation"):
        name = config.get(key)
        if name is not None and name not in activations.FUNCTIONS:
            known = "is one of Keras's" if name in keras_activations.FUNCTIONS else "is not a"
            raise ValueError(
                f"{where}: {key}={name!r} {known} activations that fastlstm computes for "
                f"Dense, Conv1D and Activation layers, but its LSTM kernel computes only the "
                f"elementwise ones: {sorted(activations.FUNCTIONS)}")


class Recurrent(Layer):
    """LSTM and Bidirectional(LSTM), on ``fastlstm.LSTM`` / ``fastlstm.Bidirectional``."""

    supports_masking = True
    takes_mask = True

    def __init__(self, name: str, config: Config, bidirectional: bool) -> None:
        super().__init__(name, config)
        self.where = f"layer {name!r} ({'Bidirectional' if bidirectional else 'LSTM'})"
        clean = _with_dtype(keras_io.without_initializers(config), self.dtype.name)
        if bidirectional:
            for key in ("layer", "backward_layer"):
                inner = clean.get(key)
                if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
                    _check_kernel_activations(inner["config"], self.where)
        else:
            _check_kernel_activations(clean, self.where)
        try:
            self.layer: FastLSTM | FastBidirectional = (
                FastBidirectional.from_config(clean) if bidirectional
                else FastLSTM.from_config(clean))
        except KeyError as error:           # Bidirectional without a 'layer' entry
            raise ValueError(f"{self.where}: the config has no {error} entry") from None
        except (TypeError, ValueError) as error:
            raise type(error)(f"{self.where}: {error}") from None

    def _lstms(self) -> list[FastLSTM]:
        layer = self.layer
        if isinstance(layer, FastBidirectional):
            return [layer.forward_layer, layer.backward_layer]
        return [layer]

    def weight_shapes(self, input_shapes: list[Shape]) -> list[Shape]:
        features = input_shapes[0][-1]
        shapes: list[Shape] = []
        for lstm in self._lstms():
            units = lstm.units
            shapes += [(features, 4 * units), (units, 4 * units)]
            if lstm.use_bias:
                shapes.append((4 * units,))
        return shapes

    def set_weights(self, arrays: Sequence[Array]) -> None:
        super().set_weights(arrays)
        self.layer.set_weights(self.weights)

    def output_shape(self, input_shapes: list[Shape]) -> Shape | list[Shape]:
        return self.layer.compute_output_shape(input_shapes[0])

    def compute_mask(self, inputs: list[Array], mask: Any) -> Any:
        # Keras's RNN / Bidirectional compute_mask.
        if isinstance(mask, list):
            mask = mask[0]
        layer = self.layer
        outputs = 2 if getattr(layer, "merge_mode", "concat") is None else 1
        output_mask = [mask if layer.return_sequences else None] * outputs
        if layer.return_state:
            states = 4 if isinstance(layer, FastBidirectional) else 2
            return output_mask + [None] * states
        return output_mask[0] if outputs == 1 else output_mask

    def call(self, inputs: list[Array], mask: Any = None,
             initial_state: Sequence[Array] | None = None) -> Array | list[Array]:
        if isinstance(mask, list):
            mask = mask[0]
        return self.layer(inputs[0], mask=mask, initial_state=initial_state)


def _op(function: Any, *keys: str) -> Any:
    return function, keys


# The operations Keras 3 writes into functional configs beside the layers
# (to compute masks: Embedding(mask_zero) -> NotEqual, Masking -> NotEqual +
# Any, Concatenate's mask -> ExpandDims, ZerosLike, LogicalOr, Concatenate,
# Any), with the config keys each takes.
OPERATIONS: dict[str, tuple[Any, tuple[str, ...]]] = {
    "NotEqual": _op(np.not_equal), "Equal": _op(np.equal),
    "LogicalOr": _op(np.logical_or), "LogicalAnd": _op(np.logical_and),
    "LogicalNot": _op(np.logical_not),
    "Any": _op(lambda x, axis=None, keepdims=False: np.any(x, axis=axis, keepdims=keepdims),
               "axis", "keepdims"),
    "All": _op(lambda x, axis=None, keepdims=False: np.all(x, axis=axis, keepdims=keepdims),
               "axis", "keepdims"),
    "ExpandDims": _op(lambda x, axis: np.expand_dims(x, axis), "axis"),
    "Squeeze": _op(lambda x, axis=None: np.squeeze(x, axis), "axis"),
    "ZerosLike": _op(lambda x, dtype=None: np.zeros(np.shape(x), dtype or np.asarray(x).dtype),
                     "dtype"),
    "OnesLike": _op(lambda x, dtype=None: np.ones(np.shape(x), dtype or np.asarray(x).dtype),
                    "dtype"),
    "Concatenate": _op(lambda xs, axis=0: np.concatenate(xs, axis=axis), "axis"),
    "Cast": _op(lambda x, dtype: np.asarray(x).astype(dtype), "dtype"),
}
_OP_DTYPES = ("bool", "int32", "int64", "float32", "float64")


class Operation(Layer):
    """An operation node of a functional config (a NumPy function, no weights)."""

    def __init__(self, name: str, class_name: str, config: Config) -> None:
        self.name, self.config, self.weights = name, config, []
        self.class_name = class_name
        self.where = f"operation {name!r} ({class_name})"
        self.dtype = np.dtype(np.float32)
        function, keys = OPERATIONS[class_name]
        extra = sorted(set(config) - set(keys) - {"name"})
        if extra:
            raise ValueError(f"{self.where}: unsupported config keys {extra}")
        for key in keys:
            value = config.get(key)
            if key == "dtype" and value is not None and value not in _OP_DTYPES:
                raise ValueError(f"{self.where}: config 'dtype' must be one of "
                                 f"{list(_OP_DTYPES)}, got {value!r}")
            if key in ("axis", "keepdims") and value is not None and not isinstance(
                    value, (int, bool)):
                raise TypeError(f"{self.where}: config {key!r} must be an int, got {value!r}")
        self.function = function
        self.kwargs = {k: config[k] for k in keys if k in config}

    def call(self, inputs: list[Any], mask: Any = None) -> Array:
        try:
            return np.asarray(self.function(*inputs, **self.kwargs))
        except (ValueError, TypeError, IndexError) as error:   # np.AxisError is an IndexError
            raise ValueError(f"{self.where}: {error}") from None

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        # Only masks flow through operations; their shapes do not size weights.
        return input_shapes[0] if input_shapes else ()


LAYERS: dict[str, Any] = {
    "InputLayer": InputLayer, "Dense": Dense, "Activation": Activation,
    "Dropout": Identity, "SpatialDropout1D": Identity, "GaussianNoise": Identity,
    "GaussianDropout": Identity, "TimeDistributed": TimeDistributed,
    "Embedding": Embedding, "Masking": Masking, "RepeatVector": RepeatVector,
    "Flatten": Flatten, "Reshape": Reshape, "Concatenate": Concatenate, "Add": Add,
    "Multiply": Multiply, "GlobalAveragePooling1D": GlobalAveragePooling1D,
    "GlobalMaxPooling1D": GlobalMaxPooling1D, "BatchNormalization": BatchNormalization,
    "LayerNormalization": LayerNormalization, "Conv1D": Conv1D,
    "MaxPooling1D": MaxPooling1D, "AveragePooling1D": AveragePooling1D,
    "LSTM": lambda name, config: Recurrent(name, config, bidirectional=False),
    "Bidirectional": lambda name, config: Recurrent(name, config, bidirectional=True),
}
# Keras 2 / tf.keras names of the same layers.
ALIASES = {"MaxPool1D": "MaxPooling1D", "AvgPool1D": "AveragePooling1D",
           "GlobalAvgPool1D": "GlobalAveragePooling1D", "GlobalMaxPool1D": "GlobalMaxPooling1D",
           "Convolution1D": "Conv1D"}
