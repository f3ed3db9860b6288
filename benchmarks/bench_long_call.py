"""One long call with a batch of one: default threads against one thread.

    python benchmarks/bench_long_call.py [--quick] [--timesteps T]

With B=1 the kernel's threads share the units step by step, handing h
between cores every step; that pays only while the other cores are free.
Run it on an idle and on a busy machine: with threads the call should
never be much slower than alone.  Prints the median of alternating rounds.
"""
import argparse
import statistics
import time

import numpy as np

import fastlstm
from fastlstm import _kernel


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    parser.add_argument("--timesteps", type=int, default=20000)
    arguments = parser.parse_args()
    features, units = 32, 256
    x = np.random.default_rng(0).uniform(-1, 1, (1, arguments.timesteps, features))
    x = x.astype(np.float32)
    layers = {"default": fastlstm.LSTM(units, seed=0),
              "1 thread": fastlstm.LSTM(units, seed=0, num_threads=1)}
    for layer in layers.values():
        layer(x[:, :10])              # pack the weights, start the pool
    times = {name: [] for name in layers}
    for _ in range(3 if arguments.quick else 7):
        for name, layer in layers.items():
            start = time.perf_counter()
            layer(x)
            times[name].append(time.perf_counter() - start)
    threads, how = _kernel.plan(1, arguments.timesteps, features, units,
                                _kernel.DEFAULT_THREADS)
    print(f"B=1, T={arguments.timesteps}, I={features}, H={units}; plan: {threads} threads "
          f"sharing {how}")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"{name:>9}: {1e3 * median:8.1f} ms  (rounds: "
              f"{', '.join(f'{1e3 * t:.0f}' for t in times[name])})")
    print(f"default / 1 thread: {medians['default'] / medians['1 thread']:.2f}")


if __name__ == "__main__":
    main()
