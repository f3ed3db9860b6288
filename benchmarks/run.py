"""Time fastlstm against its peers on a fixed grid and write RESULTS.md.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py [--quick]
        [--no-keras] [--per-isa-only]

Every implementation runs the same float32 problem (return_sequences=False)
in one process, one after the other, so ratios are taken under the same
machine load.  Each time is the median of many calls; GFLOP/s counts the
matmul FLOPs 2*B*T*4H*(I+H), and "% sgemm" compares them to a large float32
matmul measured in the same run, the practical ceiling of the machine.

Then, per instruction set the CPU can run (the kernel path forced, as
FASTLSTM_ISA does) and per dtype, fastlstm at 1 and all threads against the
same-run OpenBLAS GEMM of that ISA and dtype (benchmarks/ceiling.py in a
subprocess with OPENBLAS_CORETYPE=Haswell for AVX2, SkylakeX for AVX-512),
and the float64 rows against torch in float64.  --per-isa-only runs just
that part and rewrites just its section of RESULTS.md.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
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


def sample_seconds(fn, budget, min_calls=5):
    """Times of single calls of ``fn``, calling it for about ``budget`` s
    (at least ``min_calls`` times).

    A pause first lets the previous library's spinning worker threads
    (OpenBLAS, onnxruntime, fastlstm's pool) go to sleep: on 2 cores they
    would otherwise take one from ``fn``."""
    time.sleep(0.2)
    fn()                                    # warm up (allocations, caches)
    times = []
    deadline = time.perf_counter() + budget
    while len(times) < min_calls or (time.perf_counter() < deadline and len(times) < 10_000):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_seconds(fn, budget):
    """Median time of one call of ``fn``, calling it for about ``budget`` s."""
    return statistics.median(sample_seconds(fn, budget))


def medians_in_turns(calls, budget, rounds=5, min_calls=5):
    """``{(cell, name): median seconds}`` for ``calls`` (name -> callable),
    timed in blocks of ``budget / rounds`` seconds that take turns for
    ``rounds`` rounds, so that a change in the load of this shared machine
    (other processes, the host moving our virtual cores) hits every library
    alike instead of the one that happened to run then."""
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            times[name].extend(sample_seconds(call, budget / rounds, min_calls))
    return {name: statistics.median(samples) for name, samples in times.items()}


def lstm_flops(batch, steps, input_dim, units):
    return 2 * batch * steps * 4 * units * (input_dim + units)


# The OpenBLAS kernels of the same instruction set as each fastlstm path:
# OPENBLAS_CORETYPE selects them on any CPU that can run them.
CEILING_CORETYPES = {"sse2": "Nehalem", "avx2": "Haswell", "avx512": "SkylakeX"}


class Ceilings:
    """OpenBLAS's GEMM with each ISA's kernels: one benchmarks/ceiling.py
    process per ISA (OPENBLAS_CORETYPE is read once, at load), asked for a
    timing whenever one is wanted."""

    def __init__(self, isas):
        script = Path(__file__).with_name("ceiling.py")
        self.processes = {
            isa: subprocess.Popen([sys.executable, str(script)], text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  env=dict(os.environ, OPENBLAS_CORETYPE=CEILING_CORETYPES[isa]))
            for isa in isas}

    def measure(self, isa, dtype, threads, budget):
        """{"gflops", "kernel", "threads"}: a 2048³ GEMM of ``dtype``."""
        process = self.processes[isa]
        process.stdin.write(f"{np.dtype(dtype).name} {threads} {budget}\n")
        process.stdin.flush()
        reply = process.stdout.readline()
        if not reply:
            raise RuntimeError(f"benchmarks/ceiling.py for {isa} exited")
        return json.loads(reply)

    def close(self):
        for process in self.processes.values():
            process.stdin.close()
            process.wait(timeout=60)


def sgemm_gflops(budget, n=2048):
    a, b = np.random.default_rng(0).random((2, n, n), dtype=np.float32)
    return 2 * n**3 / median_seconds(lambda: a @ b, budget) / 1e9


def make_problem(batch, steps, input_dim, units, dtype=np.float32):
    rng = np.random.default_rng(0)
    weights = [rng.uniform(-0.3, 0.3, shape).astype(dtype)
               for shape in ((input_dim, 4 * units), (units, 4 * units), (4 * units,))]
    x = rng.normal(size=(batch, steps, input_dim)).astype(dtype)
    return weights, x


def fastlstm_runner(weights, x):
    layer = fastlstm.LSTM(weights[1].shape[0])
    layer.set_weights(weights)
    return lambda: layer(x)


def fastlstm_isa_runner(weights, x, isa, threads):
    """fastlstm on the ``isa`` path (set before each call: the runners take
    turns; the first call of a turn, untimed, repacks the weights)."""
    from fastlstm import _kernel

    layer = fastlstm.LSTM(weights[1].shape[0], dtype=x.dtype, num_threads=threads)
    layer.set_weights(weights)

    def run():
        _kernel.set_isa(isa)
        return layer(x)

    return run


def reference_runner(weights, x):
    return lambda: reference(x, *weights)[1]


def torch_runner(weights, x, threads):
    import torch

    layer = fastlstm.LSTM(weights[1].shape[0], dtype=x.dtype)
    layer.set_weights(weights)
    module, tensor = layer.to_torch(), torch.from_numpy(x)
    module.to(tensor.dtype)

    def run():
        torch.set_num_threads(threads)
        with torch.inference_mode():
            return module(tensor)[0][:, -1].numpy()

    return run


def onnx_model(weights, batch, steps, input_dim):
    """An ONNX graph with one LSTM node holding ``weights`` (Keras layout)."""
    from onnx import TensorProto, helper, numpy_helper

    from fastlstm.convert import keras_to_onnx

    units = weights[1].shape[0]
    W, R, B = keras_to_onnx([weights])     # gate order i, o, f, c
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["", "Y_h"], hidden_size=units)
    graph = helper.make_graph(
        [node], "lstm",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [steps, batch, input_dim])],
        [helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, batch, units])],
        initializer=[numpy_helper.from_array(np.asarray(a, np.float32), name)
                     for a, name in ((W, "W"), (R, "R"), (B, "B"))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def onnxruntime_runner(weights, x, threads):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    model = onnx_model(weights, *x.shape).SerializeToString()
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    # ONNX's LSTM is time-major; the transpose is left out of the timing,
    # which favours onnxruntime.
    feed = {"X": np.ascontiguousarray(x.transpose(1, 0, 2))}
    return lambda: session.run(["Y_h"], feed)[0][0]


def peers(threads):
    """name -> factory(weights, x) -> zero-argument callable returning h_T."""
    available = {"fastlstm": fastlstm_runner, "numpy reference": reference_runner}
    counts = [1, threads] if threads > 1 else [1]
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        for n in counts:
            available[f"torch {n}T"] = lambda w, x, n=n: torch_runner(w, x, n)
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        pass
    else:
        for n in counts:
            available[f"onnxruntime {n}T"] = lambda w, x, n=n: onnxruntime_runner(w, x, n)
    return available


def keras_tf_times(budget):
    """{cell: seconds} for Keras 3 on TensorFlow (own process), or an
    explanation string when it cannot run."""
    script = Path(__file__).with_name("keras_tf.py")
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    cells = [",".join(map(str, cell)) for cell in GRID]
    try:
        done = subprocess.run([sys.executable, str(script), str(budget), *cells], env=env,
                              capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        return "Keras/TensorFlow timed out"
    if done.returncode != 0:
        return "Keras/TensorFlow did not run: " + (done.stderr.strip().splitlines() or ["?"])[-1]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    times = {tuple(map(int, key.split(","))): value for key, value in report["cells"].items()}
    return times, report["version"]


def per_isa(budget, threads):
    """Per instruction set and dtype: {"times": {(isa, dtype, n, cell): s},
    "torch": {(dtype, n, cell): s}, "ceilings": {(isa, dtype, n, cell): ...}}.

    The runners of one cell and dtype (every ISA at 1 and ``threads``
    threads, and torch in float64) take turns in rounds; right after them
    each ISA's GEMM of that dtype is timed at the same thread counts, so a
    cell's ratio compares speeds measured under the same load."""
    from fastlstm import _kernel

    isas = [name for name in _kernel.supported_isas() if name in CEILING_CORETYPES]
    counts = sorted({1, threads})
    ceiling = Ceilings(isas)
    ceilings = {}
    previous = _kernel.isa()
    times, torch_times = {}, {}
    try:
        import torch  # noqa: F401
    except ImportError:
        torch = None
    cells = [(cell, dtype) for dtype in ("float32", "float64") for cell in GRID]
    for cell, dtype in tqdm(cells, desc="per ISA", file=sys.stderr):
        weights, x = make_problem(*cell, dtype=np.dtype(dtype))
        expected = reference(x, *weights)[1]
        calls = {(isa, n): fastlstm_isa_runner(weights, x, isa, n) for isa in isas for n in counts}
        if dtype == "float64" and torch is not None:
            calls.update({("torch", n): torch_runner(weights, x, n) for n in counts})
        for name, call in calls.items():
            np.testing.assert_allclose(call(), expected, rtol=1e-3, atol=1e-4,
                                       err_msg=f"{name} disagrees on {cell} {dtype}")
        # One call a block at least: a slow float64 call may take seconds.
        for (name, n), seconds in medians_in_turns(calls, budget, min_calls=1).items():
            if name == "torch":
                torch_times[dtype, n, cell] = seconds
            else:
                times[name, dtype, n, cell] = seconds
        for isa in isas:
            for n in counts:
                ceilings[isa, dtype, n, cell] = ceiling.measure(isa, dtype, n, budget)
    _kernel.set_isa(previous)
    ceiling.close()
    return {"times": times, "torch": torch_times, "ceilings": ceilings, "isas": isas,
            "counts": counts}


def per_isa_table(result):
    """Markdown: one row per (ISA, dtype, threads, cell)."""
    header = ["ISA", "dtype", "threads", "(B, T, I, H)", "fastlstm ms", "GFLOP/s",
              "OpenBLAS GEMM GFLOP/s (kernel)", "% of GEMM", "× vs torch (same threads)",
              "× vs best torch"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for isa in result["isas"]:
        for dtype in ("float32", "float64"):
            for n in result["counts"]:
                for cell in GRID:
                    ceiling = result["ceilings"][isa, dtype, n, cell]
                    ours = result["times"][isa, dtype, n, cell]
                    gflops = lstm_flops(*cell) / ours / 1e9
                    peer = result["torch"].get((dtype, n, cell))
                    best = min((result["torch"][dtype, m, cell] for m in result["counts"]
                                if (dtype, m, cell) in result["torch"]), default=None)
                    lines.append("| " + " | ".join([
                        isa, dtype, str(n), str(cell), f"{ours * 1e3:.3f}", f"{gflops:.1f}",
                        f"{ceiling['gflops']:.1f} ({ceiling['kernel']})",
                        f"{100 * gflops / ceiling['gflops']:.0f}%",
                        f"{peer / ours:.2f}" if peer else "-",
                        f"{best / ours:.2f}" if best else "-"]) + " |")
    return "\n".join(lines)


PER_ISA_HEADER = "## Per instruction set and dtype (benchmarks/run.py)"


def per_isa_section(table, args, budget_note):
    return f"""{PER_ISA_HEADER}

Command: `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py{
        ' --quick' if args.quick else ''}{' --per-isa-only' if args.per_isa_only else ''}`
Date: {datetime.date.today()}
Machine: {machine_description()}
CPU flags (SIMD): {cpu_simd_flags()}
{budget_note}

fastlstm with its kernel path forced (`_kernel.set_isa`, as FASTLSTM_ISA
does), return_sequences=False, median ms of single calls timed in 5 rounds
of blocks that take turns (every ISA and thread count, and torch in
float64, on one cell and dtype).  "% of GEMM": fastlstm's GFLOP/s over a
2048³ OpenBLAS GEMM of the same dtype and thread count with the same ISA's
kernels, timed right after the cell (OPENBLAS_CORETYPE=Haswell for avx2,
SkylakeX for avx512, set only in the ceiling's own process; the kernel
column is what threadpoolctl says ran).  torch runs in the layer's dtype,
at 1 and all threads.

{table}
"""


def cpu_simd_flags():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return " ".join(f for f in flags if f.startswith(("sse", "avx", "fma", "amx")))
    except OSError:
        pass
    return "unknown"


def replace_section(text, header, section):
    """``text`` with its ``header`` section (up to the next "## ") replaced
    by ``section``, or ``section`` appended."""
    start = text.find(header)
    if start < 0:
        return text.rstrip("\n") + "\n\n" + section
    end = text.find("\n## ", start + len(header))
    return text[:start] + section + (text[end + 1:] if end >= 0 else "")


MEMORY_CELLS = [(8, 100, 64, 128), (8, 10_000, 64, 128)]


def peak_memory():
    """{(implementation, cell): extra peak RSS bytes of one call} (benchmarks/memory.py)."""
    script = Path(__file__).with_name("memory.py")
    result = {}
    for name in ("fastlstm", "torch"):
        for cell in MEMORY_CELLS:
            done = subprocess.run([sys.executable, str(script), name, *map(str, cell)],
                                  capture_output=True, text=True, timeout=600)
            if done.returncode == 0:
                result[name, cell] = json.loads(done.stdout)["extra_peak_bytes"]
    return result


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
    parser.add_argument("--no-keras", action="store_true",
                        help="skip Keras/TensorFlow (slow to import)")
    parser.add_argument("--per-isa-only", action="store_true",
                        help="only the per-ISA/dtype section (vs same-ISA OpenBLAS ceilings)")
    parser.add_argument("--output", type=Path,
                        default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args(argv)
    budget = 0.1 if args.quick else 1.0
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load_before = os.getloadavg()
    if args.per_isa_only:
        write_per_isa(args, budget, threads, load_before)
        return
    runners = peers(threads)

    results = {}
    progress = tqdm(total=len(GRID) * len(runners), desc="grid", file=sys.stderr)
    for cell in GRID:
        weights, x = make_problem(*cell)
        calls = {name: make(weights, x) for name, make in runners.items()}
        expected = calls["numpy reference"]()
        for name, call in calls.items():
            progress.set_postfix_str(f"{cell} {name}")
            np.testing.assert_allclose(call(), expected, rtol=1e-3, atol=1e-4,
                                       err_msg=f"{name} disagrees on {cell}")
            progress.update()
        results.update({(cell, name): seconds
                        for name, seconds in medians_in_turns(calls, budget).items()})
    progress.close()
    # Last: OpenBLAS's threads keep spinning for a while after a GEMM and
    # would slow whatever ran next on this 2-core machine.
    ceiling = sgemm_gflops(budget)
    names = list(runners)
    notes = []
    if not args.no_keras:
        print("Keras/TensorFlow (own process) ...", file=sys.stderr)
        keras = keras_tf_times(budget)
        if isinstance(keras, str):
            notes.append(keras)
        else:
            times, version = keras
            notes.append(f"Keras/TensorFlow: {version}, `tf.function`, all threads")
            names.append("keras/tf")
            results.update({(cell, "keras/tf"): t for cell, t in times.items()})
    print("peak memory (own processes) ...", file=sys.stderr)
    memory = peak_memory()
    # Other processes on the machine show in the load average; with them,
    # multi-threaded peers (and fastlstm) lose more than single-threaded ones.
    notes.append("Load average (1 min) before / after the run: "
                 f"{load_before[0]:.2f} / {os.getloadavg()[0]:.2f}")

    table = format_table(results, names, ceiling)
    print(table)
    write_results(args, table, ceiling, memory_table(memory), notes)
    draw_chart(results, names, args.output.with_suffix(".png"))
    write_per_isa(args, budget, threads, os.getloadavg())


def write_per_isa(args, budget, threads, load_before):
    result = per_isa(budget, threads)
    table = per_isa_table(result)
    print(table)
    note = ("Load average (1 min) before / after: "
            f"{load_before[0]:.2f} / {os.getloadavg()[0]:.2f}")
    previous = args.output.read_text() if args.output.exists() else ""
    args.output.write_text(replace_section(previous, PER_ISA_HEADER,
                                           per_isa_section(table, args, note)))
    print(f"wrote {args.output}", file=sys.stderr)


def best_peer(results, names, cell):
    """Fastest of torch and onnxruntime (any thread count) on ``cell``."""
    peers = [n for n in names if n.startswith(("torch", "onnxruntime"))]
    return min(peers, key=lambda n: results[cell, n]) if peers else None


def format_table(results, names, ceiling):
    peer_names = [n for n in names if n != "fastlstm"]
    header = (["(B, T, I, H)"] + [f"{n} ms" for n in names]
              + ["fastlstm GFLOP/s", "% sgemm", "× vs best peer"]
              + [f"× vs {n}" for n in peer_names])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cell in GRID:
        ours = results[cell, "fastlstm"]
        gflops = lstm_flops(*cell) / ours / 1e9
        best = best_peer(results, names, cell)
        row = [str(cell)] + [f"{results[cell, n] * 1e3:.3f}" if (cell, n) in results else "-"
                             for n in names]
        row += [f"{gflops:.1f}", f"{100 * gflops / ceiling:.0f}%"]
        row += [f"{results[cell, best] / ours:.2f} ({best})" if best else "-"]
        row += [f"{results[cell, n] / ours:.2f}" if (cell, n) in results else "-"
                for n in peer_names]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def memory_table(memory):
    lines = ["| implementation | " + " | ".join(f"T={c[1]:,} (B={c[0]}, I={c[2]}, H={c[3]})"
                                               for c in MEMORY_CELLS) + " |",
             "|---|" + "---|" * len(MEMORY_CELLS)]
    for name in ("fastlstm", "torch"):
        cells = [f"{memory[name, c] / 2**20:.1f} MiB" if (name, c) in memory else "-"
                 for c in MEMORY_CELLS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw_chart(results, names, path):
    """Bar chart: fastlstm's speed-up over each peer, per grid cell (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peers = [n for n in names if n != "fastlstm"]
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(peers)
    for i, name in enumerate(peers):
        ratios = [results[c, name] / results[c, "fastlstm"] if (c, name) in results else 0
                  for c in GRID]
        ax.bar([k + i * width for k in range(len(GRID))], ratios, width, label=name)
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(GRID))], [str(c) for c in GRID])
    ax.set_xlabel("(batch, timesteps, input_dim, units)")
    ax.set_ylabel("peer time / fastlstm time (above 1: fastlstm faster)")
    ax.set_title("fastlstm forward pass vs peers (float32, return_sequences=False)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}", file=sys.stderr)


def write_results(args, table, ceiling, memory, notes):
    from fastlstm import _kernel

    versions = [f"fastlstm {fastlstm.__version__}", f"numpy {np.__version__}",
                f"Python {platform.python_version()}"]
    for module in ("torch", "onnxruntime"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            pass
    unset = all(v not in os.environ for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))
    command = "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py"
    extra = "".join(f"{note}\n" for note in notes)
    text = f"""# Forward-pass benchmark

Command: `{command}{' --quick' if args.quick else ''}`
Date: {datetime.date.today()}
Machine: {machine_description()}
Versions: {', '.join(versions)}
fastlstm kernel: {_kernel.isa()} instructions, thread pool {'on' if _kernel.THREAD_POOL else 'off'},
{_kernel.DEFAULT_THREADS} threads by default
BLAS (threadpoolctl): {blas_description()}
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for this run: {'yes' if unset else 'NO'}
Same-run float32 sgemm ceiling (2048³, NumPy): {ceiling:.1f} GFLOP/s
{extra}
float32, return_sequences=False; milliseconds are medians of single calls,
timed in 5 rounds of blocks that take turns between the libraries;
"× vs peer" is the peer's time divided by fastlstm's (above 1: fastlstm is
faster); "best peer" is the fastest of torch and onnxruntime at 1 thread
(1T) and at all threads.  onnxruntime gets its time-major input
pre-transposed, outside the timing.

{table}

![speed-ups]({args.output.with_suffix(".png").name})

Extra peak memory of one call (growth of the peak resident set, measured
in a fresh process after a one-step warm-up; return_sequences=False):

{memory}
"""
    # The file's "## " sections (bench_training.py's "## Training step",
    # notes written by hand) survive a rerun of this one.
    if args.output.exists():
        previous = args.output.read_text()
        kept = previous.find("\n## ")
        if kept >= 0:
            text = text.rstrip("\n") + "\n" + previous[kept:]
    args.output.write_text(text)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
