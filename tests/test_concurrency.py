"""Threads and memory: one layer called from 8 Python threads at once gives
bitwise the results of serial calls (the kernel runs without the GIL and
keeps no state between calls), and sizes that cannot be allocated raise
MemoryError or ValueError instead of crashing or exhausting the machine."""
import threading

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
