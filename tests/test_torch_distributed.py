"""``fastlstm.torch.LSTM`` under DistributedDataParallel (gloo backend, two
local processes): the same gradients and parameters as one process training
on the whole batch."""
import importlib.util
import pathlib
import socket
import subprocess
import sys

import torch

WORKER = pathlib.Path(__file__).with_name("ddp_worker.py")


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ddp_gradients_equal_one_process_on_the_whole_batch(tmp_path):
    spec = importlib.util.spec_from_file_location("ddp_worker", WORKER)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    output, port = tmp_path / "ddp.pt", str(_free_port())
    ranks = [subprocess.Popen([sys.executable, str(WORKER), str(rank), port, str(output)])
             for rank in range(worker.WORLD)]
    try:
        assert [rank.wait(timeout=120) for rank in ranks] == [0] * worker.WORLD
    finally:        # a rank that failed leaves the other waiting for it
        for rank in ranks:
            rank.kill()
    distributed = torch.load(output)
    model = worker.Model()
    alone = worker.train(model, model.named_parameters, slice(None))
    assert len(distributed) == len(alone) == worker.STEPS + 1
    for ddp_step, alone_step in zip(distributed, alone, strict=True):
        assert ddp_step.keys() == alone_step.keys()
        for name, value in alone_step.items():
            # The two halves' gradients are summed in another order than
            # one process sums the rows: float32 rounding, no more.
            torch.testing.assert_close(ddp_step[name], value, rtol=1e-5, atol=1e-6,
                                       msg=name)
