"""``fastlstm.Masking``: Keras's Masking layer, for stacks imported from Keras."""
import numpy as np

from . import validation


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

    def __init__(self, mask_value=0.0, dtype="float32"):
        if isinstance(mask_value, bool) or not isinstance(mask_value, (int, float)):
            raise TypeError(f"mask_value must be a number, got {mask_value!r}")
        self.mask_value = float(mask_value)
        self.dtype = validation.layer_dtype(dtype)
        self.return_sequences = True     # the output keeps the time axis
        self.built = True

    def compute_mask(self, x):
        """The boolean mask (batch, timesteps) for ``x``."""
        x = validation.inputs(x, None, self.dtype)
        return np.any(x != self.mask_value, axis=-1)

    def __call__(self, x, mask=None):
        """``x`` with masked steps zeroed; an incoming ``mask`` is ignored, as in Keras."""
        x = validation.inputs(x, None, self.dtype)
        return x * np.any(x != self.mask_value, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_params(self):
        return 0

    def get_weights(self):
        return []

    def set_weights(self, weights):
        if len(weights):
            raise ValueError(f"Masking has no weights, got {len(weights)} arrays")

    def get_config(self):
        return {"mask_value": self.mask_value, "dtype": self.dtype.name}

    @classmethod
    def from_config(cls, config):
        from . import serialization
        return cls(**serialization.constructor_kwargs(cls, config))

    def __repr__(self):
        return f"Masking(mask_value={self.mask_value}, dtype={self.dtype.name})"
