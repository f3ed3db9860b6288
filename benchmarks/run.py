"""Time fastlstm against its peers on a fixed grid and write RESULTS.md.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py [--quick]

Every implementation runs the same float32 problem (return_sequences=False)
in one process, one after the other, so ratios are taken under the same
machine load.  Each time is the median of many calls; GFLOP/s counts the
matmul FLOPs 2*B*T*4H*(I+H), and "% sgemm" compares them to a large float32
matmul measured in the same run, the practical ceiling of the machine.
"""
import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info
from tqdm import tqdm

import fastlstm
from fastlstm.reference import lstm as reference

GRID = [  # (batch, timesteps, input_dim, units)
    (100, 4, 10, 16),
    (1, 100, 32, 64),
    (32, 100, 64, 256),
    (64, 50, 256, 512),
    (8, 1000, 64, 128),
]


def median_seconds(fn, budget):
    """Median time of one call of ``fn``, calling it for about ``budget`` s."""
    fn()                                    # warm up (allocations, caches)
    times = []
    deadline = time.perf_counter() + budget
    while len(times) < 5 or (time.perf_counter() < deadline and len(times) < 10_000):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def lstm_flops(batch, steps, input_dim, units):
    return 2 * batch * steps * 4 * units * (input_dim + units)


def sgemm_gflops(budget, n=2048):
    a, b = np.random.default_rng(0).random((2, n, n), dtype=np.float32)
    return 2 * n**3 / median_seconds(lambda: a @ b, budget) / 1e9


def make_problem(batch, steps, input_dim, units):
    rng = np.random.default_rng(0)
    weights = [rng.uniform(-0.3, 0.3, shape).astype(np.float32)
               for shape in ((input_dim, 4 * units), (units, 4 * units), (4 * units,))]
    x = rng.normal(size=(batch, steps, input_dim)).astype(np.float32)
    return weights, x


def fastlstm_runner(weights, x):
    layer = fastlstm.LSTM(weights[1].shape[0])
    layer.set_weights(weights)
    return lambda: layer(x)


def reference_runner(weights, x):
    return lambda: reference(x, *weights)[1]


def torch_runner(weights, x, threads):
    import torch

    layer = fastlstm.LSTM(weights[1].shape[0])
    layer.set_weights(weights)
    module, tensor = layer.to_torch(), torch.from_numpy(x)

    def run():
        torch.set_num_threads(threads)
        with torch.inference_mode():
            return module(tensor)[0][:, -1].numpy()

    return run


def peers(threads):
    """name -> factory(weights, x) -> zero-argument callable returning h_T."""
    available = {"fastlstm": fastlstm_runner, "numpy reference": reference_runner}
    try:
        import torch  # noqa: F401
    except ImportError:
        return available
    available["torch 1 thread"] = lambda w, x: torch_runner(w, x, 1)
    if threads > 1:
        available[f"torch {threads} threads"] = lambda w, x: torch_runner(w, x, threads)
    return available


def machine_description():
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} logical cores, {cpu}, {platform.system()} {platform.machine()}"


def blas_description():
    rows = []
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            rows.append(f"{pool['internal_api']} {pool.get('version')} "
                        f"(core {pool.get('architecture')}, {pool['num_threads']} threads, "
                        f"{Path(pool['filepath']).name})")
    return "; ".join(rows) or "none found"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short timing budget")
    parser.add_argument("--output", type=Path,
                        default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args(argv)
    budget = 0.1 if args.quick else 1.0
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    runners = peers(threads)

    ceiling = sgemm_gflops(budget)
    results = {}
    for cell in tqdm(GRID, desc="grid", file=sys.stderr):
        weights, x = make_problem(*cell)
        calls = {name: make(weights, x) for name, make in runners.items()}
        expected = calls["numpy reference"]()
        for name, call in calls.items():
            np.testing.assert_allclose(call(), expected, rtol=1e-3, atol=1e-4,
                                       err_msg=f"{name} disagrees on {cell}")
            results[cell, name] = median_seconds(call, budget)

    table = format_table(results, runners, ceiling)
    print(table)
    write_results(args, table, ceiling)


def format_table(results, runners, ceiling):
    names = list(runners)
    peer_names = [n for n in names if n != "fastlstm"]
    header = (["(B, T, I, H)"] + [f"{n} ms" for n in names]
              + ["fastlstm GFLOP/s", "% sgemm"] + [f"× vs {n}" for n in peer_names])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cell in GRID:
        ours = results[cell, "fastlstm"]
        gflops = lstm_flops(*cell) / ours / 1e9
        row = [str(cell)] + [f"{results[cell, n] * 1e3:.3f}" for n in names]
        row += [f"{gflops:.1f}", f"{100 * gflops / ceiling:.0f}%"]
        row += [f"{results[cell, n] / ours:.2f}" for n in peer_names]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_results(args, table, ceiling):
    versions = [f"fastlstm {fastlstm.__version__}", f"numpy {np.__version__}",
                f"Python {platform.python_version()}"]
    try:
        import torch
        versions.append(f"torch {torch.__version__}")
    except ImportError:
        pass
    unset = all(v not in os.environ for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))
    command = "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py"
    text = f"""# Forward-pass benchmark

Command: `{command}{' --quick' if args.quick else ''}`
Date: {datetime.date.today()}
Machine: {machine_description()}
Versions: {', '.join(versions)}
BLAS (threadpoolctl): {blas_description()}
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for this run: {'yes' if unset else 'NO'}
Same-run float32 sgemm ceiling (2048³, NumPy): {ceiling:.1f} GFLOP/s

float32, return_sequences=False; milliseconds are medians of one call;
"× vs peer" is the peer's time divided by fastlstm's (above 1: fastlstm is faster).

{table}
"""
    args.output.write_text(text)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
