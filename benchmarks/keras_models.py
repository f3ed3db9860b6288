"""Whole Keras models: fastlstm.from_keras against Keras's model.predict, a
direct call on Keras's torch backend, and a tf.function on the TensorFlow
backend, at batch 1 and 256.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/keras_models.py \
        [--budget 1.0] [--tf-python /path/to/python-with-tensorflow] [--only Conv1D]

The models are built with Keras (torch backend) with fixed random weights
and saved as .keras files; fastlstm loads those files.  The TensorFlow
columns come from a second process (``--tf-python``: a Python with
tensorflow, keras, scipy, h5py, threadpoolctl and tqdm, the last four for
fastlstm and this script; Keras picks its backend once per process), which
loads the same files and inputs; if it fails, its stderr is printed.  Every library's result is checked against
Keras's model.predict before it is timed.  Prints a Markdown table;
milliseconds are medians of single calls, fastlstm and the torch-backend
calls timed in turns in one process; the "× vs tf.function" ratio divides
the tf.function by fastlstm timed in turns with it in the TensorFlow process.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from run import machine_description, median_seconds, medians_in_turns  # noqa: E402

BATCHES = (1, 256)


def build_models():
    """name -> (model, input maker(batch) -> array or list)."""
    import keras
    layers = keras.layers
    rng = np.random.default_rng(0)

    def tokens(batch, steps=50):
        x = rng.integers(1, 1000, (batch, steps))
        x[:, steps - steps // 4:] = 0           # padding
        return x

    def floats(batch, steps, features):
        return rng.uniform(-1, 1, (batch, steps, features)).astype(np.float32)

    models = {}
    models["Embedding(mask_zero)-LSTM(64)-Dense"] = (keras.Sequential([
        keras.Input((50,)), layers.Embedding(1000, 32, mask_zero=True), layers.LSTM(64),
        layers.Dense(10, activation="softmax")]), tokens)
    models["Bidirectional(LSTM(64))-Dense"] = (keras.Sequential([
        keras.Input((50, 16)), layers.Bidirectional(layers.LSTM(64)),
        layers.Dense(5, activation="softmax")]), lambda b: floats(b, 50, 16))
    encoder_in, decoder_in = keras.Input((30, 16)), keras.Input((20, 8))
    _, h, c = layers.LSTM(64, return_state=True)(encoder_in)
    y = layers.LSTM(64, return_sequences=True)(decoder_in, initial_state=[h, c])
    models["encoder-decoder LSTM(64)x2-Dense"] = (
        keras.Model([encoder_in, decoder_in], layers.Dense(8, activation="softmax")(y)),
        lambda b: [floats(b, 30, 16), floats(b, 20, 8)])
    models["Conv1D-MaxPooling1D-LSTM(64)-Dense"] = (keras.Sequential([
        keras.Input((100, 8)), layers.Conv1D(32, 5, activation="relu"),
        layers.MaxPooling1D(2), layers.LSTM(64), layers.Dense(1)]),
        lambda b: floats(b, 100, 8))
    for model, _ in models.values():
        model.set_weights([rng.uniform(-0.3, 0.3, w.shape).astype(np.float32)
                           for w in model.get_weights()])
    return models


def torch_side(directory, budget, only=""):
    """fastlstm, Keras-torch direct call and model.predict, timed in turns
    (the models whose name contains ``only``)."""
    os.environ["KERAS_BACKEND"] = "torch"
    import keras
    import torch

    import fastlstm
    results, names = {}, {}
    for index, (name, (model, make_input)) in enumerate(build_models().items()):
        if only not in name:
            continue
        path = directory / f"model{index}.keras"
        model.save(path)
        names[index] = name
        fast = fastlstm.from_keras(path)
        for batch in BATCHES:
            x = make_input(batch)
            arrays = x if isinstance(x, list) else [x]
            np.savez(directory / f"input{index}_{batch}.npz", *arrays)
            expected = model.predict(x, verbose=0)
            np.testing.assert_allclose(fast(x), expected, rtol=1e-4, atol=1e-5)
            tensors = [torch.from_numpy(a) for a in arrays]
            tensors = tensors if isinstance(x, list) else tensors[0]

            def direct(model=model, tensors=tensors):
                with torch.no_grad():
                    return keras.ops.convert_to_numpy(model(tensors, training=False))

            np.testing.assert_allclose(direct(), expected, rtol=1e-4, atol=1e-5)
            calls = {"fastlstm": lambda fast=fast, x=x: fast(x),
                     "keras-torch call": direct,
                     "keras-torch predict": lambda model=model, x=x: model.predict(
                         x, verbose=0)}
            # Two rounds in turns: Keras's calls at batch 256 take long on a
            # shared 2-core machine, and each block times at least 5 calls.
            for library, seconds in medians_in_turns(calls, budget * len(calls),
                                                     rounds=2).items():
                results[(index, batch, library)] = seconds
                print(f"{name}, batch {batch}: {library} {1e3 * seconds:.3f} ms",
                      file=sys.stderr, flush=True)
    return results, names, f"keras {keras.__version__}, torch {torch.__version__}"


def tensorflow_side(directory, budget):
    """Run in the --tf-python process: tf.function and model.predict on
    TensorFlow; the tf.function timed in turns with fastlstm in this same
    process, so their ratio does not depend on when each process ran."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    import fastlstm
    results = {}
    for path in sorted(directory.glob("model*.keras")):
        index = int(path.stem[5:])
        model = keras.saving.load_model(path)
        fast = fastlstm.from_keras(path)
        call = tf.function(lambda t, model=model: model(t, training=False))
        for batch in BATCHES:
            with np.load(directory / f"input{index}_{batch}.npz") as data:
                arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
            x = arrays if len(arrays) > 1 else arrays[0]
            tensors = [tf.constant(a) for a in arrays] if len(arrays) > 1 else tf.constant(x)
            expected = model.predict(x, verbose=0)
            np.testing.assert_allclose(call(tensors).numpy(), expected, rtol=1e-4, atol=1e-5)
            calls = {"tf.function": lambda call=call, t=tensors: call(t).numpy(),
                     "fastlstm (tf process)": lambda fast=fast, x=x: fast(x)}
            for library, seconds in medians_in_turns(calls, 2 * budget, rounds=4).items():
                results[f"{index},{batch},{library}"] = seconds
            results[f"{index},{batch},keras-tf predict"] = median_seconds(
                lambda model=model, x=x: model.predict(x, verbose=0), budget)
    print(json.dumps({"version": f"keras {keras.__version__}, tensorflow {tf.__version__}",
                      "results": results}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=1.0,
                        help="seconds of calls per library and cell")
    parser.add_argument("--tf-python", help="a Python with tensorflow and keras installed")
    parser.add_argument("--only", default="", help="time only the models whose name "
                        "contains this (e.g. Conv1D)")
    parser.add_argument("--tf-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tf_worker:
        tensorflow_side(Path(args.tf_worker), args.budget)
        return
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        results, names, torch_version = torch_side(directory, args.budget, args.only)
        tf_version = "not measured (no --tf-python)"
        if args.tf_python:
            # The worker imports run.py, hence fastlstm: from this source tree.
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            worker = subprocess.run(
                [args.tf_python, __file__, "--tf-worker", name, "--budget", str(args.budget)],
                capture_output=True, text=True, env=env)
            if worker.returncode:
                sys.exit(f"the TensorFlow worker ({args.tf_python}) failed:\n{worker.stderr}")
            report = json.loads(worker.stdout.strip().splitlines()[-1])
            tf_version = report["version"]
            for key, seconds in report["results"].items():
                index, batch, library = key.split(",")
                results[(int(index), int(batch), library)] = seconds
    libraries = ["fastlstm", "tf.function", "keras-tf predict", "keras-torch call",
                 "keras-torch predict"]
    print(f"Machine: {machine_description()}")
    print(f"Peers: {torch_version}; {tf_version}\n")
    print("| model | batch | " + " | ".join(f"{lib} ms" for lib in libraries)
          + " | " + " | ".join(f"× vs {lib}" for lib in libraries[1:]) + " |")
    print("|---|---|" + "---|" * (2 * len(libraries) - 1))
    for index, name in names.items():
        for batch in BATCHES:
            ours = results[(index, batch, "fastlstm")]
            times = [results.get((index, batch, lib)) for lib in libraries]
            ratios = [t / ours if t is not None else None for t in times[1:]]
            # tf.function against fastlstm timed in turns with it, in its process.
            if times[1] is not None:
                ratios[0] = times[1] / results[(index, batch, "fastlstm (tf process)")]
            print(f"| {name} | {batch} | "
                  + " | ".join("–" if t is None else f"{1e3 * t:.3f}" for t in times) + " | "
                  + " | ".join("–" if r is None else f"{r:.1f}" for r in ratios) + " |")


if __name__ == "__main__":
    main()
