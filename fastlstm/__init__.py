"""fastlstm: Keras's LSTM layer on a fast CPU kernel, weights compatible with
Keras and PyTorch."""
from ._version import __version__
from .layer import LSTM

__all__ = ["LSTM", "__version__"]
