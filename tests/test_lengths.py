"""The kernels' per-step batch sizes (``lengths``: rows sorted longest
first, step t runs on the rows that have it, as cuDNN and PyTorch run a
PackedSequence), on every instruction set and both dtypes: inference and
training against the NumPy reference row by row, padded steps never
computed (their inputs are NaN, their outputs are never written, their
gradients exactly zero), and bitwise the same for any number of threads.
"""
import numpy as np
import pytest

from fastlstm import _kernel, activations, reference, training

CODES = (activations.CODES["tanh"], activations.CODES["sigmoid"])
SENTINEL = 7.0     # never an LSTM output (|h| < 1): marks values not written

# (batch, timesteps, features, units): tiles' tails (7 rows, 13 units),
# unit blocks shared by threads (3 rows, 77 units), rows shared and two
# projection chunks (64 rows); training shares rows (24); lengths include 0
# (a row without steps) and T.
SHAPES = [(7, 9, 5, 13), (3, 25, 4, 77), (64, 30, 3, 40)]
TRAINING_SHAPES = [(7, 9, 5, 13), (24, 20, 6, 40)]


def _problem(shape, dtype, seed):
    batch, timesteps, features, units = shape
    rng = np.random.default_rng(seed)
    lengths = np.sort(rng.integers(0, timesteps + 1, batch))[::-1].astype(np.intp)
    lengths[0] = timesteps
    x = rng.standard_normal((batch, timesteps, features)).astype(dtype)
    valid = np.arange(timesteps) < lengths[:, None]
    x[~valid] = np.nan            # a padded step that were computed would spread NaN
    scale = 0.3 / np.sqrt(features + units)
    weights = [rng.uniform(-scale, scale, s).astype(dtype)
               for s in ((features, 4 * units), (units, 4 * units), (4 * units,))]
    state = [rng.standard_normal((batch, units)).astype(dtype) for _ in range(2)]
    return lengths, x, valid, weights, state


def _infer(x, weights, state, lengths, backwards, threads):
    batch, timesteps = x.shape[:2]
    units = weights[1].shape[0]
    h, c = (s.copy() for s in state)
    sequence = np.full((batch, timesteps, units), SENTINEL, x.dtype)
    _kernel.forward(x, _kernel.pack(*weights), h, c, np.zeros((batch, units), x.dtype), None,
                    sequence, backwards, *CODES, threads, lengths)
    return sequence, h, c


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_inference_per_row_as_the_reference(isa, shape, dtype, backwards, tol):
    lengths, x, valid, weights, state = _problem(shape, dtype, 1)
    runs = [_infer(x, weights, state, lengths, backwards, n) for n in (1, 2)]
    for run in runs[1:]:
        for a, b in zip(runs[0], run, strict=True):
            assert np.array_equal(a, b), "thread counts differ"
    sequence, h, c = runs[0]
    processed = valid[:, ::-1] if backwards else valid   # processing order
    assert np.all(sequence[~processed] == SENTINEL)       # padded steps: not written
    # The reference under the right-padded mask computes each row alone over
    # its own steps (backwards: from its own last step); a row of length 0
    # keeps its initial state.
    expected, _, h_ref, c_ref = reference.lstm(
        np.where(valid[:, :, None], x, 0), *weights, mask=valid, go_backwards=backwards,
        initial_state=state)
    np.testing.assert_allclose(sequence[processed], expected[processed], **tol(dtype))
    np.testing.assert_allclose(h, h_ref, **tol(dtype))
    np.testing.assert_allclose(c, c_ref, **tol(dtype))
    zero = lengths == 0
    assert np.array_equal(h[zero], state[0][zero]) and np.array_equal(c[zero], state[1][zero])


def _train(x, weights, state, lengths, mask, backwards, threads, d_sequence, d_h, d_c):
    sequence, _, h, c, tape = training.forward(
        x, *weights, *(s.copy() for s in state), mask=mask, lengths=lengths,
        go_backwards=backwards, num_threads=threads)
    # (the seventh, the projection's gradient, is None: no proj_size here)
    grads = training.backward(tape, d_sequence.copy(), None, d_h.copy(), d_c.copy())[:6]
    return (sequence, h, c) + grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize("shape", TRAINING_SHAPES, ids=str)
def test_training_as_the_masked_call(isa, shape, dtype, backwards, tol):
    """Outputs, final states and every gradient as the same rows under a
    right-padded mask (Keras's semantics, itself tested against the
    reference and Keras): the padded steps contribute nothing there either.
    Inputs at padded steps are 0 for the masked call (its weight gradients
    read them, times a zero) and NaN for ours (never read)."""
    lengths, x, valid, weights, state = _problem(shape, dtype, 2)
    rng = np.random.default_rng(3)
    processed = valid[:, ::-1] if backwards else valid
    d_sequence = rng.standard_normal(x.shape[:2] + (weights[1].shape[0],)).astype(dtype)
    d_sequence *= processed[:, :, None]
    d_h, d_c = (rng.standard_normal(s.shape).astype(dtype) for s in state)
    args = (backwards, 1, d_sequence, d_h, d_c)
    masked = _train(np.where(valid[:, :, None], x, 0), weights, state, None,
                    valid.astype(np.uint8), *args)
    ours = _train(x, weights, state, lengths, None, *args)
    assert np.all(ours[0][~processed] == 0)          # not written (training zeroes it)
    assert np.all(ours[3][~valid] == 0)              # dx of padded steps
    masked = (masked[0] * processed[:, :, None],) + masked[1:]
    names = ["sequence", "h", "c", "dx", "dh0", "dc0", "dkernel", "drecurrent", "dbias"]
    for name, a, b in zip(names, ours, masked, strict=True):
        np.testing.assert_allclose(a, b, **tol(dtype), err_msg=name)
    again = _train(x, weights, state, lengths, None, backwards, 2, d_sequence, d_h, d_c)
    for name, a, b in zip(names, ours, again, strict=True):
        assert np.array_equal(a, b), f"{name}: num_threads=2 differs"


