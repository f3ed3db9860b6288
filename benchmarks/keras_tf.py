"""Time Keras 3's LSTM on the TensorFlow backend inside ``tf.function``.

Run by run.py in its own process, because Keras picks its backend once per
process (the rest of the benchmark imports Keras-free torch/ONNX peers):

    KERAS_BACKEND=tensorflow python benchmarks/keras_tf.py BUDGET B,T,I,H ...

Prints one JSON object: {"version": ..., "cells": {"B,T,I,H": seconds}}.
Each cell uses run.make_problem's weights and input, and its result is
checked against the NumPy reference before timing.
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from run import make_problem, median_seconds  # noqa: E402

from fastlstm.reference import lstm as reference  # noqa: E402


def main(argv):
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise SystemExit(f"KERAS_BACKEND must be tensorflow, got {keras.backend.backend()}")
    budget = float(argv[0])
    cells = {}
    for text in argv[1:]:
        batch, steps, input_dim, units = map(int, text.split(","))
        weights, x = make_problem(batch, steps, input_dim, units)
        layer = keras.layers.LSTM(units)
        layer.build((None, steps, input_dim))
        layer.set_weights(weights)
        call = tf.function(lambda t, layer=layer: layer(t))
        tensor = tf.constant(x)
        np.testing.assert_allclose(call(tensor).numpy(), reference(x, *weights)[1],
                                   rtol=1e-3, atol=1e-4, err_msg=f"keras/tf on {text}")
        cells[text] = median_seconds(lambda call=call, tensor=tensor: call(tensor).numpy(), budget)
    print(json.dumps({"version": f"keras {keras.__version__}, tensorflow {tf.__version__}",
                      "cells": cells}))


if __name__ == "__main__":
    main(sys.argv[1:])
