"""``fastlstm.dask``: run a layer or stack over a Dask array, chunk by chunk.

For more sequences than one machine handles (or holds), Dask splits the
batch into chunks and runs them where its scheduler says: threads, local
processes, or the workers of a ``dask.distributed`` cluster.  A fastlstm
model pickles small (configuration and weights, no workspace), and
``predict`` puts it into the task graph once, so a cluster ships the weights
to each worker once, not with every chunk.

Importing this module imports Dask (``pip install "fastlstm[dask]"``);
``import fastlstm`` does not.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import numpy as np

if TYPE_CHECKING:
    from .bidirectional import Bidirectional
    from .layer import LSTM
    from .sequential import Sequential

__all__ = ["predict"]


def _apply(model: Any, x: np.ndarray[Any, Any], *masks: np.ndarray[Any, Any]) -> Any:
    """One chunk: the model on rows of x (and of the mask, if any)."""
    return model(x, mask=masks[0]) if masks else model(x)


def predict(model: LSTM | Bidirectional | Sequential, x: Any,
            mask: Any = None) -> da.Array:
    """The model's output for a Dask array ``x``, as a lazy Dask array.

    Parameters
    ----------
    model : fastlstm.LSTM, fastlstm.Bidirectional or fastlstm.Sequential
        Returning one array (no ``return_state``, no ``merge_mode=None``)
        and not stateful: the chunks are independent calls.  An unbuilt
        model is built here, once, from ``x``'s feature size.
    x : dask.array.Array or array_like, shape (batch, timesteps, features)
        Chunked along the batch only; other chunkings are merged along the
        time and feature axes first.
    mask : dask.array.Array or array_like of bool, shape (batch, timesteps), optional
        As for the model's call; chunked like ``x`` along the batch.

    Returns
    -------
    dask.array.Array
        (batch, units) or (batch, timesteps, units), chunked like ``x``
        along the batch; ``.compute()`` runs it on the current scheduler
        (a ``dask.distributed.Client``'s cluster when one is active).

    Examples
    --------
    >>> import dask.array as da, numpy as np, fastlstm, fastlstm.dask
    >>> layer = fastlstm.LSTM(16, seed=0)
    >>> x = da.random.default_rng(0).random((1000, 4, 10), chunks=(250, 4, 10))
    >>> y = fastlstm.dask.predict(layer, x)
    >>> y.shape, y.chunks[0]
    ((1000, 16), (250, 250, 250, 250))
    >>> np.allclose(y.compute(), layer(x.compute()), rtol=1e-5, atol=1e-6)
    True
    """
    if getattr(model, "time_major", False):
        raise ValueError("fastlstm.dask.predict takes batch-major stacks, got a Sequential "
                         "with time_major=True; pass x as (batch, timesteps, features) to a "
                         "stack built with time_major=False")
    # A Bidirectional is stateful when its layers are.
    stateful = [layer for layer in getattr(model, "layers", [model])
                if getattr(layer, "stateful", False)]
    if stateful:
        raise ValueError(f"fastlstm.dask.predict runs the chunks as independent calls, so the "
                         f"model must not be stateful; got {stateful[0]!r} with stateful=True")
    x = da.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"fastlstm.dask.predict expected x of shape (batch, timesteps, "
                         f"features), got shape {x.shape} (rank {x.ndim})")
    x = x.rechunk({1: -1, 2: -1})
    # An empty batch builds an unbuilt model, checks the feature size and
    # gives the output's shape and dtype without computing anything.
    meta = model(np.zeros((0,) + x.shape[1:], x.dtype))
    if isinstance(meta, list):
        raise ValueError(f"fastlstm.dask.predict needs a model that returns one array, got "
                         f"{model!r}, which returns {len(meta)} (return_state=True or "
                         f"merge_mode=None)")
    arrays: list[Any] = [x, "btf"]
    if mask is not None:
        mask = da.asarray(mask)
        if mask.shape != x.shape[:2]:
            raise ValueError(f"mask must have shape (batch, timesteps) = {x.shape[:2]}, "
                             f"got {mask.shape}")
        arrays += [mask.rechunk((x.chunks[0], -1)), "bt"]
    # Delayed: the model is one task of the graph that every chunk depends
    # on, so a cluster sends it to each worker once.
    shared = dask.delayed(model, pure=True)
    index = "btu" if meta.ndim == 3 else "bu"
    return da.blockwise(_apply, index, shared, None, *arrays,
                        new_axes={"u": meta.shape[-1]}, concatenate=True,
                        dtype=meta.dtype, meta=meta)
