"""One of two processes training ``fastlstm.torch.LSTM`` under
DistributedDataParallel (gloo, on this machine), started by
``tests/test_torch_distributed.py``: ``python ddp_worker.py RANK PORT OUTPUT``.
Rank 0 saves the gradients of each step and the parameters after the last
one to OUTPUT.

Each process takes every other row of the batch and averages its loss over
its rows; DDP averages the gradients over the processes, so they are the
gradients of the whole batch's average loss.
"""
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import fastlstm.torch as ft

WORLD = 2
STEPS = 2


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lstm = ft.LSTM(3, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.head = torch.nn.Linear(12, 1)

    def forward(self, x):
        output, _ = self.lstm(x)
        return self.head(output[:, -1])


def batches():
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 5, 3, generator=generator), torch.randn(8, 1, generator=generator))
            for _ in range(STEPS)]


def train(module, parameters, shard):
    """STEPS of SGD; returns [gradients of each step..., final parameters]."""
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    saved = []
    for x, y in batches():
        optimizer.zero_grad()
        (module(x[shard]) - y[shard]).square().mean().backward()
        saved.append({name: p.grad.clone() for name, p in parameters()})
        optimizer.step()
    saved.append({name: p.detach().clone() for name, p in parameters()})
    return saved


def main(rank, port, output):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        ddp = DistributedDataParallel(Model())
        saved = train(ddp, ddp.module.named_parameters, slice(rank, None, WORLD))
        if rank == 0:
            torch.save(saved, output)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
