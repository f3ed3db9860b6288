"""Throughput of fastlstm.dask.predict on dask.distributed LocalClusters of 1
and 2 single-threaded worker processes, against one local call on 1 thread
and on all threads, in sequences per second.

The input is generated and persisted on each cluster first, so only the
model's work (and Dask's per-chunk overhead) is timed.  The four ways take
turns in every round; the medians over rounds are printed.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/dask_throughput.py [--quick]
"""
import argparse
import logging
import os
import statistics
import time

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, futures_of, wait

import fastlstm
import fastlstm.dask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller batch, 3 rounds")
    parser.add_argument("--batch", type=int, default=16384)
    parser.add_argument("--chunk", type=int, default=1024)
    arguments = parser.parse_args()
    batch = 4096 if arguments.quick else arguments.batch
    rounds = 3 if arguments.quick else 5
    timesteps, features, units = 50, 32, 64
    model = fastlstm.LSTM(units, seed=0)
    model.build(features)
    local = np.random.default_rng(0).random((batch, timesteps, features), dtype=np.float32)
    one_thread, all_threads = (fastlstm.LSTM(units, num_threads=n) for n in (1, None))
    for layer in one_thread, all_threads:
        layer.set_weights(model.get_weights())

    clusters, clients, inputs = {}, {}, {}
    for workers in (1, 2):
        clusters[workers] = LocalCluster(n_workers=workers, threads_per_worker=1,
                                         processes=True, dashboard_address=None,
                                         silence_logs=logging.ERROR)
        clients[workers] = Client(clusters[workers], set_as_default=False)
        x = da.from_array(local, chunks=(arguments.chunk, timesteps, features))
        inputs[workers] = clients[workers].persist(x)
        with clients[workers].as_current():
            wait(futures_of(inputs[workers]))

    def on_cluster(workers: int) -> None:
        clients[workers].compute(fastlstm.dask.predict(model, inputs[workers])).result()

    ways = {
        "one call, 1 thread": lambda: one_thread(local),
        f"one call, {os.cpu_count()} threads": lambda: all_threads(local),
        "dask, 1 worker x 1 thread": lambda: on_cluster(1),
        "dask, 2 workers x 1 thread": lambda: on_cluster(2),
    }
    for run in ways.values():          # warm-up: imports and packed weights on the workers
        run()
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    names = list(ways)
    for turn in range(rounds):
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            start = time.perf_counter()
            ways[name]()
            seconds[name].append(time.perf_counter() - start)
    for client in clients.values():
        client.close()
    for cluster in clusters.values():
        cluster.close()

    print(f"fastlstm {fastlstm.__version__}: LSTM({units}) on ({batch}, {timesteps}, "
          f"{features}) float32, chunks of {arguments.chunk} sequences; medians of {rounds} "
          f"rounds taking turns; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    base = statistics.median(seconds["dask, 1 worker x 1 thread"])
    for name, times in seconds.items():
        median = statistics.median(times)
        print(f"  {name:28} {median:7.3f} s  {batch / median:9,.0f} sequences/s  "
              f"{base / median:4.2f}x one worker")


if __name__ == "__main__":
    main()
