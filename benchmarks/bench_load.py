"""Time of ``fastlstm.load`` on saved models, against the time to read
their arrays with NumPy alone (the floor: loading should cost what the
file holds, not an initialisation of weights it then overwrites).

    python benchmarks/bench_load.py [--quick]

Prints one row per model: file size, median load time, median
``np.load`` time of the same file and their ratio, over alternating rounds.
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np

import fastlstm

MODELS = {
    "LSTM(1024), input 1024": lambda: fastlstm.Sequential(
        [fastlstm.LSTM(1024, seed=0)], input_shape=(None, 1024)),
    "Bidirectional(LSTM(512)) + LSTM(512)": lambda: fastlstm.Sequential(
        [fastlstm.Bidirectional(fastlstm.LSTM(512, return_sequences=True, seed=1)),
         fastlstm.LSTM(512, seed=2)], input_shape=(None, 256)),
}


def _numpy_load(path):
    with np.load(path, allow_pickle=False) as data:
        return [data[name] for name in data.files]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    rounds = 3 if parser.parse_args().quick else 7
    print(f"fastlstm {fastlstm.__version__} from {os.path.dirname(fastlstm.__file__)}")
    print(f"{'model':40} {'file MB':>8} {'load ms':>9} {'np.load ms':>11} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as folder:
        for name, make in MODELS.items():
            path = os.path.join(folder, "model.npz")
            make().save(path)
            times = {"fastlstm": [], "numpy": []}
            for _ in range(rounds):       # alternating, so load changes hit both alike
                for which, load in (("fastlstm", fastlstm.load), ("numpy", _numpy_load)):
                    start = time.perf_counter()
                    load(path)
                    times[which].append(time.perf_counter() - start)
            ours, floor = (1e3 * statistics.median(times[k]) for k in ("fastlstm", "numpy"))
            print(f"{name:40} {os.path.getsize(path) / 1e6:8.1f} {ours:9.1f} {floor:11.1f} "
                  f"{ours / floor:6.1f}")


if __name__ == "__main__":
    main()
