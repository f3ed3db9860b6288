"""fastlstm: Keras's LSTM layer on a fast CPU kernel, weights compatible with
Keras and PyTorch."""
try:
    from . import _kernel  # noqa: F401  the compiled kernel, missing in an unbuilt checkout
except ImportError as _error:
    from ._checkout import uncompiled_error
    raise uncompiled_error(_error) from None
from ._version import __version__
from .bidirectional import Bidirectional
from .buildinfo import show_config
from .layer import LSTM
from .masking import Masking
from .models import from_keras, from_torch, load, load_keras_weights
from .sequential import Sequential

__all__ = ["LSTM", "Bidirectional", "Masking", "Sequential", "from_keras", "from_torch",
           "load", "load_keras_weights", "show_config", "__version__"]


def __getattr__(name: str) -> object:
    """``fastlstm.torch`` (the ``torch.nn.LSTM`` drop-in) is imported on first
    use, so that ``import fastlstm`` never imports PyTorch."""
    if name == "torch":
        import importlib
        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
