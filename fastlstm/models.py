"""Whole models in and out: ``fastlstm.load`` and the imports from Keras
and PyTorch.

These functions build fastlstm layers and stacks from files and from other
frameworks' objects.  They sit above every layer class, so that the
formats they read (``serialization``, ``keras_io``, ``torch_io``) know no
layer class, and the layers' own ``from_config``, ``from_keras``,
``from_torch`` and ``save`` need nothing from here.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import keras_io, serialization, torch_io, validation
from .bidirectional import Bidirectional
from .layer import LSTM
from .masking import Masking
from .sequential import LAYER_CLASSES, Sequential

# What load returns: any fastlstm layer or stack, by the class name in its config.
Model = LSTM | Bidirectional | Masking | Sequential
MODEL_CLASSES: dict[str, type[Model]] = {**LAYER_CLASSES, "Sequential": Sequential}
# What from_keras returns: a layer, or a stack for a model.
Imported = LSTM | Bidirectional | Sequential


def load(path: str | os.PathLike[str]) -> Model:
    """Read a layer or stack written by ``save``.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npz`` file written by ``LSTM.save``, ``Bidirectional.save`` or
        ``Sequential.save``.

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
        input_dim = obj.input_dim
        if input_dim is None and declared and len(declared[0]) == 2:
            input_dim = declared[0][0]        # an unbuilt model takes the kernel's
        expected = [] if input_dim is None else obj._weight_shapes(input_dim)
        if declared and declared != expected or obj.built and not declared and expected:
            raise ValueError(
                f"{file.path}: the weights have shapes {_listed(declared)}; the model its "
                f"config describes has {_listed(expected)}")
        validation.affordable(sum(int(np.prod(entry.shape, dtype=object)) * entry.dtype.itemsize
                                  for entry in file.declared), 1, f"the weights in {file.path}")
        weights = file.weights()
    if weights:
        try:
            obj.set_weights(weights)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{file.path}: {error}") from None
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
def _keras_stack(class_name: str, config: keras_io.Config,
                 ) -> tuple[Sequential, keras_io.Chain]:
    """A ``Sequential`` for a Keras model config, and the model's chain."""
    chain = keras_io.model_chain(class_name, config)
    stack = Sequential([LAYER_CLASSES[name].from_config(keras_io.without_initializers(entry))
                        for name, entry in chain.layers],
                       name=config.get("name", "sequential"))
    if chain.input_shape is not None:
        stack.build(chain.input_shape)
    return stack, chain


def _load_weights(layers: list[Any], keys: list[str], h5: Any) -> None:
    for layer, key in zip(layers, keys, strict=True):
        layer.set_weights(keras_io.layer_weights(h5, key, type(layer).__name__))
    keras_io.check_no_other_weights(h5, keys)


def from_keras(source: Any) -> Imported:
    """A fastlstm layer or stack with the config and weights of a Keras model.

    Parameters
    ----------
    source : Keras layer or model, or path
        A live Keras 3 ``LSTM`` or ``Bidirectional`` layer, a ``Sequential``
        or functional model made of Input, Masking, LSTM and Bidirectional
        layers in a chain, or the path of a ``.keras`` file (read with h5py,
        without Keras).

    Returns
    -------
    fastlstm.LSTM, fastlstm.Bidirectional or fastlstm.Sequential

    Examples
    --------
    With Keras 3 installed (any backend)::

        model = keras.Sequential([keras.Input((4, 10)), keras.layers.LSTM(16)])
        fast = fastlstm.from_keras(model)
        fast.summary()                              # lstm (LSTM)  (None, 16)  1,728

    and, on a machine with only h5py::

        fast = fastlstm.from_keras("model.keras")
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not path.endswith(".keras"):
            raise ValueError(
                f"from_keras reads .keras files (architecture and weights), got {path!r}; "
                f"for a .weights.h5 file build the stack and call "
                f"fastlstm.load_keras_weights(stack, path)")
        config = keras_io.read_config(path)
        stack, chain = _keras_stack(config["class_name"], config["config"])
        with keras_io.open_weights(path) as h5:
            _load_weights(stack.layers, chain.keys, h5)
        return stack
    class_name = keras_io.keras_class(source)
    if class_name == "LSTM":
        return LSTM.from_keras(source)
    layer: Imported
    if class_name == "Bidirectional":
        layer = Bidirectional.from_config(keras_io.without_initializers(source.get_config()))
        weights = source.get_weights()
    elif class_name in ("Sequential", "Functional"):
        layer, chain = _keras_stack(class_name, source.get_config())
        by_name = {entry.name: entry for entry in source.layers}
        weights = [w for name in chain.names for w in by_name[name].get_weights()]
    else:
        raise TypeError(f"from_keras: {class_name} is not supported; fastlstm takes "
                        f"LSTM, Bidirectional, or a Sequential/functional model of "
                        f"{', '.join(keras_io.SUPPORTED)}")
    if weights:
        layer.set_weights(weights)
    return layer


def load_keras_weights(target: LSTM | Bidirectional | Sequential,
                       path: str | os.PathLike[str]) -> None:
    """Load weights that Keras saved into a fastlstm layer or stack, without Keras.

    Parameters
    ----------
    target : fastlstm.LSTM, fastlstm.Bidirectional or fastlstm.Sequential
        Built or not; its layers must match the Keras model's LSTM,
        Bidirectional and Masking layers in order.
    path : str or os.PathLike
        A ``.weights.h5`` file (``model.save_weights``) or a ``.keras`` file.
    """
    if not isinstance(target, (Sequential, LSTM, Bidirectional)):
        raise TypeError(f"load_keras_weights: expected a fastlstm LSTM, Bidirectional or "
                        f"Sequential, got {type(target).__name__}")
    layers: list[Any] = target.layers if isinstance(target, Sequential) else [target]
    keys = keras_io.layer_keys([type(layer).__name__ for layer in layers])
    with keras_io.open_weights(path) as h5:
        _load_weights(layers, keys, h5)


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
