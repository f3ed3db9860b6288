"""``python -m fastlstm``: the tutorial's example, end to end
(``python -m fastlstm --config``: how this fastlstm was built, see
``fastlstm.show_config``).

Runs LSTM(16) on a batch of 100 one-hot sequences of shape (4, 10) in the
four return modes, prints their shapes and the parameter count, checks the
numbers against the NumPy reference (and PyTorch if installed), and times
one call of each library on one thread and on all threads.

The timing is meant to survive a busy machine: every (library, threads)
pair is warmed up, then timed in rounds in which the pairs take turns in a
rotating order, each round a block of calls long enough for the clock; the
median over rounds is printed, so a burst of load hits every library alike
and is voted out.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import LSTM, __version__, _kernel, show_config
from .reference import lstm as reference

ROUNDS = 7
BLOCK_SECONDS = 0.01     # one round's block of calls of one (library, threads) pair

# How to install a missing peer (PyPI's torch on Linux is the multi-GB CUDA build).
TORCH_HINT = ("PyTorch is not installed, so it is not compared: "
              "pip install torch --index-url https://download.pytorch.org/whl/cpu")
THREADPOOLCTL_HINT = ("threadpoolctl is not installed, so the NumPy reference runs with "
                      "its BLAS's default threads in both columns: pip install threadpoolctl")

# A library's call on a given number of threads: threads -> (context, call).
Runner = Callable[[int], tuple[contextlib.AbstractContextManager[Any], Callable[[], Any]]]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # macOS, Windows
        return os.cpu_count() or 1


def _fastlstm(base: LSTM, x: np.ndarray[Any, Any]) -> Runner:
    layers: dict[int, LSTM] = {}

    def runner(threads: int) -> tuple[contextlib.AbstractContextManager[Any], Callable[[], Any]]:
        if threads not in layers:
            layers[threads] = LSTM(16, num_threads=threads)
            layers[threads].set_weights(base.get_weights())
        layer = layers[threads]
        return contextlib.nullcontext(), lambda: layer(x)

    return runner


def _torch(base: LSTM, x: np.ndarray[Any, Any]) -> tuple[Runner, Callable[[], Any]] | None:
    """torch.nn.LSTM with the layer's weights, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    module, tensor = base.to_torch(), torch.from_numpy(x)

    def call() -> Any:
        with torch.inference_mode():
            return module(tensor)[0][:, -1].numpy()

    @contextlib.contextmanager
    def threads_set(threads: int) -> Iterator[None]:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    def runner(threads: int) -> tuple[contextlib.AbstractContextManager[Any], Callable[[], Any]]:
        return threads_set(threads), call

    return runner, call


def _numpy_reference(base: LSTM, x: np.ndarray[Any, Any]) -> tuple[Runner, bool]:
    """The NumPy reference, with its BLAS limited by threadpoolctl if installed."""
    weights = base.get_weights()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None

    def runner(threads: int) -> tuple[contextlib.AbstractContextManager[Any], Callable[[], Any]]:
        context: contextlib.AbstractContextManager[Any] = (
            contextlib.nullcontext() if threadpool_limits is None
            else threadpool_limits(limits=threads, user_api="blas"))
        return context, lambda: reference(x, *weights)

    return runner, threadpool_limits is not None


def _calls_per_block(call: Callable[[], Any]) -> int:
    """Warm up ``call`` and return how many calls fill BLOCK_SECONDS."""
    call()
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            call()
        if time.perf_counter() - start >= BLOCK_SECONDS or number >= 1 << 16:
            return number
        number *= 2


def time_in_turns(runners: dict[str, Runner], thread_counts: list[int],
                  rounds: int = ROUNDS) -> dict[tuple[str, int], float]:
    """Median seconds of one call for every (library, threads) pair, the
    pairs taking turns in each round in a rotated order."""
    pairs = [(name, threads) for name in runners for threads in thread_counts]
    calls_per_block = {}
    for name, threads in pairs:
        context, call = runners[name](threads)
        with context:
            calls_per_block[name, threads] = _calls_per_block(call)
    samples: dict[tuple[str, int], list[float]] = {pair: [] for pair in pairs}
    for turn in range(rounds):
        shift = turn % len(pairs)
        for name, threads in pairs[shift:] + pairs[:shift]:
            number = calls_per_block[name, threads]
            context, call = runners[name](threads)
            with context:
                start = time.perf_counter()
                for _ in range(number):
                    call()
                samples[name, threads].append((time.perf_counter() - start) / number)
    return {pair: statistics.median(times) for pair, times in samples.items()}


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

    ours = base(x)
    expected = reference(x, *base.get_weights())[1]
    print(f"max |fastlstm - NumPy reference| = {np.abs(ours - expected).max():.2e}")
    runners: dict[str, Runner] = {"fastlstm": _fastlstm(base, x)}
    notes = []
    torch_peer = _torch(base, x)
    if torch_peer is None:
        notes.append(TORCH_HINT)
    else:
        runners["torch.nn.LSTM"], torch_call = torch_peer
        print(f"max |fastlstm - torch.nn.LSTM|    = {np.abs(ours - torch_call()).max():.2e}")
    runners["NumPy reference"], limited = _numpy_reference(base, x)
    if not limited:
        notes.append(THREADPOOLCTL_HINT)

    cpus = _cpus()
    thread_counts = [1] if cpus == 1 else [1, cpus]
    medians = time_in_turns(runners, thread_counts)
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"\nmedian time of one call over {ROUNDS} rounds in which the libraries take turns "
          f"(after a warm-up), {cpus} CPUs{load}:")
    print(" " * 18 + "".join(f"{f'{t} thread' + 's' * (t > 1):>13}{'':8}"
                             for t in thread_counts))
    for name in runners:
        cells = "".join(
            f"{1e3 * medians[name, t]:10.3f} ms{medians[name, t] / medians['fastlstm', t]:8.1f}x"
            for t in thread_counts)
        print(f"  {name:16}{cells}")
    print("  (x: time over fastlstm's on as many threads; on a busy machine threads wait for "
          "cores, so compare ratios)")
    for note in notes:
        print(note)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fastlstm",
        description="Run the tutorial's example: LSTM(16) checked against the NumPy "
                    "reference (and PyTorch) and timed against them.")
    parser.add_argument("--config", action="store_true",
                        help="print the build configuration instead of running the example")
    if parser.parse_args().config:
        show_config()
    else:
        tutorial()


if __name__ == "__main__":
    main()
