"""``fastlstm.Masking``: Keras's Masking layer, for stacks imported from Keras."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import keras_io, validation


class Masking:
    """Mark time steps whose features all equal ``mask_value`` as skipped.

    As in Keras, the mask is ``any(x != mask_value, axis=-1)`` and the
    output is ``x`` with the skipped steps set to zero.  In a
    ``fastlstm.Sequential`` the mask goes to the next layer.

    Parameters
    ----------
    mask_value : float, default 0.0
    dtype : "float32" or "float64"
    """

    def __init__(self, mask_value: float = 0.0, dtype: DTypeLike = "float32") -> None:
        if isinstance(mask_value, bool) or not isinstance(mask_value, (int, float)):
            raise TypeError(f"mask_value must be a number, got {mask_value!r}")
        self.mask_value = float(mask_value)
        self.dtype = validation.layer_dtype(dtype)
        self.return_sequences = True     # the output keeps the time axis
        self.built = True
        self.input_dim = None            # any feature size

    def compute_mask(self, x: ArrayLike) -> NDArray[np.bool_]:
        """The boolean mask (batch, timesteps) for ``x``."""
        x = validation.inputs(x, None, self.dtype)
        mask: NDArray[np.bool_] = np.any(x != self.mask_value, axis=-1)
        return mask

    def __call__(self, x: ArrayLike, mask: ArrayLike | None = None) -> NDArray[Any]:
        """``x`` with masked steps zeroed; an incoming ``mask`` is ignored, as in Keras."""
        x = validation.inputs(x, None, self.dtype)
        kept: NDArray[Any] = x * np.any(x != self.mask_value, axis=-1, keepdims=True)
        return kept

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        return tuple(input_shape)

    def count_params(self) -> int:
        return 0

    def get_weights(self) -> list[NDArray[Any]]:
        return []

    def _weight_shapes(self, input_dim: int) -> list[tuple[int, ...]]:
        return []

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        if len(weights):
            raise ValueError(f"Masking has no weights, got {len(weights)} arrays")

    def get_config(self) -> dict[str, Any]:
        return {"mask_value": self.mask_value, "dtype": self.dtype.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Masking:
        return cls(**keras_io.constructor_kwargs(cls, config))

    def __repr__(self) -> str:
        return f"Masking(mask_value={self.mask_value}, dtype={self.dtype.name})"
