"""Training step of two builds of fastlstm against each other, in one run.

Each build is a source tree with its extension built in place (`python
setup.py build_ext --inplace`); every timing runs in a fresh child process
that imports fastlstm from one tree, and the trees take turns (the order
flips every round), so load that comes and goes hits both alike.  Used to
check that a restructure did not change speed:

    git worktree add /tmp/old 60b0553 && (cd /tmp/old && python setup.py build_ext --inplace)
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        python benchmarks/ab_training.py --old /tmp/old --new .

A step is `layer(x, training=True)` with return_sequences plus
`layer.backward(d_out, input_gradient=False)`, float32; each child times 5
steps after 2 warm-up steps.  Prints medians and minima in ms and old/new
(above 1: the new build is faster).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

CELLS = [(32, 100, 64, 256), (64, 50, 256, 512)]

CHILD = r'''
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
import fastlstm
batch, steps, features, units, threads = map(int, sys.argv[2:7])
rng = np.random.default_rng(0)
x = rng.normal(size=(batch, steps, features)).astype(np.float32)
d_out = rng.normal(size=(batch, steps, units)).astype(np.float32)
layer = fastlstm.LSTM(units, return_sequences=True, num_threads=threads, seed=1)
layer.build(features)
def step():
    layer(x, training=True)
    layer.backward(d_out, input_gradient=False)
step(); step()
times = []
for _ in range(5):
    start = time.perf_counter(); step(); times.append(time.perf_counter() - start)
print(json.dumps(times))
'''


def time_tree(tree, cell, threads):
    out = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(tree),
                          *map(str, cell), str(threads)],
                         capture_output=True, text=True, check=True, cwd=os.sep)
    return json.loads(out.stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="source tree of the old build")
    parser.add_argument("--new", required=True, help="source tree of the new build")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    trees = [("old", args.old), ("new", args.new)]
    times = {}
    for round_ in range(args.rounds):
        for cell in CELLS:
            for threads in (1, 2):
                for name, tree in (trees if round_ % 2 == 0 else trees[::-1]):
                    times.setdefault((cell, threads, name), []).extend(
                        time_tree(tree, cell, threads))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("| cell | threads | old median (min) ms | new median (min) ms | old/new median (min) |")
    print("|---|---|---|---|---|")
    for cell in CELLS:
        for threads in (1, 2):
            old, new = times[(cell, threads, "old")], times[(cell, threads, "new")]
            print(f"| {cell} | {threads}"
                  f" | {1e3 * statistics.median(old):.1f} ({1e3 * min(old):.1f})"
                  f" | {1e3 * statistics.median(new):.1f} ({1e3 * min(new):.1f})"
                  f" | {statistics.median(old) / statistics.median(new):.2f}"
                  f" ({min(old) / min(new):.2f}) |")


if __name__ == "__main__":
    main()
