"""Input rules for the layer, in one place.

Every function returns fresh or read-only-safe arrays in the layout the
kernel wants, or raises a ValueError/TypeError that names the argument, what
was expected and what was given.
"""
import json
import numbers
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

if sys.platform != "win32":
    import resource

Array = NDArray[Any]

# Every dimension fits a 32-bit int: far past anything that fits in memory,
# and it keeps any product of two dimensions inside the kernel's ptrdiff_t
# index arithmetic.
_INT_MAX = 2**31 - 1
_FLOAT_DTYPES = {np.dtype(np.float32), np.dtype(np.float64)}


def layer_dtype(dtype: object) -> np.dtype[Any]:
    """The layer's compute dtype: float32 or float64."""
    resolved: np.dtype[Any] | None
    try:
        resolved = np.dtype(dtype)  # type: ignore[call-overload]  # any object may come in
    except TypeError:
        resolved = None
    if resolved is None or resolved not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return resolved


def positive_int(value: object, argument: str, limit: int = _INT_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument} must be a positive integer, got {value!r}")
    number = int(value)
    if not 0 < number <= limit:
        raise ValueError(f"{argument} must be a positive integer <= {limit}, got {value!r}")
    return number


def proj_size(value: object, units: int) -> int:
    """An LSTMP layer's ``proj_size`` as torch.nn.LSTM takes it: None or 0
    (no projection, returned as 0) or an int with 0 < proj_size < units."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"proj_size must be an int (0 or None: no projection), "
                        f"got {value!r}")
    number = int(value)
    if number < 0:
        raise ValueError(f"proj_size must be >= 0 (0: no projection), got {number}")
    if number >= units and number:
        raise ValueError(f"proj_size has to be smaller than units ({units}), got {number}")
    return number


def num_threads(value: object) -> int | None:
    """The layer's ``num_threads``: None (the default) or a positive int,
    capped at the CPUs this process may run on (more threads would only
    wait for each other)."""
    if value is None:
        return None
    return min(positive_int(value, "num_threads", limit=4096), _cpus())


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _numeric_array(value: object, argument: str) -> Array:
    """``np.asarray`` that refuses ragged, string, object and complex data."""
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged nested sequences
        raise ValueError(f"{argument} must be a rectangular numeric array: {error}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"{argument} must hold bool, integer or float values, got dtype {array.dtype}")
    return array


def inputs(x: ArrayLike, input_dim: int | None, dtype: DTypeLike) -> Array:
    """x → C-contiguous (batch, timesteps, features) array of ``dtype``.

    ``input_dim`` is None before the layer is built.  The result is never
    the caller's buffer made writable; the kernel only reads it.
    """
    array = input_array(x, input_dim)
    if not (array.flags.c_contiguous and array.dtype == dtype):
        # e.g. a broadcast view: its copy may be far larger than its buffer.
        affordable(array.size, np.dtype(dtype).itemsize,
                   f"a C-contiguous {np.dtype(dtype).name} copy of x {array.shape}")
    return np.ascontiguousarray(array, dtype=dtype)


def input_array(x: ArrayLike, input_dim: int | None) -> Array:
    """x → a numeric (batch, timesteps, features) array, as given when it
    is one (no copy): ``inputs`` without the conversion to the layer's
    dtype and layout, for callers that check their memory first."""
    array = _numeric_array(x, "x")
    if array.ndim != 3:
        raise ValueError(
            f"LSTM expected input x of shape (batch, timesteps, features), "
            f"got shape {array.shape} (rank {array.ndim})")
    expected = "features" if input_dim is None else input_dim
    if array.shape[2] == 0 or (input_dim is not None and array.shape[2] != input_dim):
        raise ValueError(
            f"LSTM expected input x of shape (batch, timesteps, {expected}), "
            f"got {array.shape}")
    for size, name in zip(array.shape, ("batch", "timesteps", "features"), strict=True):
        if size > _INT_MAX:
            raise ValueError(f"x has {size} {name}, more than the {_INT_MAX} supported")
    return array


def _memory_limit() -> tuple[int, str] | None:
    """Bytes this process may allocate at most, and what sets the limit:
    the machine's RAM, or the address-space limit (``ulimit -v``) when it
    is lower; None where the OS says neither."""
    limits = []
    try:
        limits.append((os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"),
                       "memory of this machine"))
    except (AttributeError, ValueError, OSError):
        pass
    if sys.platform != "win32":
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limits.append((soft, "address space this process may use (RLIMIT_AS)"))
    return min(limits) if limits else None


def affordable(count: int, itemsize: int, what: str) -> None:
    """Refuse, before allocating, ``count`` values of ``itemsize`` bytes that
    cannot fit in this machine's RAM (or under the process's address-space
    limit).

    malloc does not always refuse them (Linux overcommits), and touching
    such a buffer then ends in the OOM killer instead of a MemoryError.
    """
    within_memory([(what, count * itemsize)], what)


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes} bytes"


def within_memory(parts: Sequence[tuple[str, int]], what: str) -> None:
    """``affordable`` for everything one call allocates: ``parts`` lists
    (what, bytes); refused when their sum cannot fit, with the parts named."""
    nbytes = sum(size for _, size in parts)
    limit = _memory_limit()
    if limit is not None and nbytes > limit[0]:
        named = [f"{name} {_size(size)}" for name, size in parts if size]
        detail = f" ({'; '.join(named)})" if len(named) > 1 else ""
        raise MemoryError(
            f"{what} needs {nbytes / 2**30:,.1f} GiB{detail}, more than the "
            f"{limit[0] / 2**30:,.1f} GiB of {limit[1]}")


def mask(value: ArrayLike | None, batch: int, timesteps: int) -> Array | None:
    """mask → C-contiguous uint8 (batch, timesteps), 1 = step is processed."""
    if value is None:
        return None
    array = _numeric_array(value, "mask")
    if array.dtype.kind == "f":
        raise TypeError(f"mask must hold bool (or integer 0/1) values, got dtype {array.dtype}")
    if array.shape != (batch, timesteps):
        raise ValueError(
            f"mask must have shape (batch, timesteps) = {(batch, timesteps)}, got {array.shape}")
    return np.ascontiguousarray(array != 0, dtype=np.uint8)


def mask_or_lengths(mask_value: ArrayLike | None, lengths: ArrayLike | None, batch: int,
                    timesteps: int) -> Array | None:
    """mask or lengths → uint8 mask (batch, timesteps), or None.

    ``lengths[b]`` valid steps at the start of row b make a right-padded
    mask; giving both a mask and lengths is an error.
    """
    if lengths is None:
        return mask(mask_value, batch, timesteps)
    if mask_value is not None:
        raise ValueError("give either mask or lengths, not both")
    array = sequence_lengths(lengths, batch, timesteps)
    return np.ascontiguousarray(np.arange(timesteps) < array[:, None], dtype=np.uint8)


def sequence_lengths(lengths: ArrayLike, batch: int, timesteps: int) -> Array:
    """``lengths`` checked: intp (batch,), each in [0, timesteps]."""
    array = _numeric_array(lengths, "lengths")
    if array.dtype.kind not in "iu":
        raise TypeError(f"lengths must hold integers, got dtype {array.dtype}")
    if array.shape != (batch,):
        raise ValueError(f"lengths must have shape (batch,) = {(batch,)}, got {array.shape}")
    if array.size and (array.min() < 0 or array.max() > timesteps):
        raise ValueError(
            f"lengths must lie in [0, timesteps] = [0, {timesteps}], "
            f"got values in [{array.min()}, {array.max()}]")
    return array.astype(np.intp)


def state_list(value: object, count: int, argument: str) -> Any:
    """A list of ``count`` state arrays (e.g. Bidirectional's four), or None."""
    if value is not None and (not isinstance(value, (list, tuple)) or len(value) != count):
        raise ValueError(
            f"{argument} must be a list of {count} arrays, got {_describe(value)}")
    return value


def stateful_batch(expected: int | None, batch: int) -> None:
    """A stateful layer's states are for one batch size."""
    if expected is not None and batch != expected:
        raise ValueError(
            f"stateful LSTM holds states for batch size {expected}, got an input "
            f"with batch size {batch}; call reset_state() with states of the new "
            f"size or use a layer per batch size")


def initial_state(value: object, batch: int, units: int, dtype: DTypeLike,
                  proj_size: int = 0) -> tuple[Array, Array]:
    """initial_state → fresh (h, c) arrays the kernel may overwrite; h has
    proj_size features with a projection."""
    shapes = {"h": (batch, proj_size or units), "c": (batch, units)}
    names = {"h": "(batch, proj_size)" if proj_size else "(batch, units)",
             "c": "(batch, units)"}
    if value is None:
        return np.zeros(shapes["h"], dtype), np.zeros(shapes["c"], dtype)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(
            "initial_state must be a list [h, c] of two arrays of "
            + (f"shapes {shapes['h']} and {shapes['c']}" if proj_size
               else f"shape (batch, units) = {shapes['c']}")
            + f", got {_describe(value)}")
    states = []
    for state, name in zip(value, ("h", "c"), strict=True):
        array = _numeric_array(state, f"initial_state[{name}]")
        if array.shape != shapes[name]:
            raise ValueError(
                f"initial_state[{name}] must have shape {names[name]} = "
                f"{shapes[name]}, got {array.shape}")
        states.append(np.array(array, dtype=dtype, order="C", copy=True))
    return states[0], states[1]


def weights(values: object, shapes: Sequence[tuple[int, ...]], dtype: DTypeLike,
            ) -> list[Array]:
    """A list of arrays with exactly ``shapes`` → C-contiguous copies."""
    if not isinstance(values, (list, tuple)) or len(values) != len(shapes):
        raise ValueError(
            f"weights must be a list of {len(shapes)} arrays with shapes {shapes}, "
            f"got {_describe(values)}")
    result = []
    for index, (value, shape) in enumerate(zip(values, shapes, strict=True)):
        array = _numeric_array(value, f"weights[{index}]")
        if array.shape != shape:
            raise ValueError(
                f"weights[{index}] must have shape {shape}, got {array.shape}")
        result.append(np.array(array, dtype=dtype, order="C", copy=True))
    return result


def with_article(word: str) -> str:
    """``word`` after "a", or "an" when it starts with a vowel ("an Embedding")."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _describe(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__


def dropout_rate(value: object, argument: str) -> float:
    """A dropout rate in [0, 1).  Keras clamps instead, and then ignores a
    rate of 1 in its cell but not in its fused path; we refuse it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argument} must be a float in [0, 1), got {value!r}")
    rate = float(value)
    if not 0 <= rate < 1:
        raise ValueError(f"{argument} must be a float in [0, 1), got {value!r}")
    return rate


