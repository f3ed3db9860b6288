"""PyTorch ``nn.LSTM`` weights in and out, as arrays.  torch is imported
only here, inside the functions, so fastlstm never needs it otherwise;
``fastlstm.models.from_torch`` builds stacks from these pieces."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import convert

_DTYPES = {"torch.float32": "float32", "torch.float64": "float64"}


def _torch() -> Any:
    try:
        import torch
    except ImportError as error:
        raise ImportError("this function needs PyTorch: pip install torch") from error
    return torch


def check_module(module: Any) -> str:
    """Refuse anything but a plain ``nn.LSTM`` we can reproduce; returns its dtype."""
    torch = _torch()
    if not isinstance(module, torch.nn.LSTM):
        raise TypeError(f"expected a torch.nn.LSTM, got {type(module).__name__}")
    if type(module).forward is not torch.nn.LSTM.forward:
        raise TypeError(f"{type(module).__name__} overrides nn.LSTM.forward; only the "
                        f"standard nn.LSTM computation is supported")
    dtype = _DTYPES.get(str(module.weight_ih_l0.dtype))
    if dtype is None:
        raise TypeError(f"nn.LSTM weights must be float32 or float64, "
                        f"got {module.weight_ih_l0.dtype}")
    return dtype


def direction_weights(module: Any, index: int, reverse: bool) -> list[NDArray[Any]]:
    """Keras-layout ``[kernel, recurrent_kernel, bias]`` of layer ``index``
    of ``module`` in one direction (no bias entry for bias=False), then
    ``projection_kernel = weight_hr.T`` when ``proj_size > 0``."""
    suffix = f"_l{index}" + ("_reverse" if reverse else "")
    names = [name + suffix for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    tensors = [getattr(module, name, None) for name in names]
    expected = names if module.bias else names[:2]
    missing = [name for name, tensor in zip(names, tensors, strict=True)
               if (name in expected) != (tensor is not None)]
    if missing:
        raise ValueError(
            f"nn.LSTM(bias={module.bias}) must have the tensors {expected}; "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            f"{'None' if missing[0] in expected else 'set'}")
    arrays: list[Any] = [None if t is None else t.detach().cpu().numpy() for t in tensors]
    weights = convert.torch_to_keras(*arrays)
    if module.proj_size > 0:
        weight_hr = getattr(module, "weight_hr" + suffix).detach().cpu().numpy()
        weights.append(np.ascontiguousarray(weight_hr.T))
    return weights


def single_layer(module: Any) -> tuple[dict[str, Any], list[NDArray[Any]]]:
    """``LSTM.from_torch``'s pieces: the constructor arguments (units,
    use_bias, dtype, proj_size) and the weights of a one-layer
    unidirectional nn.LSTM."""
    dtype = check_module(module)
    if module.num_layers != 1 or module.bidirectional:
        raise ValueError(
            f"LSTM.from_torch takes a one-layer unidirectional nn.LSTM, got "
            f"num_layers={module.num_layers}, bidirectional={module.bidirectional}; "
            f"use fastlstm.from_torch(module) for stacks")
    arguments = {"units": module.hidden_size, "use_bias": module.bias, "dtype": dtype,
                 "proj_size": module.proj_size}
    return arguments, direction_weights(module, 0, False)


def to_module(weights: Sequence[NDArray[Any]], activation: str, recurrent_activation: str,
              go_backwards: bool, proj_size: int = 0) -> Any:
    """An ``nn.LSTM`` (batch_first=True) computing what a layer with these
    Keras-layout weights and flags computes; the bias goes to ``bias_ih``
    and ``bias_hh`` is zero.  With ``proj_size`` the last weight is the
    projection kernel, which goes to ``weight_hr_l0``."""
    torch = _torch()
    for name, value, default in (("activation", activation, "tanh"),
                                 ("recurrent_activation", recurrent_activation, "sigmoid")):
        if value != default:
            raise ValueError(f"to_torch: nn.LSTM computes {name}={default!r}, the layer "
                             f"has {value!r}")
    if go_backwards:
        raise ValueError("to_torch: a unidirectional nn.LSTM cannot run with "
                         "go_backwards=True")
    kernel = weights[0]
    projection = weights[-1] if proj_size else None
    weights = weights[:-1] if proj_size else weights
    module = torch.nn.LSTM(kernel.shape[0], kernel.shape[1] // 4, bias=len(weights) > 2,
                           batch_first=True, proj_size=proj_size,
                           dtype=getattr(torch, kernel.dtype.name))
    arrays: list[Any] = list(convert.keras_to_torch(*weights))
    names = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    if projection is not None:
        arrays.append(projection.T)
        names.append("weight_hr_l0")
    with torch.no_grad():
        for name, array in zip(names, arrays, strict=True):
            if array is not None:
                getattr(module, name).copy_(torch.from_numpy(np.ascontiguousarray(array)))
    return module.eval()
