"""Time one training step (forward + backward) of an LSTM layer.

Compares, in one run and on the same weights and data:
  fastlstm   ``LSTM(..., return_sequences=True)(x, training=True)`` then
             ``layer.backward(d_out, input_gradient=False)`` (NumPy API, all
             weight gradients; like the torch modules, whose input needs no
             gradient, it skips dL/dx)
  ft.LSTM    ``fastlstm.torch.LSTM`` forward + ``output.backward(d_out)``
  nn.LSTM    ``torch.nn.LSTM`` forward + ``output.backward(d_out)``
on the grid of (batch, timesteps, input_dim, units), float32, reporting
median milliseconds, nn.LSTM's time over ours, and effective GFLOP/s of the
step's matmuls (forward 2*B*T*4H*(I+H), then dW and dR as much again and
the per-step dh_prev 2*B*T*4H*H; no dX) next to a large float32 matmul timed
in the same run, the practical ceiling of the machine.

A second table times fastlstm's step with Keras's dropout, in the same
rounds: ``recurrent_dropout=0.3`` alone and with ``dropout=0.3`` (per-gate
masks of h and x, which every gate block's product reads), against our
step without dropout and against nn.LSTM.  nn.LSTM has no recurrent
dropout (its ``dropout`` acts between stacked layers), so its plain step is
the peer: the work a dropout-free library does.

Run with the OpenBLAS tuning variables unset (FASTLSTM_ISA=avx2 in front
times the AVX2 tiles on an AVX-512 machine):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_training.py
"""
import argparse
import statistics
import time

import numpy as np
import torch

import fastlstm
import fastlstm.torch
from fastlstm import _kernel

GRID = [(100, 4, 10, 16), (1, 100, 32, 64), (32, 100, 64, 256), (64, 50, 256, 512),
        (8, 1000, 64, 128)]
RATE = 0.3      # dropout rate of the dropout table


def median_ms(steps, rounds, block_seconds):
    """Median wall time in ms of each of ``steps`` (name -> callable).

    The steps run in blocks of back-to-back calls, taking turns for
    ``rounds`` rounds, so that a change in the load of a shared machine hits
    them alike; a short pause before each block lets the previous library's
    spinning worker threads (OpenMP, OpenBLAS) go to sleep, since they would
    otherwise steal the cores.  One warm-up call per block is not timed.
    """
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            time.sleep(0.05)
            step()
            start = time.perf_counter()
            while time.perf_counter() - start < block_seconds:
                t0 = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}


def cell(batch, steps, features, units, rounds, block_seconds):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, steps, features), dtype=np.float32)
    d_out = rng.standard_normal((batch, steps, units), dtype=np.float32)
    torch.manual_seed(0)
    reference = torch.nn.LSTM(features, units, batch_first=True)
    ours_torch = fastlstm.torch.LSTM(features, units, batch_first=True)
    ours_torch.load_state_dict(reference.state_dict())
    weights = [reference.weight_ih_l0.detach().numpy().T,
               reference.weight_hh_l0.detach().numpy().T,
               (reference.bias_ih_l0 + reference.bias_hh_l0).detach().numpy()]
    xt, dt = torch.from_numpy(x), torch.from_numpy(d_out)

    def numpy_step(dropout=0.0, recurrent_dropout=0.0):
        layer = fastlstm.LSTM(units, return_sequences=True, dropout=dropout,
                              recurrent_dropout=recurrent_dropout, seed=0)
        layer.set_weights(weights)

        def step():
            layer(x, training=True)
            layer.backward(d_out, input_gradient=False)
        return step

    def torch_step(module):
        def step():
            module.zero_grad(set_to_none=True)
            output, _ = module(xt)
            output.backward(dt)
        return step

    return median_ms({"fastlstm": numpy_step(), "ft.LSTM": torch_step(ours_torch),
                      "nn.LSTM": torch_step(reference),
                      "rd": numpy_step(recurrent_dropout=RATE),
                      "d+rd": numpy_step(dropout=RATE, recurrent_dropout=RATE)},
                     rounds, block_seconds)


def matmul_ceiling_gflops(size=2048):
    a = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    seconds = median_ms({"matmul": lambda: a @ a}, 3, 0.2)["matmul"] / 1e3
    return 2 * size**3 / seconds / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    args = parser.parse_args()
    rounds, block_seconds = (3, 0.1) if args.quick else (5, 0.4)
    print(f"fastlstm {fastlstm.__version__} ({_kernel.isa()} tiles; "
          f"FASTLSTM_ISA=avx2|avx512|portable forces one), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), numpy {np.__version__}; float32, "
          f"median ms per training step (forward + backward); float32 matmul "
          f"ceiling {matmul_ceiling_gflops():.0f} GFLOP/s\n")
    print("| B, T, I, H | fastlstm (NumPy) | fastlstm.torch | nn.LSTM "
          "| nn / fastlstm | nn / fastlstm.torch | GFLOP/s fastlstm |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    dropout_rows = []
    for batch, steps, features, units in GRID:
        ms = cell(batch, steps, features, units, rounds, block_seconds)
        dropout_rows.append(
            f"| {batch}, {steps}, {features}, {units} | {ms['fastlstm']:.3f} "
            f"| {ms['rd']:.3f} | {ms['d+rd']:.3f} | {ms['nn.LSTM']:.3f} "
            f"| {ms['rd'] / ms['fastlstm']:.2f}x | {ms['d+rd'] / ms['fastlstm']:.2f}x "
            f"| {ms['nn.LSTM'] / ms['rd']:.2f}x | {ms['nn.LSTM'] / ms['d+rd']:.2f}x |")
        forward = 2 * batch * steps * 4 * units * (features + units)
        flops = 2 * forward + 2 * batch * steps * 4 * units * units
        print(f"| {batch}, {steps}, {features}, {units} | {ms['fastlstm']:.3f} "
              f"| {ms['ft.LSTM']:.3f} | {ms['nn.LSTM']:.3f} "
              f"| {ms['nn.LSTM'] / ms['fastlstm']:.2f}x "
              f"| {ms['nn.LSTM'] / ms['ft.LSTM']:.2f}x "
              f"| {flops / ms['fastlstm'] / 1e6:.1f} |", flush=True)
    print(f"\nWith dropout (rate {RATE}), same rounds: fastlstm's step (NumPy API) "
          f"without dropout, with recurrent_dropout, with both; nn.LSTM without "
          f"(it has no recurrent dropout)\n")
    print("| B, T, I, H | no dropout | recurrent | input + recurrent | nn.LSTM "
          "| recurrent / none | both / none | nn / recurrent | nn / both |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(dropout_rows))


if __name__ == "__main__":
    main()
