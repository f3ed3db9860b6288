"""The kernel's thread pool (src/kernel/pool.c): workers join a call when they
get a core, late or never, and the result is bitwise the same; a forked
child starts its own workers."""
import multiprocessing
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastlstm
from fastlstm import _kernel

pytestmark = pytest.mark.skipif(not _kernel.THREAD_POOL, reason="built without a thread pool")

# (batch, timesteps, features, units): shared by rows, and by unit blocks.
SHAPES = [(40, 30, 5, 40), (1, 50, 6, 200)]


def _layer_and_input(shape, seed):
    batch, timesteps, features, units = shape
    layer = fastlstm.LSTM(units, return_sequences=True, return_state=True, seed=seed)
    x = np.random.default_rng(seed).standard_normal((batch, timesteps, features))
    return layer, x.astype(np.float32)


def _run(layer, x, threads):
    layer.num_threads = threads
    return layer(x)


def test_shapes_use_both_ways_of_sharing():
    plans = {_kernel.plan(b, t, i, u, 8) for b, t, i, u in SHAPES}
    assert plans == {(8, "rows"), (8, "units")}


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_more_threads_than_cores_bitwise(shape):
    """Eight threads on fewer cores: most workers join late or not at all,
    and unit ranges move between threads from step to step."""
    layer, x = _layer_and_input(shape, seed=1)
    expected = _run(layer, x, 1)
    for _ in range(20):
        for got, want in zip(_run(layer, x, 8), expected, strict=True):
            np.testing.assert_array_equal(got, want, strict=True)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_busy_cores_bitwise(shape):
    """Python threads that keep the cores busy (NumPy releases the GIL in
    large reductions) preempt the workers in the middle of calls."""
    layer, x = _layer_and_input(shape, seed=2)
    expected = _run(layer, x, 1)
    stop = threading.Event()
    big = np.ones(2_000_000)

    def hog():
        while not stop.is_set():
            big.sum()

    hogs = [threading.Thread(target=hog) for _ in range(os.cpu_count() or 2)]
    for thread in hogs:
        thread.start()
    try:
        for _ in range(10):
            for got, want in zip(_run(layer, x, 4), expected, strict=True):
                np.testing.assert_array_equal(got, want, strict=True)
    finally:
        stop.set()
        for thread in hogs:
            thread.join()


def _child(shape, queue):
    layer, x = _layer_and_input(shape, seed=3)
    queue.put(_run(layer, x, 4)[0])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_runs_on_its_own_workers(shape):
    """The parent's workers do not exist in a child of fork(): the child must
    neither hang waiting for them nor skip their work."""
    layer, x = _layer_and_input(shape, seed=3)
    expected = _run(layer, x, 4)[0]          # the parent's pool is started
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child, args=(shape, queue))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    np.testing.assert_array_equal(got, expected, strict=True)


_SHARED_POOL = """
import os
import numpy as np
import fastlstm
from fastlstm import _kernel

def threads():
    return len(os.listdir("/proc/self/task"))

batch, steps, features, units = 8, 50, 16, 64
assert _kernel.plan(batch, steps, features, units, 2) == (2, "rows")
assert _kernel.plan(batch, steps, features, units, 2, training=True) == (2, "rows")
x = np.random.default_rng(4).standard_normal((batch, steps, features)).astype(np.float32)
layer = fastlstm.LSTM(units, return_sequences=True, seed=4, num_threads=2)
before = threads()
calls = [lambda: layer(x, training=True),
         lambda: layer.backward(np.ones((batch, steps, units), np.float32)),
         lambda: layer(x)]
if {order!r} == "inference first":
    calls = calls[2:] + calls[:2]
seen = []
for call in calls:
    call()
    seen.append((threads() - before, _kernel.pool_workers()))
print(seen)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc/self/task")
@pytest.mark.parametrize("order", ["training first", "inference first"])
def test_training_and_inference_share_one_pool(order):
    """One worker set per process: the first call on two threads starts the
    pool's one worker, and the calls after it (training passes, inference)
    start no other thread.  A fresh process, so no earlier test has grown
    the pool."""
    result = subprocess.run([sys.executable, "-c", _SHARED_POOL.format(order=order)],
                            capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == str([(1, 1)] * 3), result.stdout + result.stderr
