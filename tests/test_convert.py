"""Weight layouts: Keras <-> PyTorch <-> ONNX (fastlstm.convert)."""
import numpy as np

from fastlstm import convert, reference


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _onnx_lstm(x, W, R, B, direction):
    """The ONNX LSTM operator's equations (default activations), written from
    the operator spec: gate blocks i, o, f, c; Y is time-aligned."""
    Wi, Wo, Wf, Wc = np.split(W, 4)
    Ri, Ro, Rf, Rc = np.split(R, 4)
    Wb, Rb = np.split(B, 2)
    bi, bo, bf, bc = np.split(Wb + Rb, 4)
    batch, timesteps, _ = x.shape
    h = np.zeros((batch, R.shape[1]))
    c = np.zeros_like(h)
    y = np.zeros((batch, timesteps, R.shape[1]))
    steps = range(timesteps - 1, -1, -1) if direction == "reverse" else range(timesteps)
    for t in steps:
        xt = x[:, t]
        i = _sigmoid(xt @ Wi.T + h @ Ri.T + bi)
        f = _sigmoid(xt @ Wf.T + h @ Rf.T + bf)
        g = np.tanh(xt @ Wc.T + h @ Rc.T + bc)
        o = _sigmoid(xt @ Wo.T + h @ Ro.T + bo)
        c = f * c + i * g
        h = o * np.tanh(c)
        y[:, t] = h
    return y


def test_keras_to_onnx_computes_the_same_lstm(make_weights):
    forward, backward = make_weights(3, 4, np.float64, 0), make_weights(3, 4, np.float64, 1)
    W, R, B = convert.keras_to_onnx([forward, backward])
    assert (W.shape, R.shape, B.shape) == ((2, 16, 3), (2, 16, 4), (2, 32))
    x = np.random.default_rng(2).uniform(-1, 1, (2, 5, 3))
    np.testing.assert_allclose(_onnx_lstm(x, W[0], R[0], B[0], "forward"),
                               reference.lstm(x, *forward)[0], rtol=1e-12, atol=1e-14)
    # ONNX's reverse output is time-aligned; Keras's go_backwards is in
    # processing order.
    np.testing.assert_allclose(_onnx_lstm(x, W[1], R[1], B[1], "reverse"),
                               reference.lstm(x, *backward, go_backwards=True)[0][:, ::-1],
                               rtol=1e-12, atol=1e-14)


def test_onnx_round_trip_is_exact(make_weights):
    weights = make_weights(3, 4, np.float32, 3)
    (back,) = convert.onnx_to_keras(*convert.keras_to_onnx([weights]))
    for a, b in zip(back, weights, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_onnx_without_bias(make_weights):
    kernel, recurrent_kernel, _ = make_weights(3, 4, np.float32, 4)
    W, R, B = convert.keras_to_onnx([[kernel, recurrent_kernel]])
    assert not B.any()
    (back,) = convert.onnx_to_keras(W, R)
    assert len(back) == 2
    np.testing.assert_array_equal(back[0], kernel)


def test_torch_round_trip_folds_the_bias(make_weights):
    weights = make_weights(3, 4, np.float32, 5)
    weight_ih, weight_hh, bias_ih, bias_hh = convert.keras_to_torch(*weights)
    assert weight_ih.shape == (16, 3) and weight_hh.shape == (16, 4)
    np.testing.assert_array_equal(bias_ih, weights[2])
    assert not bias_hh.any()
    back = convert.torch_to_keras(weight_ih, weight_hh, bias_ih + 1, bias_hh - 1)
    np.testing.assert_array_equal(back[0], weights[0])
    np.testing.assert_array_equal(back[1], weights[1])
    np.testing.assert_allclose(back[2], weights[2], atol=1e-6)
    assert convert.keras_to_torch(*weights[:2])[2:] == (None, None)
