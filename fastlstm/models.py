"""Whole models in and out: ``fastlstm.load`` and the imports from Keras
and PyTorch.

These functions build fastlstm layers and stacks from files and from other
frameworks' objects.  They sit above every layer class, so that the
formats they read (``serialization``, ``keras_io``, ``torch_io``) know no
layer class, and the layers' own ``from_config``, ``from_keras``,
``from_torch`` and ``save`` need nothing from here.
"""
from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np

from . import (
    keras_files,
    keras_import,
    keras_io,
    keras_layers,
    quantization,
    serialization,
    torch_io,
    validation,
)
from .bidirectional import Bidirectional
from .keras_model import Model as KerasModel
from .layer import LSTM
from .masking import Masking
from .sequential import LAYER_CLASSES, Sequential

# What load returns: any fastlstm layer, stack or imported Keras model, by
# the class name in its config.
Model = LSTM | Bidirectional | Masking | Sequential | KerasModel
MODEL_CLASSES: dict[str, type[Model]] = {**LAYER_CLASSES, "Sequential": Sequential,
                                         "Model": KerasModel}
# What from_keras returns: a model, or a layer for a layer.
Imported = LSTM | Bidirectional | KerasModel


def load(path: str | os.PathLike[str]) -> Model:
    """Read a layer or stack written by ``save``.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npz`` file written by ``LSTM.save``, ``Bidirectional.save``,
        ``Sequential.save`` or ``Model.save`` (read without Keras or h5py).

    Examples
    --------
    >>> import numpy as np, fastlstm, tempfile, os
    >>> layer = fastlstm.LSTM(4, seed=0)
    >>> layer.build(3)
    >>> path = os.path.join(tempfile.mkdtemp(), "layer.npz")
    >>> layer.save(path)
    >>> x = np.ones((2, 5, 3), np.float32)
    >>> bool((fastlstm.load(path)(x) == layer(x)).all())
    True
    """
    with serialization.Reader(path) as file:
        obj = _from_file_config(file.config, file.path)
        declared = [entry.shape for entry in file.declared]
        # Compared before any weight is read: the config says what to expect.
        # (A whole Keras model checks its weights' shapes in set_weights.)
        shapes_for = getattr(obj, "_weight_shapes", None)
        input_dim = getattr(obj, "input_dim", None)
        if input_dim is None and declared and len(declared[0]) == 2:
            input_dim = declared[0][0]        # an unbuilt model takes the kernel's
        expected = [] if input_dim is None or shapes_for is None else shapes_for(input_dim)
        if shapes_for is not None and (declared and declared != expected
                                       or obj.built and not declared and expected):
            raise ValueError(
                f"{file.path}: the weights have shapes {_listed(declared)}; the model its "
                f"config describes has {_listed(expected)}")
        validation.affordable(sum(int(np.prod(entry.shape, dtype=object)) * entry.dtype.itemsize
                                  for entry in [*file.declared, *file.declared_int8.values()]),
                              1, f"the weights in {file.path}")
        weights = file.weights()
        int8 = file.int8_arrays()
    if weights:
        try:
            obj.set_weights(weights)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{file.path}: {error}") from None
    quantization.restore(obj, int8, file.path)
    return obj


def _from_file_config(config: object, path: str) -> Model:
    """The object a fastlstm file's config describes; a malformed config is
    a ValueError (TypeError for a value of the wrong type) naming the file."""
    try:
        obj: Model = keras_io.from_dict(config, MODEL_CLASSES)
    except KeyError as error:
        raise ValueError(f"{path}: the config lacks the key {error}") from None
    except (IndexError, AttributeError) as error:
        raise ValueError(f"{path}: the config is malformed ({error})") from None
    except (TypeError, ValueError) as error:
        raise type(error)(f"{path}: {error}") from None
    return obj


def _listed(shapes: list[tuple[int, ...]]) -> str:
    if len(shapes) > 8:
        return f"{shapes[:8]} ... ({len(shapes)} arrays)"
    return str(shapes) if shapes else "none"


