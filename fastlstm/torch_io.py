"""PyTorch ``nn.LSTM`` → fastlstm and back.  torch is imported only here,
inside the functions, so fastlstm never needs it otherwise."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import convert
from .bidirectional import Bidirectional
from .layer import LSTM
from .sequential import Sequential

_DTYPES = {"torch.float32": "float32", "torch.float64": "float64"}


def _torch() -> Any:
    try:
        import torch
    except ImportError as error:
        raise ImportError("this function needs PyTorch: pip install torch") from error
    return torch


def _check_module(module: Any) -> str:
    """Refuse anything but a plain ``nn.LSTM`` we can reproduce; returns its dtype."""
    torch = _torch()
    if not isinstance(module, torch.nn.LSTM):
        raise TypeError(f"expected a torch.nn.LSTM, got {type(module).__name__}")
    if type(module).forward is not torch.nn.LSTM.forward:
        raise TypeError(f"{type(module).__name__} overrides nn.LSTM.forward; only the "
                        f"standard nn.LSTM computation is supported")
    if module.proj_size > 0:
        raise ValueError(f"nn.LSTM with proj_size={module.proj_size} is not supported "
                         f"(fastlstm has no projection; proj_size must be 0)")
    dtype = _DTYPES.get(str(module.weight_ih_l0.dtype))
    if dtype is None:
        raise TypeError(f"nn.LSTM weights must be float32 or float64, "
                        f"got {module.weight_ih_l0.dtype}")
    return dtype


def _weights(module: Any, index: int, reverse: bool) -> list[np.ndarray[Any, Any]]:
    suffix = f"_l{index}" + ("_reverse" if reverse else "")

    def get(name: str) -> Any:
        value = getattr(module, name + suffix, None)
        return None if value is None else value.detach().cpu().numpy()

    return convert.torch_to_keras(get("weight_ih"), get("weight_hh"),
                                  get("bias_ih"), get("bias_hh"))


def layer_from_torch(cls: type[LSTM], module: Any, **kwargs: Any) -> LSTM:
    """``LSTM.from_torch``: a one-layer unidirectional ``nn.LSTM`` → ``cls``.

    Weights: ``kernel = weight_ih.T``, ``recurrent_kernel = weight_hh.T``,
    ``bias = bias_ih + bias_hh``.  ``kwargs`` go to the constructor
    (units, use_bias and dtype come from the module).
    """
    dtype = _check_module(module)
    if module.num_layers != 1 or module.bidirectional:
        raise ValueError(
            f"LSTM.from_torch takes a one-layer unidirectional nn.LSTM, got "
            f"num_layers={module.num_layers}, bidirectional={module.bidirectional}; "
            f"use fastlstm.from_torch(module) for stacks")
    layer = cls(module.hidden_size, **{"use_bias": module.bias, "dtype": dtype, **kwargs})
    layer.set_weights(_weights(module, 0, False))
    return layer


def layer_to_torch(layer: LSTM) -> Any:
    """``LSTM.to_torch``: an ``nn.LSTM`` (batch_first=True) with the layer's
    weights; the bias goes to ``bias_ih`` and ``bias_hh`` is zero."""
    torch = _torch()
    layer._require_built("to_torch")
    for name, default in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
        if getattr(layer, name) != default:
            raise ValueError(f"to_torch: nn.LSTM computes {name}={default!r}, the layer "
                             f"has {getattr(layer, name)!r}")
    if layer.go_backwards:
        raise ValueError("to_torch: a unidirectional nn.LSTM cannot run with "
                         "go_backwards=True")
    module = torch.nn.LSTM(layer.input_dim, layer.units, bias=layer.use_bias,
                           batch_first=True, dtype=getattr(torch, layer.dtype.name))
    arrays = convert.keras_to_torch(*layer.get_weights())
    names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    with torch.no_grad():
        for name, array in zip(names, arrays, strict=True):
            if array is not None:
                getattr(module, name).copy_(torch.from_numpy(np.ascontiguousarray(array)))
    return module.eval()


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
    dtype = _check_module(module)
    layers: list[LSTM | Bidirectional] = []
    for index in range(module.num_layers):
        def lstm() -> LSTM:
            return LSTM(module.hidden_size, return_sequences=True, use_bias=module.bias,
                        dtype=dtype)
        if module.bidirectional:
            layer: LSTM | Bidirectional = Bidirectional(lstm(), merge_mode="concat")
            layer.set_weights(_weights(module, index, False) + _weights(module, index, True))
        else:
            layer = lstm()
            layer.set_weights(_weights(module, index, False))
        layers.append(layer)
    return TorchStack(layers, time_major=not module.batch_first)
