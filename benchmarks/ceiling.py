"""OpenBLAS's GEMM speed in this process: the ceiling for one instruction set.

run.py starts one of these per instruction set, with OPENBLAS_CORETYPE set
for that process only (OpenBLAS reads it once, at load: Haswell selects its
AVX2+FMA kernels, SkylakeX its AVX-512 ones, on any CPU that can run them),
and asks it for a timing after each benchmark cell, so that every ratio
compares two speeds measured under the same load of a shared machine.

Protocol: each line read from stdin is ``dtype threads budget``; the reply
is one JSON line: GFLOP/s of a 2048³ GEMM of that dtype at that thread
count (median of calls for about ``budget`` seconds), and the kernel that
ran, as threadpoolctl reports it.
"""
import json
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

N = 2048
OPERANDS = {np.dtype(t): np.random.default_rng(0).random((2, N, N)).astype(t)
            for t in (np.float32, np.float64)}


def gemm_gflops(dtype, budget):
    a, b = OPERANDS[np.dtype(dtype)]
    a @ b                                   # warm up (and wake the threads)
    times = []
    deadline = time.perf_counter() + budget
    while len(times) < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * N**3 / statistics.median(times) / 1e9


def measure(dtype, threads, budget):
    with threadpool_limits(int(threads), user_api="blas"):
        gflops = gemm_gflops(dtype, float(budget))
        blas = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return {"gflops": gflops,
            "kernel": ", ".join(f"{p['internal_api']} {p.get('architecture')}" for p in blas),
            "threads": [p["num_threads"] for p in blas]}


if __name__ == "__main__":
    for line in sys.stdin:
        print(json.dumps(measure(*line.split())), flush=True)
