"""Weight layouts of Keras, PyTorch and ONNX, and the conversions between them.

The one place that knows how the frameworks lay out an LSTM's weights.

* Keras: ``kernel (I, 4H)``, ``recurrent_kernel (H, 4H)``, ``bias (4H,)``;
  gate blocks i, f, c, o along the last axis.
* PyTorch ``nn.LSTM``: ``weight_ih (4H, I)``, ``weight_hh (4H, H)``,
  ``bias_ih (4H,)``, ``bias_hh (4H,)``; gate blocks i, f, g, o along the
  first axis, the same blocks as Keras.  The two biases are added.
* ONNX ``LSTM``: ``W [D, 4H, I]``, ``R [D, 4H, H]``, ``B [D, 8H]`` (Wb then
  Rb); gate blocks i, o, f, c.  D is 1, or 2 for bidirectional (forward
  first).
"""
import numpy as np

# Keras block index (i, f, c, o) of each ONNX block (i, o, f, c).
_ONNX_FROM_KERAS = [0, 3, 1, 2]
# ... and the inverse: ONNX block index of each Keras block.
_KERAS_FROM_ONNX = [0, 2, 3, 1]


def _blocks(array, order, axis):
    """Reorder the four gate blocks of ``array`` along ``axis``."""
    parts = np.split(np.asarray(array), 4, axis=axis)
    return np.concatenate([parts[k] for k in order], axis=axis)


def keras_to_torch(kernel, recurrent_kernel, bias=None):
    """Keras weights → ``(weight_ih, weight_hh, bias_ih, bias_hh)`` for nn.LSTM.

    The Keras bias goes into ``bias_ih`` and ``bias_hh`` is zero, so the sum
    torch computes is exactly the Keras bias.  Without a bias the last two
    entries are None.
    """
    weight_ih = np.ascontiguousarray(np.asarray(kernel).T)
    weight_hh = np.ascontiguousarray(np.asarray(recurrent_kernel).T)
    if bias is None:
        return weight_ih, weight_hh, None, None
    bias = np.array(bias)
    return weight_ih, weight_hh, bias, np.zeros_like(bias)


def torch_to_keras(weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """nn.LSTM weights → Keras ``[kernel, recurrent_kernel, bias]``.

    ``bias = bias_ih + bias_hh``; without biases the list has two entries.
    """
    weights = [np.ascontiguousarray(np.asarray(weight_ih).T),
               np.ascontiguousarray(np.asarray(weight_hh).T)]
    if bias_ih is not None:
        weights.append(np.asarray(bias_ih) + np.asarray(bias_hh))
    return weights


def keras_to_onnx(directions):
    """Keras weights of one or two directions → ONNX ``(W, R, B)``.

    Parameters
    ----------
    directions : list of [kernel, recurrent_kernel, bias] (bias optional)
        One entry per direction, forward first.

    Returns
    -------
    W (D, 4H, I), R (D, 4H, H), B (D, 8H): B holds the Keras bias as Wb and
    zeros as Rb (ONNX adds the two).
    """
    w, r, b = [], [], []
    for weights in directions:
        kernel, recurrent_kernel = np.asarray(weights[0]), np.asarray(weights[1])
        units = recurrent_kernel.shape[0]
        w.append(_blocks(kernel.T, _ONNX_FROM_KERAS, axis=0))
        r.append(_blocks(recurrent_kernel.T, _ONNX_FROM_KERAS, axis=0))
        bias = (np.asarray(weights[2]) if len(weights) > 2
                else np.zeros(4 * units, kernel.dtype))
        b.append(np.concatenate([_blocks(bias, _ONNX_FROM_KERAS, axis=0),
                                 np.zeros(4 * units, bias.dtype)]))
    return np.stack(w), np.stack(r), np.stack(b)


def onnx_to_keras(W, R, B=None):
    """ONNX ``(W, R, B)`` → a list of Keras ``[kernel, recurrent_kernel, bias]``,
    one per direction; ``bias = Wb + Rb``."""
    W, R = np.asarray(W), np.asarray(R)
    directions = []
    for d in range(W.shape[0]):
        weights = [np.ascontiguousarray(_blocks(W[d], _KERAS_FROM_ONNX, axis=0).T),
                   np.ascontiguousarray(_blocks(R[d], _KERAS_FROM_ONNX, axis=0).T)]
        if B is not None:
            wb, rb = np.split(np.asarray(B[d]), 2)
            weights.append(_blocks(wb + rb, _KERAS_FROM_ONNX, axis=0))
        directions.append(weights)
    return directions