# -------------------------------------------------------------------- Keras
def from_keras(source: Any) -> Imported:
    """A fastlstm model (or layer) with the config and weights of a Keras one.

    Parameters
    ----------
    source : Keras model or layer, or path
        A live Keras 3 ``Sequential`` or functional model, a ``.keras`` file
        or a legacy HDF5 full-model file (``model.save("x.h5")`` of Keras 2,
        tf.keras or Keras 3), read with h5py, without Keras; or a live
        ``LSTM`` or ``Bidirectional`` layer.

    Returns
    -------
    fastlstm.Model
        For a model: its layers (see ``fastlstm.Model``) run with NumPy and
        fastlstm's kernel; ``model(x)`` returns what Keras's
        ``model.predict(x)`` returns.  For a layer: ``fastlstm.LSTM`` or
        ``fastlstm.Bidirectional``.

    Examples
    --------
    With Keras 3 installed (any backend)::

        model = keras.Sequential([keras.Input((4, 10)), keras.layers.LSTM(16),
                                  keras.layers.Dense(3, activation="softmax")])
        fast = fastlstm.from_keras(model)
        fast.summary()                     # lstm (LSTM)  (None, 16)  1,728 ...
        fast(x)                            # = model.predict(x)

    and, on a machine with only h5py::

        fast = fastlstm.from_keras("model.keras")     # or "model.h5"
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if path.endswith(".weights.h5"):
            raise ValueError(
                f"from_keras: {path} holds weights only; build the model and call "
                f"fastlstm.load_keras_weights(model, {path!r})")
        if not path.endswith((".keras", ".h5", ".hdf5")):
            raise ValueError(f"from_keras reads .keras files and legacy .h5 full-model "
                             f"files, got {path!r}")
        return keras_import.model_from_file(path)
    class_name = keras_io.keras_class(source)
    if class_name == "LSTM":
        return LSTM.from_keras(source)
    if class_name == "Bidirectional":
        layer = Bidirectional.from_config(keras_io.without_initializers(source.get_config()))
        weights = source.get_weights()
        if weights:
            layer.set_weights(weights)
        return layer
    if class_name in ("Sequential", "Functional"):
        return keras_import.model_from_live(source)
    raise TypeError(f"from_keras: {class_name} is not supported; fastlstm takes a "
                    f"Sequential or functional model, or an LSTM or Bidirectional layer")


def _lstm_shapes(layer: LSTM) -> list[tuple[int | None, ...]]:
    """What a file must hold for ``layer`` (any input size while unbuilt)."""
    units = layer.units
    shapes: list[tuple[int | None, ...]] = [(layer.input_dim, 4 * units), (units, 4 * units)]
    return shapes + [(4 * units,)] if layer.use_bias else shapes


def _load_stack(layers: list[Any], h5: Any, where: str, by_name: bool) -> None:
    """Weights of a Keras 3 weights file into fastlstm layers, by Keras's keys."""
    if "layers" not in h5 and ("model_weights" in h5 or "layer_names" in h5.attrs):
        raise ValueError(f"{where} is a legacy HDF5 file (Keras 2 / tf.keras layout), which "
                         f"names layers, not positions: load it into a fastlstm.Model "
                         f"(fastlstm.from_keras of the model, then load_keras_weights)")
    groups = keras_io.layers_group(h5, where)
    keys = keras_io.layer_keys([type(layer).__name__ for layer in layers])
    if not by_name:
        keras_io.refuse_other_weights(groups, set(keys), where)
    for layer, key in zip(layers, keys, strict=True):
        if isinstance(layer, Masking):
            continue
        if key not in groups:
            raise ValueError(f"{where}: the Keras weights file has no layer {key!r} "
                             f"(it has {sorted(groups)[:20]})")
        lstms = ([layer.forward_layer, layer.backward_layer]
                 if isinstance(layer, Bidirectional) else [layer])
        shapes = [s for lstm in lstms for s in _lstm_shapes(lstm)]
        datasets = keras_io.variable_datasets(keras_files.child(groups, key, where),
                                              type(layer).__name__, where)
        if len(datasets) != len(shapes):
            raise ValueError(f"{where}: layer {key!r} holds {len(datasets)} variables, "
                             f"{layer!r} has {len(shapes)} weights")
        layer.set_weights([keras_files.read_dataset(d, shape, where)
                           for d, shape in zip(datasets, shapes, strict=True)])


