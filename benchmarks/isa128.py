"""The 128-bit path against the scalar one, 1 thread (issue 12's targets).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/isa128.py portable,sse2 float32

Each ISA's layer is timed in 5 rounds that take turns (best of 3 calls a
round, median of the rounds), and in each round the OpenBLAS GEMM (1024^3,
1 thread) with its 128-bit SSE kernels (OPENBLAS_CORETYPE=Nehalem, set only
in that subprocess) as the ceiling.  benchmarks/run.py --per-isa-only gives
the full grid against each ISA's ceiling.
"""
import os
import subprocess
import sys
import time

import numpy as np

import fastlstm
from fastlstm import _kernel

SHAPES = [(32, 100, 64, 256), (8, 1000, 64, 128)]
ISAS = sys.argv[1].split(",") if len(sys.argv) > 1 else ["portable", "sse2"]
dtype = np.dtype(sys.argv[2]) if len(sys.argv) > 2 else np.dtype(np.float32)

def flops(b, t, i, h):
    return 2 * b * t * 4 * h * (i + h)

CEIL = r'''
import numpy as np, time, sys
dt = np.dtype(sys.argv[1]); n = 1024
a = np.random.default_rng(0).random((n, n)).astype(dt); b = a.copy()
a @ b
best = []
for _ in range(7):
    t = time.perf_counter(); a @ b; best.append(time.perf_counter() - t)
from threadpoolctl import threadpool_info
core = [l.get("architecture") for l in threadpool_info() if l.get("user_api") == "blas"]
print(2 * n**3 / np.median(best) / 1e9, core)
'''

def ceiling(coretype):
    env = dict(os.environ, OPENBLAS_CORETYPE=coretype, OPENBLAS_NUM_THREADS="1")
    env.pop("OPENBLAS_L2_SIZE", None)
    out = subprocess.run([sys.executable, "-c", CEIL, dtype.name], env=env,
                         capture_output=True, text=True, check=True).stdout
    return out.strip()

layers = {}
rng = np.random.default_rng(0)
for shape in SHAPES:
    b, t, i, h = shape
    x = rng.standard_normal((b, t, i)).astype(dtype)
    for isa in ISAS:
        _kernel.set_isa(isa)
        layer = fastlstm.LSTM(h, dtype=dtype.name, num_threads=1, seed=0)
        layer(x)
        layers[shape, isa] = (layer, x)
times = {k: [] for k in layers}
ceilings = []
for _ in range(5):
    ceilings.append(ceiling("Nehalem"))
    for key, (layer, x) in layers.items():
        _kernel.set_isa(key[1])     # a layer repacks for the current ISA
        layer(x)
        assert layer._packed.isa == key[1]
        reps = []
        for _ in range(3):
            t0 = time.perf_counter()
            layer(x)
            reps.append(time.perf_counter() - t0)
        times[key].append(min(reps))
print("ceilings (GFLOP/s, core):", ceilings)
ceil = np.median([float(c.split()[0]) for c in ceilings])
for shape in SHAPES:
    row = {isa: np.median(times[shape, isa]) for isa in ISAS}
    g = {isa: flops(*shape) / row[isa] / 1e9 for isa in ISAS}
    print(shape,
          {isa: f"{1e3*row[isa]:.1f} ms {g[isa]:.1f} GF/s {100*g[isa]/ceil:.0f}%"
           for isa in ISAS},
          "ratio", {isa: round(row[ISAS[0]] / row[isa], 2) for isa in ISAS[1:]})
print("load", os.getloadavg())
