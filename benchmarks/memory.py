"""Peak extra memory of one forward call, measured in a fresh process.

    python benchmarks/memory.py IMPLEMENTATION B T I H

Allocates the input and weights, warms up on the first time step only
(packing weights, loading libraries), resets Linux's record of the
peak resident set (Linux), then reports (in bytes, as JSON) how far the
peak rose above the resident set during the call on the whole sequence,
with ``return_sequences=False``.  A fresh process per
measurement keeps one measurement's peak from hiding the next.
"""
import json
import sys

import numpy as np


def _status_bytes(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024          # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak():
    """Restart the peak resident set (VmHWM) from the current one, so imports
    and set-up that peaked earlier do not hide the call's peak (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def runner(name, weights, x):
    if name == "fastlstm":
        import fastlstm

        layer = fastlstm.LSTM(weights[1].shape[0])
        layer.set_weights(weights)
        return lambda: layer(x)
    if name == "torch":
        import torch

        from fastlstm.convert import keras_to_torch

        units = weights[1].shape[0]
        module = torch.nn.LSTM(x.shape[2], units, batch_first=True)
        w_ih, w_hh, b_ih, b_hh = keras_to_torch(*weights)
        with torch.no_grad():
            for param, value in zip((module.weight_ih_l0, module.weight_hh_l0,
                                     module.bias_ih_l0, module.bias_hh_l0),
                                    (w_ih, w_hh, b_ih, b_hh), strict=True):
                param.copy_(torch.from_numpy(np.ascontiguousarray(value)))
        tensor = torch.from_numpy(x)

        def run():
            with torch.inference_mode():
                return module(tensor)[1][0]
        return run
    raise SystemExit(f"unknown implementation {name!r}")


def main(argv):
    name = argv[0]
    batch, steps, input_dim, units = map(int, argv[1:5])
    rng = np.random.default_rng(0)
    weights = [rng.uniform(-0.3, 0.3, shape).astype(np.float32)
               for shape in ((input_dim, 4 * units), (units, 4 * units), (4 * units,))]
    # float32 straight away: a float64 temporary would raise the baseline peak.
    x = rng.standard_normal((batch, steps, input_dim), dtype=np.float32)
    runner(name, weights, np.ascontiguousarray(x[:, :1]))()
    call = runner(name, weights, x)
    reset_peak()
    before = _status_bytes("VmRSS")
    call()
    peak = _status_bytes("VmHWM")
    print(json.dumps({"extra_peak_bytes": peak - before, "baseline_bytes": before}))


if __name__ == "__main__":
    main(sys.argv[1:])
