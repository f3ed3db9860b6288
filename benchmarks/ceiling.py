"""OpenBLAS's GEMM speed in this process: the ceiling for one instruction set.

    OPENBLAS_CORETYPE=Haswell python benchmarks/ceiling.py float32 1 1.0

run.py starts this script in a subprocess with OPENBLAS_CORETYPE set for
that process only (OpenBLAS reads it once, at load): Haswell selects its
AVX2+FMA kernels, SkylakeX its AVX-512 ones, on any CPU that can run them.
Prints one JSON line: GFLOP/s of a 2048³ GEMM of the dtype at the thread
count (median of calls for about ``budget`` seconds), and the kernel that
ran, as threadpoolctl reports it.
"""
import json
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits


def gemm_gflops(dtype, budget, n=2048):
    a, b = np.random.default_rng(0).random((2, n, n)).astype(dtype)
    a @ b                                   # warm up
    times = []
    deadline = time.perf_counter() + budget
    while len(times) < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def main(dtype, threads, budget):
    with threadpool_limits(int(threads), user_api="blas"):
        gflops = gemm_gflops(np.dtype(dtype), float(budget))
        blas = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
    print(json.dumps({
        "gflops": gflops,
        "kernel": ", ".join(f"{p['internal_api']} {p.get('architecture')}" for p in blas),
        "threads": [p["num_threads"] for p in blas],
    }))


if __name__ == "__main__":
    main(*sys.argv[1:])
