"""Time ``fastlstm.torch.LSTM`` against ``torch.nn.LSTM`` as a drop-in.

In one run, on the same weights and data, float32, taking turns (see
``bench_training.median_ms``):

  inference   ``module(x)`` under ``torch.inference_mode()``, at batch 1 and
              batch 64 with each standard cell's (T, I, H)
  training    forward + ``output.backward(d_out)`` at each standard cell
  packed      a variable-length batch (B=64, T=200, I=64, H=256, lengths
              uniform in 1..T) as a PackedSequence (enforce_sorted=False),
              inference and training step, against nn.LSTM on the same
              PackedSequence and against fastlstm.torch on the padded batch
  proj_size   LSTMP (``proj_size``, h = W_hr (o * tanh(c))) at (32, 100, 64,
              256) with proj_size 128, against nn.LSTM with the same
              proj_size: inference at batch 1 and 32, training step

Reports median milliseconds and ratios (above 1: fastlstm.torch is faster).

Run with the OpenBLAS tuning variables unset:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_torch_module.py
"""
import argparse
import os
import platform

import numpy as np
import torch
from bench_training import GRID, median_ms
from torch.nn.utils.rnn import pack_padded_sequence

import fastlstm.torch

VARIABLE = (64, 200, 64, 256)
# (batch, timesteps, features, units), proj_size
PROJECTED = [((32, 100, 64, 256), 128)]


def pair(features, units, proj_size=0):
    torch.manual_seed(0)
    reference = torch.nn.LSTM(features, units, batch_first=True, proj_size=proj_size)
    ours = fastlstm.torch.LSTM(features, units, batch_first=True, proj_size=proj_size)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def inference(module, x):
    def run():
        with torch.inference_mode():
            module(x)
    return run


def training(module, x, d_out):
    def run():
        module.zero_grad(set_to_none=True)
        output, _ = module(x)
        (output.data if hasattr(output, "batch_sizes") else output).backward(d_out)
    return run


def cell_rows(cell, sizes, rounds, block, proj_size=0, seed=1):
    """Inference at each batch size of ``sizes`` and a training step at the
    cell's batch, for one cell (with ``proj_size``: both modules LSTMP)."""
    batch, steps, features, units = cell
    reference, ours = pair(features, units, proj_size)
    generator = torch.Generator().manual_seed(seed)
    shape = f"({{}}, {steps}, {features}, {units})" + (
        f" proj_size {proj_size}" if proj_size else "")
    rows = []
    for size in sizes:
        x = torch.randn(size, steps, features, generator=generator)
        times = median_ms({"ours": inference(ours, x), "nn": inference(reference, x)},
                          rounds, block)
        rows.append((f"inference {shape.format(size)}", times))
    x = torch.randn(batch, steps, features, generator=generator)
    d_out = torch.randn(batch, steps, proj_size or units, generator=generator)
    times = median_ms({"ours": training(ours, x, d_out),
                       "nn": training(reference, x, d_out)}, rounds, block)
    rows.append((f"training {shape.format(batch)}", times))
    return rows


def standard_cells(rounds, block):
    return [row for cell in GRID for row in cell_rows(cell, (1, 64), rounds, block)]


def projected_cells(rounds, block):
    return [row for cell, proj_size in PROJECTED
            for row in cell_rows(cell, (1, cell[0]), rounds, block, proj_size, seed=3)]


def variable_lengths(rounds, block):
    batch, steps, features, units = VARIABLE
    reference, ours = pair(features, units)
    generator = torch.Generator().manual_seed(2)
    lengths = torch.randint(1, steps + 1, (batch,), generator=generator)
    x = torch.randn(batch, steps, features, generator=generator)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    d_packed = torch.randn(packed.data.shape[0], units, generator=generator)
    d_padded = torch.randn(batch, steps, units, generator=generator)
    shape = f"({batch}, {steps}, {features}, {units}), lengths 1..{steps}"
    rows = []
    times = median_ms({"ours": inference(ours, packed), "nn": inference(reference, packed),
                       "ours padded": inference(ours, x)}, rounds, block)
    rows.append((f"packed inference {shape}", times))
    times = median_ms({"ours": training(ours, packed, d_packed),
                       "nn": training(reference, packed, d_packed),
                       "ours padded": training(ours, x, d_padded)}, rounds, block)
    rows.append((f"packed training {shape}", times))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--only-proj", action="store_true",
                        help="only the proj_size rows")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for both (fastlstm.torch follows it)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds, block = (2, 0.1) if args.quick else (5, 0.3)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"fastlstm {fastlstm.__version__}, numpy {np.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    print("| case | fastlstm.torch ms | nn.LSTM ms | nn / ours | ours padded ms "
          "| padded / packed |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [] if args.only_proj else variable_lengths(rounds, block) + standard_cells(rounds,
                                                                                      block)
    rows += projected_cells(rounds, block)
    for case, times in rows:
        ours, reference = times["ours"], times["nn"]
        padded = times.get("ours padded")
        extra = (f"{padded:.3f} | {padded / ours:.2f}x" if padded is not None else " | ")
        print(f"| {case} | {ours:.3f} | {reference:.3f} | {reference / ours:.2f}x | {extra} |",
              flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