def load_keras_weights(target: LSTM | Bidirectional | Sequential | KerasModel,
                       path: str | os.PathLike[str], by_name: bool = False,
                       skip_mismatch: bool = False) -> None:
    """Load weights that Keras saved into a fastlstm layer, stack or model, without Keras.

    Parameters
    ----------
    target : fastlstm.LSTM, Bidirectional, Sequential or Model
        A layer or stack, built or not, whose layers match the Keras
        model's LSTM, Bidirectional and Masking layers in order; or a
        ``fastlstm.Model`` (from ``fastlstm.from_keras``).
    path : str or os.PathLike
        A ``.weights.h5`` file (``model.save_weights``) or a ``.keras``
        file; for a ``fastlstm.Model`` also a legacy ``.h5`` file.
    by_name : bool, default False
        Take from a file holding more layers than the target the weights of
        the layers the target has: for a layer or stack by Keras's weight
        keys (``lstm``, ``lstm_1``, ..., ``bidirectional``), for a ``Model``
        by layer name.  Without it, a file with other layers' weights is
        refused.
    skip_mismatch : bool, default False
        For a ``Model``: leave the layers whose weights the file lacks or
        holds in other shapes as they are, instead of refusing the file.

    Every dataset's shape is checked before it is read, and data stored
    outside the file (external storage, virtual datasets, links) is refused.
    """
    path = os.fspath(path)
    if isinstance(target, KerasModel):
        keras_import.load_into_model(target, path, by_name, skip_mismatch)
        return
    if not isinstance(target, (Sequential, LSTM, Bidirectional)):
        raise TypeError(f"load_keras_weights: expected a fastlstm LSTM, Bidirectional, "
                        f"Sequential or Model, got {type(target).__name__}")
    layers: list[Any] = target.layers if isinstance(target, Sequential) else [target]
    if path.endswith(".keras"):
        _, weights = keras_files.read_keras_archive(path)
        with keras_files.damaged_as_value_error(path), keras_files.open_h5(weights) as h5:
            _load_stack(layers, h5, f"{path}: model.weights.h5", by_name)
    else:
        with keras_files.damaged_as_value_error(path), keras_files.open_h5(path) as h5:
            _load_stack(layers, h5, path, by_name)