def gradient(value: object, shape: tuple[int, ...], dtype: DTypeLike, argument: str,
             copy: bool = True) -> Array | None:
    """An output gradient: None (no gradient) or an array of exactly ``shape``
    → C-contiguous array of ``dtype``; with ``copy`` a copy the kernel may
    overwrite, else possibly the caller's array (for read-only use)."""
    if value is None:
        return None
    array = _numeric_array(value, argument)
    if array.shape != shape:
        raise ValueError(f"{argument} must have shape {shape}, got {array.shape}")
    return np.array(array, dtype=dtype, order="C", copy=copy or None)


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def json_document(text: str, what: str, max_depth: int) -> Any:
    """Parse the JSON ``text`` of an untrusted file, refusing nesting deeper
    than ``max_depth`` before parsing (deep nesting would end in a
    RecursionError); ``what`` names the document in errors."""
    # Brackets outside strings, as bytes: +1 opens, -1 closes.
    outside = np.frombuffer(_JSON_STRING.sub("", text).encode(), np.uint8)
    steps = (np.isin(outside, list(b"[{")).astype(np.int64)
             - np.isin(outside, list(b"]}")).astype(np.int64))
    depth = int(np.cumsum(steps).max(initial=0))
    if depth > max_depth:
        raise ValueError(f"{what} nests {depth} levels deep, more than the limit of "
                         f"{max_depth}")
    try:
        return json.loads(text)
    except ValueError as error:
        raise ValueError(f"{what} is not valid JSON: {error}") from None