def test_training_gradients_match_finite_differences():
    """The gradients with lengths against central differences of the loss
    (float64, backwards and forwards, a row of length 0)."""
    lengths, x, valid, weights, state = _problem((4, 5, 3, 6), np.float64, 4)
    x = np.where(valid[:, :, None], x, 0.0)
    rng = np.random.default_rng(5)
    probe = rng.standard_normal((4, 5, 6))

    def loss(kernel, backwards):
        sequence, _, h, c, _ = training.forward(
            x, kernel, *weights[1:], *(s.copy() for s in state), lengths=lengths,
            go_backwards=backwards)
        return float((sequence * probe).sum() + h.sum() + 2 * c.sum())

    for backwards in (False, True):
        sequence, _, h, c, tape = training.forward(
            x, *weights, *(s.copy() for s in state), lengths=lengths, go_backwards=backwards)
        grads = training.backward(tape, probe.copy(), None, np.ones_like(h), 2 * np.ones_like(c))
        dkernel = grads[3]
        for index in [(0, 0), (2, 5), (1, 17)]:
            step = np.zeros_like(weights[0])
            step[index] = 1e-6
            numeric = (loss(weights[0] + step, backwards)
                       - loss(weights[0] - step, backwards)) / 2e-6
            np.testing.assert_allclose(dkernel[index], numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_numpy_api_lengths_run_the_kernel_on_the_rows_with_steps(
        monkeypatch, go_backwards, return_sequences):
    """``LSTM(x, lengths=...)`` (rows in any order, a row of length 0) gives
    bitwise what the same right-padded mask gives (Keras's semantics: the
    last output repeated past a row's end, zeros before a reversed row's
    first step), with the kernel told the sorted lengths instead of a mask;
    so does Bidirectional."""
    import fastlstm

    rng = np.random.default_rng(6)
    lengths = np.array([3, 0, 7, 5, 7, 1, 2])
    x = rng.standard_normal((7, 7, 4))
    state = [rng.standard_normal((7, 5)) for _ in range(2)]
    mask = np.arange(7) < lengths[:, None]
    layer = fastlstm.LSTM(5, return_sequences=return_sequences, return_state=True,
                          go_backwards=go_backwards, dtype="float64")
    layer.build(4)
    expected = layer(x, mask=mask, initial_state=state)
    given = []
    original = _kernel.forward

    def spy(*args):
        given.append(args[-1])
        return original(*args)
    monkeypatch.setattr(_kernel, "forward", spy)
    actual = layer(x, lengths=lengths, initial_state=state)
    assert len(given) == 1 and given[0].tolist() == [7, 7, 5, 3, 2, 1, 0]
    for a, e in zip(actual, expected, strict=True):
        assert np.array_equal(a, e)
    both = fastlstm.Bidirectional(fastlstm.LSTM(5, return_sequences=return_sequences,
                                                dtype="float64"))
    both.build(4)
    with_lengths = both(x, lengths=lengths)
    assert [g.tolist() for g in given[1:]] == [[7, 7, 5, 3, 2, 1, 0]] * 2
    assert np.array_equal(with_lengths, both(x, mask=mask))


@pytest.mark.parametrize("backwards", [False, True])
def test_training_with_dropout_as_the_masked_call(backwards, tol):
    """Lengths with input and recurrent dropout (each gate block its own
    masked operands): as the masked call, bitwise for 1 and 2 threads."""
    lengths, x, valid, weights, state = _problem((24, 20, 6, 40), np.float32, 7)
    rng = np.random.default_rng(8)
    input_masks, recurrent_masks = training.dropout_masks(rng, 0.3, 0.2, 24, 6, 40,
                                                          np.float32)
    processed = valid[:, ::-1] if backwards else valid
    d_sequence = rng.standard_normal((24, 20, 40)).astype(np.float32) * processed[:, :, None]
    d_h, d_c = (rng.standard_normal(s.shape).astype(np.float32) for s in state)
    runs = []
    for data, kw, threads in ((np.where(valid[:, :, None], x, 0), dict(mask=valid), 1),
                              (x, dict(lengths=lengths), 1), (x, dict(lengths=lengths), 2)):
        sequence, _, h, c, tape = training.forward(
            data, *weights, *(s.copy() for s in state), go_backwards=backwards,
            num_threads=threads, input_masks=input_masks, recurrent_masks=recurrent_masks,
            **{k: (v.astype(np.uint8) if k == "mask" else v) for k, v in kw.items()})
        grads = training.backward(tape, d_sequence.copy(), None, d_h.copy(), d_c.copy())[:6]
        runs.append((sequence * processed[:, :, None], h, c) + grads)
    for a, b in zip(runs[1], runs[2], strict=True):
        assert np.array_equal(a, b)
    for a, b in zip(runs[1], runs[0], strict=True):
        np.testing.assert_allclose(a, b, **tol(np.float32))