# ------------------------------------------------------------------ PyTorch
class TorchStack(Sequential):
    """The ``fastlstm.Sequential`` that ``fastlstm.from_torch`` makes: it also
    takes ``nn.LSTM``'s initial states, ``stack(x, hx=(h_0, c_0))``, each
    (num_layers * directions, batch, hidden_size) (saved and loaded, it is
    a plain Sequential)."""

    def __call__(self, x: Any, mask: Any = None, lengths: Any = None,
                 initial_state: Any = None, *, hx: Any = None) -> Any:
        if hx is not None:
            if initial_state is not None:
                raise ValueError("give hx (nn.LSTM's layout) or initial_state, not both")
            initial_state = self._states_from_torch(hx)
        return super().__call__(x, mask=mask, lengths=lengths, initial_state=initial_state)

    def _states_from_torch(self, hx: Any) -> list[list[Any]]:
        """``(h_0, c_0)`` → one ``initial_state`` list per layer."""
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise ValueError(f"hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
        h0, c0 = (np.asarray(state) for state in hx)
        directions = 2 if isinstance(self.layers[0], Bidirectional) else 1
        count = len(self.layers) * directions
        for name, state in (("h_0", h0), ("c_0", c0)):
            if state.ndim != 3 or state.shape[0] != count:
                raise ValueError(f"hx: {name} must have shape (num_layers * directions, "
                                 f"batch, hidden_size) with num_layers * directions = {count}, "
                                 f"got {state.shape}")
        return [[state[index * directions + d] for d in range(directions)
                 for state in (h0, c0)] for index in range(len(self.layers))]


def from_torch(module: Any) -> TorchStack:
    """Any ``torch.nn.LSTM`` → a ``fastlstm.Sequential`` computing its ``output``.

    Parameters
    ----------
    module : torch.nn.LSTM
        Any num_layers, bidirectional and batch_first; proj_size must be 0.
        Dropout between layers is a training feature and is not applied
        (torch's eval mode).

    Returns
    -------
    TorchStack (a fastlstm.Sequential)
        Takes input in the module's layout ((batch, time, features) with
        batch_first=True, else (time, batch, features)) and returns the
        values of torch's ``output`` as a NumPy array.  ``lengths=`` gives
        the results of a PackedSequence at the valid steps (padded steps
        follow Keras: zeros for bidirectional stacks, the last valid output
        for unidirectional ones, where torch pads with zeros).
        ``hx=(h_0, c_0)`` are torch's initial states.

    Examples
    --------
    >>> import torch, numpy as np, fastlstm
    >>> module = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True)
    >>> stack = fastlstm.from_torch(module)
    >>> x = np.random.default_rng(0).random((7, 2, 3), dtype=np.float32)
    >>> expected = module(torch.from_numpy(x))[0].detach().numpy()
    >>> bool(np.allclose(stack(x), expected, atol=1e-6))
    True
    >>> h0, c0 = (torch.randn(4, 2, 5) for _ in range(2))
    >>> expected = module(torch.from_numpy(x), (h0, c0))[0].detach().numpy()
    >>> bool(np.allclose(stack(x, hx=(h0.numpy(), c0.numpy())), expected, atol=1e-6))
    True
    """
    dtype = torch_io.check_module(module)
    layers: list[LSTM | Bidirectional] = []
    for index in range(module.num_layers):
        lstm = LSTM(module.hidden_size, return_sequences=True, use_bias=module.bias,
                    dtype=dtype)
        weights = torch_io.direction_weights(module, index, False)
        layer: LSTM | Bidirectional = lstm
        if module.bidirectional:
            layer = Bidirectional(lstm, merge_mode="concat")
            weights += torch_io.direction_weights(module, index, True)
        layer.set_weights(weights)
        layers.append(layer)
    return TorchStack(layers, time_major=not module.batch_first)


# --------------------------------------------------------------------- int8
def _quantized_layer(layer: LSTM) -> LSTM:
    """A new LSTM with ``layer``'s config, states and int8 weights."""
    weights = layer._require_built("quantize_dynamic")
    if layer.dtype != np.float32:
        raise ValueError(
            f"quantize_dynamic: int8 layers compute their gates in float32; got a "
            f"{layer.dtype.name} layer {layer!r} (build it with dtype='float32')")
    new = copy.copy(layer)          # config, num_threads, stored states
    new._tape, new.grads = None, None
    states = layer.states
    if states is not None:
        new._states = (states[0], states[1])
    new._set_int8(quantization.quantize_weights(
        weights.kernel, weights.recurrent_kernel, weights.bias if layer.use_bias else None))
    return new


def quantize_dynamic(model: Any, dtype: str = "int8") -> Any:
    """A copy of ``model`` that computes with int8 weights.

    Parameters
    ----------
    model : LSTM, Bidirectional, Sequential, Model (from ``from_keras``) or fastlstm.torch.LSTM
        Built, float32.  Stacks (including models made by ``from_keras``)
        have every LSTM quantized; Masking layers are kept.  A
        ``fastlstm.torch.LSTM`` must be in eval mode.  ``model`` itself is
        not changed.
    dtype : "int8"
        The only weight type there is.

    Returns
    -------
    The same kind of object.  Its LSTMs hold int8 weights per output column
    (``layer.quantization == "int8"``, ``layer.int8_weights``) and quantize
    their inputs and h per row at every step; gates and cell stay float32
    (``fastlstm.quantization`` states the scheme).  ``get_weights()`` gives
    the dequantised float32 weights, ``set_weights()`` quantizes what it is
    given, ``save`` and ``load`` keep the int8 weights.  Layers too small
    for the int8 kernel to be faster run the float32 kernel on the
    dequantised weights (``fastlstm.quantization.prefers_int8``).

    Examples
    --------
    >>> import numpy as np, fastlstm
    >>> layer = fastlstm.LSTM(64, seed=0)
    >>> layer.build(32)
    >>> int8 = fastlstm.quantize_dynamic(layer)
    >>> x = np.random.default_rng(0).standard_normal((8, 20, 32), dtype=np.float32)
    >>> int8.quantization, bool(np.abs(int8(x) - layer(x)).max() < 0.05)
    ('int8', True)
    """
    if not (isinstance(dtype, str) and dtype == "int8"):
        raise ValueError(f"quantize_dynamic: dtype must be 'int8', got {dtype!r}")
    if isinstance(model, LSTM):
        return _quantized_layer(model)
    if isinstance(model, Bidirectional):
        wrapper = copy.copy(model)
        wrapper.forward_layer = _quantized_layer(model.forward_layer)
        wrapper.backward_layer = _quantized_layer(model.backward_layer)
        return wrapper
    if isinstance(model, Sequential):
        stack = copy.copy(model)
        stack.layers = [layer if isinstance(layer, Masking) else quantize_dynamic(layer)
                        for layer in model.layers]
        return stack
    if isinstance(model, KerasModel):
        imported = copy.deepcopy(model)
        for layer in imported.layers:
            if isinstance(layer, keras_layers.Recurrent):
                layer.layer = quantize_dynamic(layer.layer)
        return imported
    if type(model).__module__ == "fastlstm.torch":     # imports torch: only when given one
        from .torch import quantized_module
        return quantized_module(model)
    raise TypeError(
        f"quantize_dynamic takes a fastlstm LSTM, Bidirectional, Sequential or "
        f"fastlstm.torch.LSTM, got {type(model).__name__}")
