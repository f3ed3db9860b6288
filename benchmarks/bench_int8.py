"""Time int8 inference (fastlstm.quantize_dynamic) against fastlstm float32,
torch's quantize_dynamic LSTM and ONNX Runtime's quantized LSTM.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_int8.py [--quick]

One process, the same float32 weights and inputs for everyone
(return_sequences=False), at 1 thread and at all threads.  Libraries take
turns in blocks (run.py's ``medians_in_turns``), so load changes on a shared
machine hit them alike; times are medians.  Peers:

  fastlstm f32    fastlstm.LSTM
  fastlstm int8   fastlstm.quantize_dynamic(layer)
  torch int8      torch.ao.quantization.quantize_dynamic(nn.LSTM, qint8):
                  FBGEMM, weights per tensor, activations uint8 (7 bits)
  ort int8        onnxruntime.quantization.quantize_dynamic of an ONNX LSTM
                  (op_types_to_quantize=["LSTM"]: DynamicQuantizeLSTM)

Also reported: max |int8 - float32| of each library's h_T on these
(standardised, normal) inputs, and which kernel fastlstm's int8 layer ran
(FASTLSTM_INT8_ISA forces one; it runs the float32 kernel on the
dequantised weights where int8 cannot win, see
fastlstm.quantization.prefers_int8).  The result table goes into
RESULTS.md as the section "## int8 inference".
"""
import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from run import GRID, machine_description, make_problem, medians_in_turns, onnx_model

import fastlstm
from fastlstm import _kernel, quantization

SECTION = "## int8 inference"


def fastlstm_runners(weights, x, threads):
    layer = fastlstm.LSTM(weights[1].shape[0], num_threads=threads)
    layer.set_weights(weights)
    quantized = fastlstm.quantize_dynamic(layer)
    return (lambda: layer(x)), (lambda: quantized(x))


def torch_runner(weights, x, threads):
    layer = fastlstm.LSTM(weights[1].shape[0])
    layer.set_weights(weights)
    # torch swaps submodules only: the LSTM goes in a container.
    container = torch.nn.ModuleDict({"lstm": layer.to_torch().eval()})
    module = torch.ao.quantization.quantize_dynamic(container, {torch.nn.LSTM},
                                                    dtype=torch.qint8)["lstm"]
    tensor = torch.from_numpy(x)

    def run():
        torch.set_num_threads(threads)
        with torch.inference_mode():
            return module(tensor)[0][:, -1].numpy()

    return run


def ort_runner(weights, x, threads):
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder, "lstm.onnx"), Path(folder, "lstm_int8.onnx")
        source.write_bytes(onnx_model(weights, *x.shape).SerializeToString())
        quantize_dynamic(source, target, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["LSTM"])
        model = target.read_bytes()
    if b"DynamicQuantizeLSTM" not in model:
        raise RuntimeError("onnxruntime did not quantize the LSTM node")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    # Time-major input, transposed outside the timing (favours onnxruntime).
    feed = {"X": np.ascontiguousarray(x.transpose(1, 0, 2))}
    return lambda: session.run(["Y_h"], feed)[0][0]


def ort_available():
    try:
        import onnx  # noqa: F401
        import onnxruntime.quantization  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short timing budget")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args(argv)
    budget = 0.3 if args.quick else 2.0
    all_threads = _kernel.DEFAULT_THREADS
    counts = [1, all_threads] if all_threads > 1 else [1]
    with_ort = ort_available()
    load_before = os.getloadavg()[0]
    rows = []
    for cell in GRID:
        weights, x = make_problem(*cell)
        path = _kernel.int8_kernel() if quantization.prefers_int8(cell[2], cell[3]) else "float32"
        for threads in counts:
            ours_f32, ours_int8 = fastlstm_runners(weights, x, threads)
            calls = {"fastlstm f32": ours_f32, "fastlstm int8": ours_int8,
                     "torch int8": torch_runner(weights, x, threads)}
            if with_ort:
                calls["ort int8"] = ort_runner(weights, x, threads)
            exact = ours_f32()
            errors = {name: float(np.abs(call() - exact).max()) for name, call in calls.items()
                      if name != "fastlstm f32"}
            times = medians_in_turns(calls, budget * len(calls))
            rows.append((cell, threads, path, times, errors))
            print(cell, threads, {k: f"{v * 1e3:.3f} ms" for k, v in times.items()},
                  file=sys.stderr)
    table = format_table(rows, with_ort)
    print(table)
    write_section(args, table, with_ort, load_before)


def format_table(rows, with_ort):
    peers = ["torch int8"] + (["ort int8"] if with_ort else [])
    header = (["(B, T, I, H)", "threads", "int8 kernel", "f32 ms", "int8 ms",
               "× vs f32"] + [f"{p} ms" for p in peers] + [f"× vs {p}" for p in peers]
              + ["max err int8"] + [f"max err {p}" for p in peers])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cell, threads, path, times, errors in rows:
        ours = times["fastlstm int8"]
        row = [str(cell), str(threads), path, f"{times['fastlstm f32'] * 1e3:.3f}",
               f"{ours * 1e3:.3f}", f"{times['fastlstm f32'] / ours:.2f}"]
        row += [f"{times[p] * 1e3:.3f}" for p in peers]
        row += [f"{times[p] / ours:.2f}" for p in peers]
        row += [f"{errors['fastlstm int8']:.4f}"] + [f"{errors[p]:.4f}" for p in peers]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_section(args, table, with_ort, load_before):
    versions = [f"fastlstm {fastlstm.__version__}", f"numpy {np.__version__}",
                f"torch {torch.__version__}", f"Python {platform.python_version()}"]
    if with_ort:
        import onnxruntime
        versions.append(f"onnxruntime {onnxruntime.__version__}")
    info = _kernel.info()
    command = "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_int8.py"
    section = f"""{SECTION}

Command: `{command}{' --quick' if args.quick else ''}`
Date: {datetime.date.today()}
Machine: {machine_description()}; shared with other jobs (load average
{load_before:.1f} before, {os.getloadavg()[0]:.1f} after the run)
Versions: {', '.join(versions)}
fastlstm kernels: float32 {info['isa']}, int8 {info['int8']}
{'' if with_ort else 'onnxruntime not installed: no ort column'}
float32 weights uniform(-0.3, 0.3), inputs standard normal, return_sequences=False;
milliseconds are medians of single calls, libraries taking turns in blocks;
"× vs X" is X's time over fastlstm int8's (above 1: fastlstm int8 is
faster); "max err" is max |h_T(int8) - h_T(fastlstm float32)|.  "int8 kernel"
is the one fastlstm's int8 layer ran; float32 means
fastlstm.quantization.prefers_int8 chose the float32 kernel (on the
dequantised weights) for this shape.  amx runs on AMX tiles the products
of tiles of >= 8 batch rows (per thread) over >= 256 inputs, the others
on avx512-vnni's tiles (src/kernel/tiles_int8_amx.h).

{table}
"""
    text = args.output.read_text() if args.output.exists() else ""
    start = text.find(SECTION)
    if start >= 0:       # replace our section, keep the others
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    args.output.write_text(text)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
