"""A PackedSequence's rows in and out of a padded batch, for
``fastlstm.torch``.

A PackedSequence holds its steps time-major: ``batch_sizes[t]`` rows for
step t, the sequences sorted longest first.  The kernels take a padded
batch (N, L, features) in that sorted order with each row's length
(``src/kernel/lengths.h``) and compute no padded step.  Moving the rows
between the two layouts is one gather of whole rows by a flat index
(``Layout``), done with NumPy: torch's ``pack_padded_sequence`` cuts the
batch step by step (~30 ms at (64, 200, 256) here) and ``index_select``
starts its thread team for a copy (~1 ms alone, 50 ms when the cores are
busy).  Both directions are differentiable, each the other's adjoint.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .torch_direction import Array


class Layout:
    """Where a PackedSequence's rows lie in the padded (N, L) batch:
    ``lengths`` (N,) intp, sorted longest first, and ``index``, the flat
    position ``n * L + t`` of each packed row."""

    def __init__(self, batch_sizes: Any) -> None:
        sizes = batch_sizes.numpy()
        steps = len(sizes)
        # rows with step t: the leading sizes[t] ones; row n's length counts them
        self.lengths: Array = np.searchsorted(-sizes, -np.arange(sizes[0])).astype(np.intp)
        step = np.repeat(np.arange(steps), sizes)
        row = np.arange(len(step)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        self.index: Array = row * steps + step
        self.shape = (int(sizes[0]), steps)

    def pad(self, data: Any) -> Any:
        """Packed rows (P, F) -> the padded batch (N, L, F), zeros past each
        row's length."""
        padded = _Scatter.apply(data, self.index, self.shape[0] * self.shape[1])
        return padded.reshape(*self.shape, data.shape[1])

    def pack(self, padded: Any) -> Any:
        """The padded batch (N, L, F) -> its packed rows (P, F)."""
        return _Gather.apply(padded.reshape(-1, padded.shape[2]), self.index)


def _gather(source: Any, index: Array) -> Any:
    return torch.from_numpy(np.take(source.detach().numpy(), index, axis=0))


def _scatter(source: Any, index: Array, rows: int) -> Any:
    values = source.detach().numpy()
    out = np.zeros((rows, values.shape[1]), values.dtype)
    out[index] = values
    return torch.from_numpy(out)


# torch is not analysed (see [tool.mypy]), so its classes are Any to mypy.
class _Gather(torch.autograd.Function):  # type: ignore[misc]
    """Rows ``index`` of a (M, F) tensor; gradient: scattered back."""

    @staticmethod
    def forward(ctx: Any, source: Any, index: Array) -> Any:
        ctx.index, ctx.rows = index, source.shape[0]
        return _gather(source, index)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> tuple[Any, None]:
        return _Scatter.apply(grad.contiguous(), ctx.index, ctx.rows), None


class _Scatter(torch.autograd.Function):  # type: ignore[misc]
    """A (P, F) tensor's rows placed at ``index`` in zeros of ``rows`` rows;
    gradient: gathered back."""

    @staticmethod
    def forward(ctx: Any, source: Any, index: Array, rows: int) -> Any:
        ctx.index = index
        return _scatter(source, index, rows)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> tuple[Any, None, None]:
        return _Gather.apply(grad.contiguous(), ctx.index), None, None
