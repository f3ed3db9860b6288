"""A signal handler that raises stops a long kernel call (src/kernel/cancel.h):
the calling thread runs the handlers every few milliseconds of work, the call
raises the handler's exception soon after the signal, and the layer keeps the
states and tape it had before the call."""
import signal
import threading
import time

import numpy as np
import pytest

import fastlstm

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread(),
    reason="needs signal.setitimer on the main thread")

# The handler raises within this long of the signal (the kernel polls every
# 1-5 ms of work; the rest is slack for a loaded machine).
DEADLINE = 0.5


class Interrupted(Exception):
    pass


def _interrupt_after(seconds, call):
    """Run call() with a SIGALRM after ``seconds`` whose handler raises
    Interrupted; returns the seconds from the signal to the exception."""
    fired = []

    def handler(signum, frame):
        fired.append(time.perf_counter())
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        with pytest.raises(Interrupted):
            call()
        raised = time.perf_counter()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert len(fired) == 1, "the call ended before the signal"
    return raised - fired[0]


def _layer(units, **kwargs):
    """A layer on 8 features with torch's initial range, U(-1/sqrt(units),
    1/sqrt(units)): drawn in milliseconds, where the Keras initializers'
    orthogonal recurrent kernel of 1024 units takes over a second."""
    layer = fastlstm.LSTM(units, **kwargs)
    rng = np.random.default_rng(units)
    bound = units ** -0.5
    shapes = [(8, 4 * units), (units, 4 * units), (4 * units,)]
    layer.set_weights([rng.uniform(-bound, bound, shape).astype(np.float32) for shape in shapes])
    return layer


def _inputs(batch, timesteps, seed):
    x = np.random.default_rng(seed).standard_normal((batch, timesteps, 8))
    return x.astype(np.float32)


@pytest.mark.parametrize("threads", [1, 2])
def test_inference_stops_and_keeps_stored_states(threads):
    # Seconds on any machine (300,000 steps of 256 units), so the signal
    # comes while the kernel runs.
    layer = _layer(256, stateful=True, return_state=True, num_threads=threads)
    short = _inputs(1, 5, seed=6)
    layer(short)
    states = layer.states
    delay = _interrupt_after(0.2, lambda: layer(_inputs(1, 300_000, seed=7)))
    assert delay < DEADLINE
    for stored, before in zip(layer.states, states, strict=True):
        np.testing.assert_array_equal(stored, before, strict=True)
    # The layer goes on from the stored states as if the call never happened.
    fresh = _layer(256, return_state=True)
    fresh.set_weights(layer.get_weights())
    expected = fresh(short, initial_state=states)
    for got, want in zip(layer(short), expected, strict=True):
        np.testing.assert_array_equal(got, want, strict=True)


def test_training_forward_stops_and_leaves_no_tape():
    layer = _layer(1024, return_sequences=True, num_threads=2)
    x = _inputs(1, 2000, seed=8)
    delay = _interrupt_after(0.05, lambda: layer(x, training=True))
    assert delay < DEADLINE
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(np.ones((1, 2000, 1024), np.float32))
    # A later training call records and backpropagates as usual.
    short = x[:, :3]
    d_out = np.ones((1, 3, 1024), np.float32)
    fresh = _layer(1024, return_sequences=True)
    fresh.set_weights(layer.get_weights())
    np.testing.assert_array_equal(layer(short, training=True), fresh(short, training=True))
    for got, want in zip(layer.backward(d_out), fresh.backward(d_out), strict=True):
        np.testing.assert_array_equal(got, want)


def test_training_backward_stops_and_keeps_its_tape():
    # 512 units: the backward takes a few tenths of a second (its weights
    # come from L3 at every step), long enough for the signal and short
    # enough to run twice more in full below.
    layer = _layer(512, return_sequences=True, num_threads=2)
    x = _inputs(1, 2000, seed=9)
    layer(x, training=True)
    d_out = np.random.default_rng(10).standard_normal((1, 2000, 512)).astype(np.float32)
    delay = _interrupt_after(0.05, lambda: layer.backward(d_out))
    assert delay < DEADLINE
    # The backward only reads the tape: running it again gives the gradients
    # of an uninterrupted run.
    fresh = _layer(512, return_sequences=True)
    fresh.set_weights(layer.get_weights())
    fresh(x, training=True)
    for got, want in zip(layer.backward(d_out), fresh.backward(d_out), strict=True):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(layer.grads, fresh.grads, strict=True):
        np.testing.assert_array_equal(got, want)
