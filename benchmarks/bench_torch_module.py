"""Time ``fastlstm.torch.LSTM`` against ``torch.nn.LSTM`` as a drop-in, and
check issue 14's speed targets.

In one run, on the same weights and data, float32, taking turns (see
``bench_training.times_ms``):

  inference   ``module(x)`` under ``torch.inference_mode()``, at batch 1 and
              batch 64 with each standard cell's (T, I, H)
  training    forward + ``output.backward(d_out)`` at each standard cell
  packed      a variable-length batch (B=64, T=200, I=64, H=256, lengths
              uniform in 1..T) as a PackedSequence (enforce_sorted=False),
              inference and training step, against nn.LSTM on the same
              PackedSequence and against fastlstm.torch on the padded batch
  proj_size   LSTMP (``proj_size``, h = W_hr (o * tanh(c))) at (32, 100, 64,
              256) with proj_size 128, against nn.LSTM with the same
              proj_size (--only-proj: these rows alone): inference at batch
              1 and 32, training step, under the inference and training
              targets

Prints one table: per case the median and the minimum milliseconds of
each, the ratio of medians (above 1: fastlstm.torch is faster), the
issue's target for that ratio and whether it is met; then how many targets
were met.  Targets (issue 14): inference at batch 1 and 64 >= 1.5x nn.LSTM
on every cell; training step >= 1.3x on every cell; PackedSequence
inference and training >= 2x nn.LSTM on the PackedSequence and >= 1.5x
fastlstm.torch's own padded call on the same batch.

Run with the OpenBLAS tuning variables unset (both libraries use torch's
thread count, by default the machine's cores; --threads N sets it):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_torch_module.py
"""
import argparse
import itertools
import os
import platform
import statistics

import numpy as np
import torch
from bench_training import GRID, times_ms
from torch.nn.utils.rnn import pack_padded_sequence

import fastlstm.torch

VARIABLE = (64, 200, 64, 256)
# (batch, timesteps, features, units), proj_size
PROJECTED = [((32, 100, 64, 256), 128)]
INFERENCE_TARGET, TRAINING_TARGET = 1.5, 1.3
PACKED_TARGET, PACKED_PADDED_TARGET = 2.0, 1.5


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
    for size in sizes:
        x = torch.randn(size, steps, features, generator=generator)
        times = times_ms({"ours": inference(ours, x), "nn": inference(reference, x)},
                         rounds, block)
        yield f"inference {shape.format(size)}", times, "nn", INFERENCE_TARGET
    x = torch.randn(batch, steps, features, generator=generator)
    d_out = torch.randn(batch, steps, proj_size or units, generator=generator)
    times = times_ms({"ours": training(ours, x, d_out),
                      "nn": training(reference, x, d_out)}, rounds, block)
    yield f"training {shape.format(batch)}", times, "nn", TRAINING_TARGET


def standard_cells(rounds, block):
    for cell in GRID:
        yield from cell_rows(cell, (1, 64), rounds, block)


def projected_cells(rounds, block):
    for cell, proj_size in PROJECTED:
        yield from cell_rows(cell, (1, cell[0]), rounds, block, proj_size, seed=3)


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
    for kind, run, d_in, d_pad in (("inference", inference, (), ()),
                                   ("training", training, (d_packed,), (d_padded,))):
        times = times_ms({"ours": run(ours, packed, *d_in), "nn": run(reference, packed, *d_in),
                          "ours padded": run(ours, x, *d_pad)}, rounds, block)
        yield (f"packed {kind} {shape} vs nn.LSTM packed", times, "nn", PACKED_TARGET)
        yield (f"packed {kind} {shape} vs ours padded", times, "ours padded",
               PACKED_PADDED_TARGET)


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
    print("| case | fastlstm.torch ms median (min) | peer ms median (min) | peer / ours "
          "| target | met |")
    print("|---|---:|---:|---:|---:|---|")
    met = []
    cases = (projected_cells(rounds, block) if args.only_proj else itertools.chain(
        variable_lengths(rounds, block), standard_cells(rounds, block),
        projected_cells(rounds, block)))
    for case, times, peer, target in cases:
        ours, theirs = times["ours"], times[peer]
        ratio = statistics.median(theirs) / statistics.median(ours)
        met.append(ratio >= target)
        print(f"| {case} | {statistics.median(ours):.3f} ({min(ours):.3f}) "
              f"| {statistics.median(theirs):.3f} ({min(theirs):.3f}) | {ratio:.2f}x "
              f"| {target:.1f}x | {'yes' if met[-1] else 'NO'} |", flush=True)
    print(f"targets met: {sum(met)} of {len(met)}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
