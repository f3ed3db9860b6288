"""fastlstm.dask: models over Dask arrays, on threads and on a cluster of
worker processes; ``import fastlstm`` never imports Dask."""
import pickle
import subprocess
import sys

import numpy as np
import pytest

import fastlstm

da = pytest.importorskip("dask.array")        # in the test extra: CI has it
distributed = pytest.importorskip("distributed")
import fastlstm.dask  # noqa: E402


def _inputs(batch=40, seed=0):
    x = np.random.default_rng(seed).uniform(-1, 1, (batch, 6, 5)).astype(np.float32)
    mask = np.random.default_rng(seed + 1).random((batch, 6)) < 0.8
    return x, mask


def _stack():
    return fastlstm.Sequential([
        fastlstm.Masking(),
        fastlstm.Bidirectional(fastlstm.LSTM(4, return_sequences=True, seed=1)),
        fastlstm.LSTM(3, return_sequences=True, seed=2),
    ])


def test_import_fastlstm_does_not_import_dask():
    code = ("import sys, fastlstm; "
            "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("make", [
    lambda: fastlstm.LSTM(7, seed=0),
    lambda: fastlstm.LSTM(7, return_sequences=True, go_backwards=True, seed=0),
    lambda: fastlstm.Bidirectional(fastlstm.LSTM(3, return_sequences=True, seed=0), "ave"),
    _stack,
])
def test_predict_on_threads_equals_one_call(make):
    x, mask = _inputs()
    model = make()
    y = fastlstm.dask.predict(model, da.from_array(x, chunks=(9, 3, 5)),
                              mask=da.from_array(mask, chunks=(20, 6)))
    expected = model(x, mask=mask)
    assert y.shape == expected.shape and y.dtype == expected.dtype
    assert y.chunks[0] == (9, 9, 9, 9, 4)
    # A row's numbers do not depend on the rows beside it: each chunk is the
    # same computation as the rows of the whole batch.
    np.testing.assert_array_equal(y.compute(scheduler="threads"), expected)


def test_predict_builds_an_unbuilt_model_once():
    x, _ = _inputs()
    layer = fastlstm.LSTM(5)                  # no seed: every build draws new weights
    y = fastlstm.dask.predict(layer, da.from_array(x, chunks=10))
    assert layer.built
    np.testing.assert_array_equal(y.compute(scheduler="threads"), layer(x))


def test_predict_refuses_what_chunks_cannot_compute():
    x = da.zeros((4, 3, 2), chunks=2)
    with pytest.raises(ValueError, match="returns one array.*returns 3"):
        fastlstm.dask.predict(fastlstm.LSTM(2, return_state=True), x)
    with pytest.raises(ValueError, match="must not be stateful.*stateful=True"):
        fastlstm.dask.predict(fastlstm.Sequential([fastlstm.LSTM(2, stateful=True)]), x)
    with pytest.raises(ValueError, match=r"\(batch, timesteps, features\), got shape \(4, 3\)"):
        fastlstm.dask.predict(fastlstm.LSTM(2), da.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"mask must have shape \(batch, timesteps\) = "
                                         r"\(4, 3\), got \(4, 2\)"):
        fastlstm.dask.predict(fastlstm.LSTM(2), x, mask=np.ones((4, 2), bool))
    with pytest.raises(ValueError, match="time_major=True"):
        fastlstm.dask.predict(fastlstm.Sequential([fastlstm.LSTM(2)], time_major=True), x)


def test_the_graph_holds_the_weights_once():
    layer = fastlstm.LSTM(64, seed=0)                         # 99 KB of weights
    x = da.zeros((64, 5, 32), np.float32, chunks=(4, 5, 32))  # 16 chunks
    y = fastlstm.dask.predict(layer, x)
    weights = sum(w.nbytes for w in layer.get_weights())
    graph = pickle.dumps(dict(y.__dask_graph__()))
    assert weights < len(graph) < 1.5 * weights


def test_local_cluster_of_two_worker_processes_equals_one_call():
    x, mask = _inputs(batch=60)
    model = _stack()
    expected = model(x, mask=mask)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        y = fastlstm.dask.predict(model, da.from_array(x, chunks=(15, 6, 5)),
                                  mask=da.from_array(mask, chunks=(15, 6)))
        assert len(client.scheduler_info()["workers"]) == 2
        result = y.compute()          # on the cluster: the client is the default
    np.testing.assert_array_equal(result, expected)
