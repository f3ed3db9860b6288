"""``python -m fastlstm``: the tutorial's example, end to end
(``python -m fastlstm --config``: how this fastlstm was built, see
``fastlstm.show_config``; ``python -m fastlstm summary PATH``: the summary
of a .keras, legacy .h5 or fastlstm .npz model file).

Runs LSTM(16) on a batch of 100 one-hot sequences of shape (4, 10) in the
four return modes, prints their shapes and the parameter count, checks the
numbers against the NumPy reference (and PyTorch if installed), and times
one call of each.
"""
from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np

from . import LSTM, __version__, _kernel, show_config
from .reference import lstm as reference


def _milliseconds(call: Callable[[], object]) -> float:
    runs, total = timeit.Timer(call).autorange()
    best = min(timeit.repeat(call, number=runs, repeat=5))
    return 1e3 * best / runs


def _torch_call(layer: LSTM, x: np.ndarray[Any, Any]) -> Callable[[], Any] | None:
    """torch.nn.LSTM with the layer's weights, as a call, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    module, tensor = layer.to_torch(), torch.from_numpy(x)

    def call() -> Any:
        with torch.inference_mode():
            return module(tensor)[0][:, -1].numpy()

    return call


def tutorial() -> None:
    digits = np.random.default_rng(0).integers(0, 10, size=(100, 4))
    x = np.eye(10, dtype=np.float32)[digits]            # one-hot, (100, 4, 10)
    kernel = _kernel.info()
    print(f"fastlstm {__version__}: LSTM(16) on input of shape {x.shape}")
    print(f"kernel: {kernel['isa']} instructions (CPU supports {kernel['supported_isas']}), "
          f"thread pool {'on' if kernel['thread_pool'] else 'off'}, "
          f"{kernel['default_threads']} threads by default\n")

    base = LSTM(16, seed=0)
    base.build(x.shape)
    for sequences in (False, True):
        for state in (False, True):
            layer = LSTM(16, return_sequences=sequences, return_state=state)
            layer.set_weights(base.get_weights())
            result = layer(x)
            shapes = [r.shape for r in result] if isinstance(result, list) else result.shape
            print(f"return_sequences={sequences!s:5} return_state={state!s:5} -> {shapes}")
    print(f"\nparameters: {base.count_params():,}")

    weights = base.get_weights()
    ours = base(x)
    expected = reference(x, *weights)[1]
    print(f"max |fastlstm - NumPy reference| = {np.abs(ours - expected).max():.2e}")
    timings = {"fastlstm": _milliseconds(lambda: base(x)),
               "NumPy reference": _milliseconds(lambda: reference(x, *weights))}
    torch_call = _torch_call(base, x)
    if torch_call is not None:
        print(f"max |fastlstm - torch.nn.LSTM|    = {np.abs(ours - torch_call()).max():.2e}")
        timings["torch.nn.LSTM"] = _milliseconds(torch_call)
    print("\nbest time of one call:")
    for name, ms in timings.items():
        print(f"  {name:16} {ms:8.3f} ms  ({ms / timings['fastlstm']:.1f}x fastlstm's time)")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fastlstm",
        description="Run the tutorial's example: LSTM(16) checked against the NumPy "
                    "reference (and PyTorch) and timed.")
    parser.add_argument("--config", action="store_true",
                        help="print the build configuration instead of running the example")
    parser.add_argument("command", nargs="?", choices=["summary"],
                        help="summary PATH: print the layers of a .keras, legacy .h5 or "
                             "fastlstm .npz model file")
    parser.add_argument("path", nargs="?", help="the model file (with summary)")
    args = parser.parse_args()
    if args.command == "summary":
        if args.path is None:
            parser.error("summary needs a PATH")
        summary(args.path)
    elif args.config:
        show_config()
    else:
        tutorial()


def summary(path: str) -> None:
    """Print the summary of the model in ``path``."""
    from . import from_keras, load
    model = load(path) if path.endswith(".npz") else from_keras(path)
    if hasattr(model, "summary"):
        model.summary()
    else:       # a single layer
        print(f"{model!r}: {model.count_params():,} parameters")


if __name__ == "__main__":
    main()
