"""Threads and memory: one layer called from 8 Python threads at once gives
bitwise the results of serial calls (the kernel runs without the GIL and
keeps no state between calls), and sizes that cannot be allocated raise
MemoryError or ValueError instead of crashing or exhausting the machine."""
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fastlstm

THREADS, CALLS_PER_THREAD = 8, 4


def _concurrent(call, inputs):
    """``call(i)`` for every ``i`` in ``inputs``, spread over THREADS threads
    that start together; results in input order, errors re-raised."""
    results, errors = [None] * len(inputs), []
    barrier = threading.Barrier(THREADS)

    def work(thread):
        barrier.wait()
        try:
            for index in range(thread, len(inputs), THREADS):
                results[index] = call(inputs[index])
        except BaseException as error:  # noqa: BLE001 - re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _flatten(result):
    return result if isinstance(result, list) else [result]


@pytest.mark.parametrize("batch,steps,features,units", [
    (1, 1, 1, 1), (3, 7, 5, 4), (16, 20, 8, 32), (40, 10, 24, 48), (5, 300, 3, 9)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_threads_match_serial_calls_bitwise(make_weights, batch, steps, features, units, dtype,
                                            masked, return_sequences):
    layer = fastlstm.LSTM(units, return_sequences=return_sequences, return_state=True,
                          go_backwards=steps % 2 == 1, dtype=dtype)
    layer.set_weights(make_weights(features, units, dtype, seed=batch))
    rng = np.random.default_rng(units)
    inputs = []
    for _ in range(THREADS * CALLS_PER_THREAD):
        x = rng.uniform(-1, 1, (batch, steps, features)).astype(dtype)
        mask = rng.random((batch, steps)) < 0.7 if masked else None
        inputs.append((x, mask))

    def call(arguments):
        return _flatten(layer(arguments[0], mask=arguments[1]))

    serial = [call(arguments) for arguments in inputs]
    for concurrent, expected in zip(_concurrent(call, inputs), serial, strict=True):
        for got, want in zip(concurrent, expected, strict=True):
            np.testing.assert_array_equal(got, want, strict=True)


def test_bidirectional_threads_match_serial_calls_bitwise(make_weights):
    layer = fastlstm.Bidirectional(fastlstm.LSTM(6, return_sequences=True), merge_mode="ave")
    layer.set_weights(make_weights(4, 6, seed=1) + make_weights(4, 6, seed=2))
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(-1, 1, (8, 12, 4)).astype(np.float32)
              for _ in range(THREADS * CALLS_PER_THREAD)]
    serial = [layer(x) for x in inputs]
    for got, want in zip(_concurrent(layer, inputs), serial, strict=True):
        np.testing.assert_array_equal(got, want, strict=True)


def test_threads_building_one_layer_agree():
    """Unbuilt layer, first calls racing: every thread sees one set of weights."""
    layer = fastlstm.LSTM(5, seed=3)
    x = np.ones((2, 3, 4), np.float32)
    results = _concurrent(layer, [x] * THREADS)
    for result in results:
        np.testing.assert_array_equal(result, layer(x), strict=True)


# ------------------------------------------------------------- absurd sizes
# Every size below stays within the int limits the kernel checks, so only the
# memory they would take stops them.  None may allocate for real: the test
# machine has far less memory than any of them.

def test_units_near_the_int_limit_refuse_to_build():
    layer = fastlstm.LSTM((2**31 - 1) // 4)       # weights of 2.3e17 values
    with pytest.raises(MemoryError, match="weights of LSTM"):
        layer(np.zeros((1, 1, 1), np.float32))
    assert not layer.built


def test_units_beyond_the_int_limit_are_refused():
    with pytest.raises(ValueError, match="units"):
        fastlstm.LSTM(2**31 // 4)


def test_absurd_broadcast_input_is_refused_before_copying():
    # A zero-stride view of 2**50 values (4 PiB as float32) needs a real copy.
    x = np.broadcast_to(np.float64(0.5), (2**25, 2**25, 1))
    layer = fastlstm.LSTM(2)
    with pytest.raises(MemoryError, match="copy of x"):
        layer(x)


def test_absurd_sequence_output_raises_memory_error():
    # x itself is 4 GiB of untouched zero pages (calloc), the returned
    # sequence would be 4 TiB.
    x = np.zeros((2**16, 2**14, 1), np.float32)
    layer = fastlstm.LSTM(2**10, return_sequences=True, kernel_initializer="zeros",
                          recurrent_initializer="zeros")
    with pytest.raises(MemoryError):
        layer(x)


def test_batch_times_timesteps_beyond_int_limit_is_refused():
    x = np.broadcast_to(np.float32(0), (2**31, 1, 1))
    with pytest.raises(ValueError, match="batch"):
        fastlstm.LSTM(1)(x)


def test_absurd_training_workspace_is_refused_before_allocating():
    # 2**30 (timesteps * batch) lazily zeroed inputs; the workspace would be
    # 11 * 2**30 * 2**10 values (44 TiB).
    x = np.zeros((2**16, 2**14, 1), np.float32)
    layer = fastlstm.LSTM(2**10, kernel_initializer="zeros", recurrent_initializer="zeros")
    with pytest.raises(MemoryError, match="training workspace"):
        layer(x, training=True)


# ------------------------------------------------- weights and training state
def test_set_weights_reaches_every_later_call(make_weights):
    """set_weights while other threads call the layer: every call that
    starts after set_weights returns (and overlaps no other set_weights)
    computes with the new weights, bitwise.  (Before weights were
    versioned, a call still packing the previous weights stored its stale
    pack after set_weights had cleared it: 4-11% of these trials here.)"""
    features, units, trials = 256, 256, 150    # packing takes long enough to race
    weights = [make_weights(features, units, seed=1), make_weights(features, units, seed=2)]
    x = np.random.default_rng(3).uniform(-1, 1, (2, 3, features)).astype(np.float32)
    expected = []
    for one in weights:
        layer = fastlstm.LSTM(units)
        layer.set_weights(one)
        expected.append(layer(x))
    layer = fastlstm.LSTM(units)
    layer.set_weights(weights[0])
    # setting: the trial whose set_weights began last; published: (trial,
    # index of its weights), once they are set.
    setting, published, wrong, checked = [0], [(0, 0)], [], [0]
    stop = threading.Event()

    def call_and_check():
        while not stop.is_set():
            trial, index = published[0]
            result = layer(x)
            if setting[0] == trial:     # no set_weights overlapped this call
                checked[0] += 1
                if not np.array_equal(result, expected[index]):
                    wrong.append(trial)

    threads = [threading.Thread(target=call_and_check) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for trial in range(1, trials + 1):
            setting[0] = trial
            # The second set_weights lands while calls pack the first.
            layer.set_weights(weights[trial % 2])
            layer.set_weights(weights[1 - trial % 2])
            published[0] = (trial, 1 - trial % 2)
            time.sleep(0.0005)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert checked[0] > trials
    assert not wrong, (f"{len(wrong)} calls in {len(set(wrong))} of {trials} trials used "
                       f"weights older than the last set_weights")


def test_concurrent_training_calls_raise():
    """Two threads in training calls on one layer: one of them gets a
    RuntimeError naming the rule, never a silently wrong result; inference
    calls meanwhile are not held up."""
    layer = fastlstm.LSTM(64, return_sequences=True, seed=0)
    x = np.random.default_rng(4).uniform(-1, 1, (16, 200, 8)).astype(np.float32)
    expected = layer(x, training=True)
    expected_grads = layer.backward(np.ones_like(expected))

    def train(_):
        try:
            out = layer(x, training=True)
            return out, layer.backward(np.ones_like(out))
        except RuntimeError as error:
            assert "must not run concurrently" in str(error)
            return None

    refused = 0
    for _ in range(5):
        for result in _concurrent(train, list(range(THREADS))):
            if result is None:
                refused += 1
                continue
            np.testing.assert_array_equal(result[0], expected)
            for got, want in zip(result[1], expected_grads, strict=True):
                np.testing.assert_array_equal(got, want)
    assert refused > 0
    # The layer stays usable: training and inference after the race.
    np.testing.assert_array_equal(layer(x, training=True), expected)
    np.testing.assert_array_equal(_concurrent(layer, [x] * THREADS)[0], layer(x))


def _under_memory_cap(code):
    """stdout of ``code`` run in a child process limited to 3 GiB of address
    space (so nothing real is at stake), after ``import numpy as np, fastlstm``."""
    prelude = ("import resource, numpy as np, fastlstm\n"
               "resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))\n")
    result = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_one_memory_estimate_covers_the_whole_call():
    """A broadcast x whose copy fits and whose output sequence fits, but not
    both: refused before the first allocation, naming both."""
    stdout = _under_memory_cap(
        # copy of x: 2**28 float32 = 1 GiB; sequence: 2**27 * 4 units = 2 GiB.
        "x = np.broadcast_to(np.float32(0.5), (1, 2**27, 2))\n"
        "try:\n"
        "    fastlstm.LSTM(4, return_sequences=True)(x)\n"
        "except MemoryError as error:\n"
        "    print(error)\n")
    assert re.search(r"needs 3\.\d GiB \(a C-contiguous float32 copy of x 1\.0 GiB; .*"
                     r"the output sequence 2\.0 GiB; .*\), more than the 3\.0 GiB of "
                     r"address space", stdout), stdout


def test_training_size_limit_is_checked_before_copying_x():
    """batch * timesteps beyond the training kernels' int range: a ValueError
    before the 8 GiB float32 copy of a broadcast x is attempted."""
    stdout = _under_memory_cap(
        "x = np.broadcast_to(np.float64(0), (2**16, 2**15 + 1, 1))\n"
        "try:\n"
        "    fastlstm.LSTM(1)(x, training=True)\n"
        "except ValueError as error:\n"
        "    print(error)\n")
    assert "batch * timesteps up to 2147483647" in stdout, stdout
