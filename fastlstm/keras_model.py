"""``fastlstm.Model``: a whole Keras model (Sequential or functional) run
with NumPy and fastlstm's LSTM kernel.

A model is its Keras config, parsed once into a graph of nodes in
topological order (``fastlstm.keras_layers`` holds the layers), and the
weights.  Keras 3 writes a functional config as a list of layers, each
with its calls (``inbound_nodes``) whose arguments name the tensors they
take as ``keras_history`` = [layer, call, output]; Keras 2 / tf.keras
wrote each call as a list of [layer, call, output, kwargs].  Both are
read; masks in a Keras 3 config are the tensors its calls name, in a
Keras 2 config and in a Sequential they follow each layer's
``compute_mask`` (the rules of ``fastlstm.keras_layers``).
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import keras_layers, serialization, validation
from .keras_io import snake_case

Array = keras_layers.Array
Shape = keras_layers.Shape
Config = dict[str, Any]
TensorId = tuple[str, int, int]

SUPPORTED = sorted(keras_layers.LAYERS)


class _Tensor:
    """A reference to a tensor in a config: output ``index`` of call ``node`` of ``layer``."""

    __slots__ = ("key",)

    def __init__(self, layer: str, node: int, index: int) -> None:
        self.key: TensorId = (layer, node, index)

    def __repr__(self) -> str:
        return f"tensor{list(self.key)}"


class _Node:
    """One call of a layer or operation: ``args`` and ``kwargs`` hold
    ``_Tensor`` references where the config names tensors."""

    def __init__(self, layer: keras_layers.Layer, index: int, args: list[Any],
                 kwargs: dict[str, Any], legacy: bool) -> None:
        self.layer, self.index, self.args, self.kwargs = layer, index, args, kwargs
        self.legacy = legacy     # a Keras 2 call: masks follow compute_mask

    def references(self) -> Iterator[TensorId]:
        for value in _walk((self.args, self.kwargs)):
            yield value.key


def _walk(value: Any) -> Iterator[_Tensor]:
    """The tensor references in nested lists, tuples and dicts."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Tensor):
            yield item
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())


def _fill(value: Any, lookup: Callable[[TensorId], Any]) -> Any:
    if isinstance(value, _Tensor):
        return lookup(value.key)
    if isinstance(value, (list, tuple)):
        return [_fill(v, lookup) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, lookup) for k, v in value.items()}
    return value


def _size(shape: Shape) -> int:
    """The element count of a weight's shape; 0 while an entry is unknown."""
    return 0 if None in shape else math.prod(s for s in shape if s is not None)


def _inputs(node: _Node, lookup: Callable[[TensorId], Any]) -> list[Any]:
    """What a node's call takes: an operation all its positional arguments,
    a layer its one argument, a tensor or a list of tensors, as a list."""
    if isinstance(node.layer, keras_layers.Operation):
        return [_fill(arg, lookup) for arg in node.args]
    arg = node.args[0]
    return [_fill(a, lookup) for a in arg] if isinstance(arg, list) else [_fill(arg, lookup)]


# ------------------------------------------------------------------ parsing
class _Parser:
    """Keras model config → layers and nodes; every refusal names the key,
    the layer and the source (``where``)."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, message: str) -> ValueError:
        return ValueError(f"{self.where}: {message}")

    def entry(self, value: Any, index: int) -> tuple[str, str, Config]:
        if not isinstance(value, dict):
            raise self.fail(f"layers[{index}] must be a dict, got {type(value).__name__}")
        class_name = value.get("class_name")
        config = value.get("config")
        if not isinstance(class_name, str):
            raise self.fail(f"layers[{index}] has no 'class_name' string")
        if not isinstance(config, dict):
            raise self.fail(f"layers[{index}] ({class_name}) has no 'config' dict")
        name = value.get("name", config.get("name"))
        if not isinstance(name, str) or not name:
            raise self.fail(f"layers[{index}] ({class_name}) has no 'name' string")
        return name, class_name, config

    def layer(self, name: str, class_name: str, config: Config) -> keras_layers.Layer:
        class_name = keras_layers.ALIASES.get(class_name, class_name)
        # An operation node has no 'trainable' key; a layer always has.
        if class_name in keras_layers.OPERATIONS and "trainable" not in config:
            return keras_layers.Operation(name, class_name, config)
        if class_name not in keras_layers.LAYERS:
            raise self.fail(f"layer {name!r} is {validation.with_article(class_name)}; "
                            f"fastlstm supports "
                            f"{', '.join(SUPPORTED)} (and the operations Keras writes "
                            f"for masks: {', '.join(sorted(keras_layers.OPERATIONS))})")
        try:
            layer: keras_layers.Layer = keras_layers.LAYERS[class_name](name, config)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{self.where}: {error}") from None
        layer.class_name = class_name
        return layer

    # ------------------------------------------------------------- tensors
    def tensor(self, value: Any, owner: str) -> _Tensor:
        if not isinstance(value, (list, tuple)) or len(value) < 3 or not isinstance(
                value[0], str) or not all(isinstance(v, int) and not isinstance(v, bool)
                                          and v >= 0 for v in value[1:3]):
            raise self.fail(f"layer {owner!r}: a tensor reference must be [layer name, "
                            f"call index, output index], got {value!r}")
        return _Tensor(value[0], value[1], value[2])

    def argument(self, value: Any, owner: str) -> Any:
        """A Keras 3 call argument: tensors become references."""
        if isinstance(value, dict):
            if value.get("class_name") == "__keras_tensor__":
                config = value.get("config")
                if not isinstance(config, dict):
                    raise self.fail(f"layer {owner!r}: a tensor has no 'config' dict")
                return self.tensor(config.get("keras_history"), owner)
            return {k: self.argument(v, owner) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.argument(v, owner) for v in value]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise self.fail(f"layer {owner!r}: unexpected argument {value!r}")

    def node(self, layer: keras_layers.Layer, index: int, value: Any) -> _Node:
        owner = layer.name
        if isinstance(value, dict):           # Keras 3: {"args": [...], "kwargs": {...}}
            args, kwargs = value.get("args", []), value.get("kwargs", {})
            if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
                raise self.fail(f"layer {owner!r}: call {index} must have an 'args' list "
                                f"and a 'kwargs' dict")
            node = _Node(layer, index, self.argument(args, owner),
                         self.argument(kwargs, owner), legacy=False)
        elif isinstance(value, list):          # Keras 2: [[layer, call, output, kwargs], ...]
            if not value:
                raise self.fail(f"layer {owner!r}: call {index} has no inputs")
            tensors = [self.tensor(v, owner) for v in value]
            kwargs = value[0][3] if len(value[0]) > 3 else {}
            if not isinstance(kwargs, dict):
                raise self.fail(f"layer {owner!r}: call {index} kwargs must be a dict")
            kwargs = self.argument(kwargs, owner)
            if isinstance(layer, keras_layers.Recurrent) and len(tensors) > 1:
                # tf.keras passed an RNN's initial_state as further inputs.
                node = _Node(layer, index, [tensors[0]],
                             {**kwargs, "initial_state": tensors[1:]}, legacy=True)
            elif len(tensors) > 1:
                node = _Node(layer, index, [tensors], kwargs, legacy=True)
            else:
                node = _Node(layer, index, tensors, kwargs, legacy=True)
        else:
            raise self.fail(f"layer {owner!r}: call {index} must be a dict or a list, "
                            f"got {type(value).__name__}")
        unknown = sorted(set(node.kwargs) - {"mask", "training", "initial_state"})
        if unknown:
            raise self.fail(f"layer {owner!r}: call {index} has arguments {unknown}; "
                            f"fastlstm supports mask and initial_state")
        if "initial_state" in node.kwargs and not isinstance(layer, keras_layers.Recurrent):
            raise self.fail(f"layer {owner!r}: only LSTM and Bidirectional take "
                            f"an initial_state")
        if isinstance(layer, keras_layers.Recurrent) and len(node.args) == 2:
            node.kwargs["initial_state"] = node.args.pop()     # LSTM()(x, [h, c])
        if len(node.args) != 1 and not isinstance(layer, keras_layers.Operation):
            raise self.fail(f"layer {owner!r}: call {index} takes {len(node.args)} "
                            f"positional arguments; fastlstm supports one (a tensor or a "
                            f"list of tensors)")
        if "mask" in node.kwargs and not isinstance(layer, keras_layers.Operation):
            self.mask(node.kwargs["mask"], node.args[0], owner, index)
        return node

    def mask(self, mask: Any, inputs: Any, owner: str, index: int) -> None:
        """A call's recorded mask has the structure of its input, as Keras
        builds it: None, a tensor for one tensor (or a list of one), a list
        of tensors or Nones with one entry per tensor of a list input."""
        count = len(inputs) if isinstance(inputs, list) else 1
        if mask is None or (isinstance(mask, _Tensor) and count == 1):
            return
        if not (isinstance(mask, list) and len(mask) == count
                and all(m is None or isinstance(m, _Tensor) for m in mask)):
            raise self.fail(f"layer {owner!r}: call {index}'s mask must be None, a tensor "
                            f"or a list of {count} tensors or nulls (one per input), "
                            f"got {mask!r}")


def _endpoints(parser: _Parser, value: Any, key: str) -> tuple[list[_Tensor], bool]:
    """input_layers / output_layers: one [name, 0, 0] (a single tensor) or a list."""
    if not isinstance(value, (list, tuple)) or not value:
        raise parser.fail(f"{key!r} must be a non-empty list, got {value!r}")
    if isinstance(value[0], str):
        return [parser.tensor(value, key)], True
    return [parser.tensor(v, key) for v in value], False


def _topological(nodes: dict[tuple[str, int], _Node], outputs: list[_Tensor],
                 parser: _Parser) -> list[_Node]:
    """The nodes the outputs need, each after the nodes it reads; an
    iterative depth-first search (no recursion limit), refusing cycles and
    references to layers or calls the config does not have."""
    order: list[_Node] = []
    state: dict[tuple[str, int], int] = {}      # 1: on the path, 2: done
    for output in outputs:
        stack: list[tuple[tuple[str, int], Iterator[TensorId] | None]] = [
            (output.key[:2], None)]
        while stack:
            key, children = stack[-1]
            if children is None:
                if key not in nodes:
                    raise parser.fail(f"a tensor refers to call {key[1]} of layer "
                                      f"{key[0]!r}, which the config does not have")
                if state.get(key) == 2:
                    stack.pop()
                    continue
                state[key] = 1
                children = nodes[key].references()
                stack[-1] = (key, children)
            child = next(children, None)
            if child is None:
                state[key] = 2
                order.append(nodes[key])
                stack.pop()
                continue
            child_key = child[:2]
            if state.get(child_key) == 1:
                raise parser.fail(f"the layers form a cycle: layer {key[0]!r} reads "
                                  f"from {child_key[0]!r}, which depends on it")
            if state.get(child_key) != 2:
                stack.append((child_key, None))
    return order


class Model:
    """A Keras model imported by ``fastlstm.from_keras``: the same outputs as
    Keras's ``model.predict``, computed with NumPy and fastlstm's kernel.

    Parameters
    ----------
    config : dict
        A Keras model config: ``{"class_name": "Sequential" or "Functional",
        "config": {...}}`` (what ``model.get_config()`` returns, wrapped, or
        ``config.json`` of a ``.keras`` file).
    where : str
        Names the source in error messages.

    The weights are set by ``from_keras`` (or ``set_weights``).  Calling the
    model (or ``predict``) takes one array, or several as a list in the
    order of ``input_names`` or a dict by input name, and returns one array
    or a list, as Keras does.

    Examples
    --------
    >>> import numpy as np, fastlstm
    >>> config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
    ...     {"class_name": "InputLayer", "config": {"name": "x", "batch_shape": [None, 4, 10]}},
    ...     {"class_name": "LSTM", "config": {"name": "lstm", "units": 16}},
    ...     {"class_name": "Dense", "config": {"name": "dense", "units": 2}}]}}
    >>> model = fastlstm.Model(config)
    >>> model.set_weights([np.zeros(s, np.float32) for s in model.weight_shapes()])
    >>> model(np.ones((3, 4, 10), np.float32)).shape, model.count_params()
    ((3, 2), 1762)
    """

    def __init__(self, config: Config, where: str = "model config") -> None:
        parser = _Parser(where)
        self._where = where
        if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
            raise parser.fail("a Keras model config must be a dict with a 'config' dict")
        self.class_name = config.get("class_name")
        body = config["config"]
        self.name = str(body.get("name") or snake_case(str(self.class_name)))
        self._config = config
        self._inputs: list[_Tensor] = []
        self._outputs: list[_Tensor] = []
        if self.class_name == "Sequential":
            self._sequential(parser, body)
        elif self.class_name in ("Functional", "Model"):
            self._functional(parser, body)
        else:
            raise parser.fail(f"expected a Sequential or functional model, got class_name "
                              f"{self.class_name!r}")
        self._shapes()
        if self.class_name == "Sequential":
            # The model returns whatever its last layer returns (several
            # arrays with return_state or merge_mode=None).
            last = self._outputs[0].key
            count = len(self._output_shapes[last[:2]])
            self._outputs = [_Tensor(last[0], 0, i) for i in range(count)]
            self._single_output = count == 1

    # ------------------------------------------------------------- building
    def _sequential(self, parser: _Parser, body: Config) -> None:
        entries = body.get("layers")
        if not isinstance(entries, list) or not entries:
            raise parser.fail("a Sequential config needs a non-empty 'layers' list")
        layers = [parser.layer(*parser.entry(e, i)) for i, e in enumerate(entries)]
        if isinstance(layers[0], keras_layers.InputLayer):
            first, layers = layers[0], layers[1:]
        else:
            # Keras 2 put the input shape on the first layer; Keras 3 on the model.
            config = entries[0]["config"]
            shape = config.get("batch_input_shape", body.get("build_input_shape"))
            first = keras_layers.InputLayer("input_layer", {"batch_shape": shape})
            first.class_name = "InputLayer"
        if any(isinstance(layer, (keras_layers.InputLayer, keras_layers.Operation))
               for layer in layers):
            raise parser.fail("a Sequential config may hold an InputLayer only first")
        if not layers:
            raise parser.fail("the model has no layers besides its input")
        previous = _Tensor(first.name, 0, 0)
        self._nodes = [_Node(first, 0, [], {}, legacy=True)]
        for layer in layers:
            self._nodes.append(_Node(layer, 0, [previous], {}, legacy=True))
            previous = _Tensor(layer.name, 0, 0)
        names = [layer.name for layer in [first, *layers]]
        if len(set(names)) != len(names):
            raise parser.fail(f"layer names must be unique, got {names}")
        self._layers = [first, *layers]
        self._inputs, self._single_input = [_Tensor(first.name, 0, 0)], True
        self._outputs, self._single_output = [previous], True
        self._summary_layers = layers       # Keras's summary of a Sequential omits the input

    def _functional(self, parser: _Parser, body: Config) -> None:
        entries = body.get("layers")
        if not isinstance(entries, list) or not entries:
            raise parser.fail("a functional config needs a non-empty 'layers' list")
        layers: list[keras_layers.Layer] = []
        nodes: dict[tuple[str, int], _Node] = {}
        for index, entry in enumerate(entries):
            name, class_name, config = parser.entry(entry, index)
            if any(layer.name == name for layer in layers):
                raise parser.fail(f"two layers are named {name!r}")
            layer = parser.layer(name, class_name, config)
            layers.append(layer)
            calls = entry.get("inbound_nodes", [])
            if not isinstance(calls, list):
                raise parser.fail(f"layer {name!r}: 'inbound_nodes' must be a list")
            if isinstance(layer, keras_layers.InputLayer):
                nodes[(name, 0)] = _Node(layer, 0, [], {}, legacy=False)
                continue
            for call_index, call in enumerate(calls):
                nodes[(name, call_index)] = parser.node(layer, call_index, call)
        self._inputs, self._single_input = _endpoints(parser, body.get("input_layers"),
                                                      "input_layers")
        self._outputs, self._single_output = _endpoints(parser, body.get("output_layers"),
                                                        "output_layers")
        by_name = {layer.name: layer for layer in layers}
        for tensor in self._inputs:
            if not isinstance(by_name.get(tensor.key[0]), keras_layers.InputLayer):
                raise parser.fail(f"input_layers names {tensor.key[0]!r}, which is not an "
                                  f"InputLayer of the config")
        self._nodes = _topological(nodes, self._outputs, parser)
        for node in self._nodes:
            if isinstance(node.layer, keras_layers.InputLayer) and not any(
                    t.key[0] == node.layer.name for t in self._inputs):
                raise parser.fail(f"the outputs need input {node.layer.name!r}, which is "
                                  f"not among input_layers")
        self._layers = [layer for layer in layers
                        if not isinstance(layer, keras_layers.Operation)]
        # Keras's summary of a functional model lists its operations too.
        self._summary_layers = [layer for layer in layers
                                if (layer.name, 0) in self._output_keys()]

    def _output_keys(self) -> set[tuple[str, int]]:
        return {(node.layer.name, node.index) for node in self._nodes}

    def _shapes(self) -> None:
        """Every node's input and output shapes (batch None), from the
        inputs' batch_shape; layers keep the shapes of their first call."""
        shapes: dict[tuple[str, int], Any] = {}

        def lookup(key: TensorId) -> Any:
            outputs = shapes[key[:2]]
            if key[2] >= len(outputs):
                raise ValueError(f"{self._where}: a tensor refers to output {key[2]} of "
                                 f"layer {key[0]!r}, which has {len(outputs)}")
            return outputs[key[2]]

        for node in self._nodes:
            layer = node.layer
            if isinstance(layer, keras_layers.InputLayer):
                shapes[(layer.name, node.index)] = [layer.batch_shape]
                continue
            inputs = _inputs(node, lookup)
            if node.index == 0 or not layer.input_shapes:
                layer.input_shapes = inputs
            try:
                output = layer.output_shape(inputs)
            except (TypeError, ValueError, IndexError) as error:
                raise ValueError(f"{self._where}: {layer.where} cannot take inputs of "
                                 f"shapes {inputs}: {error}") from None
            shapes[(layer.name, node.index)] = output if isinstance(output, list) else [output]
        self._output_shapes = shapes

    # ------------------------------------------------------------- weights
    @property
    def layers(self) -> list[keras_layers.Layer]:
        """The layers, as ``model.layers`` in Keras (operations excluded)."""
        return list(self._layers)

    def get_layer(self, name: str) -> keras_layers.Layer:
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; the model has "
                         f"{[layer.name for layer in self._layers]}")

    def weight_shapes(self) -> list[Shape]:
        """The shapes of ``get_weights()``'s arrays (None where unknown)."""
        return [s for layer in self._layers for s in layer.weight_shapes(layer.input_shapes)]

    def get_weights(self) -> list[Array]:
        """All weights, layer by layer, as Keras's ``model.get_weights()``."""
        return [w.copy() for layer in self._layers for w in layer.weights]

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Set a flat list shaped like ``get_weights()``."""
        weights = list(weights)
        counts = [len(layer.weight_shapes(layer.input_shapes)) for layer in self._layers]
        if len(weights) != sum(counts):
            raise ValueError(f"set_weights: the model has {sum(counts)} weight arrays, got "
                             f"{len(weights)}")
        start = 0
        for layer, count in zip(self._layers, counts, strict=True):
            layer.set_weights([np.asarray(w) for w in weights[start:start + count]])
            start += count

    def count_params(self) -> int:
        return sum(_size(s) for s in self.weight_shapes())

    # ------------------------------------------------------------------ call
    @property
    def input_names(self) -> list[str]:
        return [t.key[0] for t in self._inputs]

    def _feed(self, x: Any) -> dict[TensorId, Any]:
        names = self.input_names
        if isinstance(x, dict):
            if sorted(x) != sorted(names):
                raise ValueError(f"the model takes inputs {names}, got a dict of "
                                 f"{sorted(x)}")
            values = [x[name] for name in names]
        elif isinstance(x, (list, tuple)) and len(names) > 1:
            if len(x) != len(names):
                raise ValueError(f"the model takes {len(names)} inputs {names}, got "
                                 f"{len(x)}")
            values = list(x)
        elif len(names) > 1:
            raise ValueError(f"the model takes {len(names)} inputs {names}: pass a list "
                             f"or a dict, got {type(x).__name__}")
        else:
            values = [x]
        feed = {}
        batch = None
        for tensor, value in zip(self._inputs, values, strict=True):
            layer = self.get_layer(tensor.key[0])
            assert isinstance(layer, keras_layers.InputLayer)
            array = np.asarray(value)
            if array.dtype.kind not in "fiub":
                raise TypeError(f"input {layer.name!r} must be numeric, got dtype "
                                f"{array.dtype}")
            expected = layer.batch_shape
            if array.ndim != len(expected) or any(
                    e is not None and e != a
                    for e, a in zip(expected[1:], array.shape[1:], strict=True)):
                raise ValueError(f"input {layer.name!r} must have shape "
                                 f"{keras_layers._show(expected)}, got {array.shape}")
            if batch is not None and array.shape[0] != batch:
                raise ValueError(f"all inputs must have the same batch size, got "
                                 f"{batch} and {array.shape[0]} (input {layer.name!r})")
            batch = array.shape[0]
            if layer.input_dtype.startswith(("int", "uint", "bool")):
                array = array                   # indices stay as they are
            elif array.dtype != np.float64 or layer.input_dtype != "float64":
                array = array.astype(np.float32 if layer.input_dtype != "float64"
                                     else np.float64, copy=False)
            feed[tensor.key] = array
        return feed

    def __call__(self, x: Any) -> Array | list[Array]:
        """Run the model on ``x``: one array, or a list / dict for several inputs."""
        if any(not layer.weights and layer.weight_shapes(layer.input_shapes)
               for layer in self._layers):
            raise ValueError("the model has no weights yet: use fastlstm.from_keras, "
                             "set_weights or load_keras_weights")
        values: dict[TensorId, Any] = {}
        masks: dict[TensorId, Any] = {}
        feed = self._feed(x)
        for node in self._nodes:
            layer = node.layer
            if isinstance(layer, keras_layers.InputLayer):
                values[(layer.name, node.index, 0)] = feed[(layer.name, node.index, 0)]
                continue
            inputs = _inputs(node, values.__getitem__)
            # Every tensor carries the mask Keras would attach to it at run
            # time (each layer's compute_mask); a Keras 3 call passes the
            # mask its config records, a Keras 2 one the mask of its inputs.
            input_masks = _inputs(node, masks.get)
            input_mask = input_masks if len(input_masks) > 1 or isinstance(
                node.args[0] if node.args else None, list) else input_masks[0]
            if node.legacy or "mask" not in node.kwargs:
                mask = input_mask
            else:
                mask = _fill(node.kwargs["mask"], values.__getitem__)
            kwargs: dict[str, Any] = {}
            if "initial_state" in node.kwargs:
                kwargs["initial_state"] = _fill(node.kwargs["initial_state"],
                                                values.__getitem__)
            output: Any
            if isinstance(layer, keras_layers.Operation):
                output = layer.call(inputs)
                out_masks: list[Any] = []
            else:
                output = layer.call(inputs, mask=mask if layer.takes_mask else None,
                                    **kwargs)
                out_mask = layer.compute_mask(inputs, mask)
                out_masks = out_mask if isinstance(out_mask, list) else [out_mask]
            outputs = output if isinstance(output, list) else [output]
            for i, value in enumerate(outputs):
                values[(layer.name, node.index, i)] = value
                if i < len(out_masks) and out_masks[i] is not None:
                    masks[(layer.name, node.index, i)] = out_masks[i]
        # An output may be an input passed through (Dropout, Activation
        # "linear"): the caller gets a copy, never its own array back.
        results = [np.array(values[t.key]) if any(
            np.shares_memory(values[t.key], given) for given in feed.values())
            else values[t.key] for t in self._outputs]
        return results[0] if self._single_output else results

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = None) -> Any:
        """``model.predict``: ``__call__`` on slices of ``batch_size`` rows
        (all at once when None), joined."""
        if batch_size is None:
            return self(x)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        feed = self._feed(x)
        total = next(iter(feed.values())).shape[0]
        if total <= batch_size:
            return self(x)
        parts = [self([a[start:start + batch_size] for a in feed.values()]
                      if len(feed) > 1 else next(iter(feed.values()))[start:start + batch_size])
                 for start in range(0, total, batch_size)]
        if self._single_output:
            return np.concatenate(parts)
        return [np.concatenate([p[i] for p in parts]) for i in range(len(self._outputs))]

    # --------------------------------------------------------------- summary
    def summary(self, print_fn: Callable[[str], object] = print) -> None:
        """Print Keras's table: layer (type), output shape, param #."""
        def shape_text(value: Any) -> str:
            if isinstance(value, list):
                return "[" + ", ".join(shape_text(v) for v in value) + "]"
            return "(" + ", ".join("None" if s is None else str(s) for s in value) + ")"

        rows = []
        for layer in self._summary_layers:
            output = self._output_shapes[(layer.name, 0)]
            params = sum(_size(s) for s in layer.weight_shapes(layer.input_shapes))
            rows.append((f"{layer.name} ({layer.class_name})",
                         shape_text(output[0] if len(output) == 1 else output),
                         f"{params:,}"))
        header = ("Layer (type)", "Output Shape", "Param #")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
        line = "+-" + "-+-".join("-" * w for w in widths) + "-+"

        def row(cells: Sequence[str]) -> str:
            return ("| " + cells[0].ljust(widths[0]) + " | " + cells[1].ljust(widths[1])
                    + " | " + cells[2].rjust(widths[2]) + " |")

        total = self.count_params()
        fixed = sum(layer.non_trainable_params(layer.input_shapes) for layer in self._layers)
        lines = [f'Model: "{self.name}"', line, row(header), line.replace("-", "=")]
        lines += [row(r) for r in rows] + [line, f" Total params: {total:,}",
                                           f" Trainable params: {total - fixed:,}",
                                           f" Non-trainable params: {fixed:,}"]
        print_fn("\n".join(lines))

    # ----------------------------------------------------------- save / load
    def get_config(self) -> Config:
        """The Keras model config the model was built from."""
        config: Config = json.loads(json.dumps(self._config))
        return config

    @classmethod
    def from_config(cls, config: Config) -> Model:
        return cls(config)

    @property
    def built(self) -> bool:
        return all(layer.weights or not layer.weight_shapes(layer.input_shapes)
                   for layer in self._layers)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write config and weights to one ``.npz`` file (no pickle); see
        ``fastlstm.load``, which reads it without Keras or h5py."""
        serialization.save(self, path)

    def __repr__(self) -> str:
        return (f"Model(name={self.name!r}, {len(self._summary_layers)} layers, "
                f"inputs={self.input_names})")
