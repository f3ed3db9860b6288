"""``fastlstm.torch.LSTM`` against ``torch.nn.LSTM``: same state_dict,
same outputs, same gradients for inputs, states and every parameter."""
import numpy as np
import pytest
import torch

import fastlstm
import fastlstm.torch as ft

TORCH_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _pair(dtype, seed=0, **config):
    """An nn.LSTM and a fastlstm.torch.LSTM holding the same weights."""
    torch.manual_seed(seed)
    theirs = torch.nn.LSTM(dtype=dtype, **config)
    ours = ft.LSTM(dtype=dtype, **config)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def _run(module, x, hx, cotangent_seed):
    """Outputs and the gradients of a random linear loss of all outputs."""
    module.zero_grad()
    leaves = [t.detach().clone().requires_grad_(True) for t in [x] + list(hx or [])]
    output, (h_n, c_n) = module(leaves[0], tuple(leaves[1:]) if hx else None)
    generator = torch.Generator().manual_seed(cotangent_seed)
    loss = sum((o * torch.randn(o.shape, generator=generator, dtype=o.dtype)).sum()
               for o in (output, h_n, c_n))
    loss.backward()
    return ([output, h_n, c_n] + [leaf.grad for leaf in leaves]
            + [p.grad for p in module.parameters()])


CONFIGS = [
    dict(num_layers=1, bidirectional=False, batch_first=False, bias=True),
    dict(num_layers=2, bidirectional=False, batch_first=True, bias=True),
    dict(num_layers=1, bidirectional=True, batch_first=True, bias=False),
    dict(num_layers=3, bidirectional=True, batch_first=False, bias=True),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("with_state, batched", [(False, True), (True, True), (True, False)])
def test_matches_nn_lstm(tol, dtype, config, with_state, batched):
    theirs, ours = _pair(dtype, input_size=5, hidden_size=6, **config)
    batch, steps = 3, 7
    generator = torch.Generator().manual_seed(1)
    shape = (batch, steps, 5) if config["batch_first"] else (steps, batch, 5)
    x = torch.randn(shape if batched else (steps, 5), generator=generator, dtype=dtype)
    states = (config["num_layers"] * (2 if config["bidirectional"] else 1),)
    states += (batch, 6) if batched else (6,)
    hx = ([torch.randn(states, generator=generator, dtype=dtype) for _ in range(2)]
          if with_state else None)
    expected = _run(theirs, x, hx, cotangent_seed=2)
    actual = _run(ours, x, hx, cotangent_seed=2)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape
        np.testing.assert_allclose(a.detach().numpy(), e.detach().numpy(),
                                   **tol(TORCH_DTYPES[dtype]))


def test_state_dict_matches_nn_lstm():
    theirs = torch.nn.LSTM(4, 3, num_layers=2, bidirectional=True)
    ours = ft.LSTM(4, 3, num_layers=2, bidirectional=True)
    assert ({k: v.shape for k, v in ours.state_dict().items()}
            == {k: v.shape for k, v in theirs.state_dict().items()})
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())        # and back the other way
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    bound = 1 / np.sqrt(3)
    assert all(p.abs().max() <= bound for p in ours.parameters())


def test_gradcheck():
    torch.manual_seed(3)
    module = ft.LSTM(3, 2, num_layers=2, bidirectional=True, dtype=torch.float64)
    names = [name for name, _ in module.named_parameters()]
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_(True) for p in module.parameters()]

    def function(x, h0, c0, *weights):
        output, (h_n, c_n) = torch.func.functional_call(
            module, dict(zip(names, weights, strict=True)), (x, (h0, c0)))
        return output, h_n, c_n

    assert torch.autograd.gradcheck(function, (x, h0, c0, *params))


def test_dropout_between_layers():
    torch.manual_seed(4)
    module = ft.LSTM(3, 4, num_layers=2, dropout=0.5)
    x = torch.randn(6, 2, 3)
    torch.manual_seed(5)
    first, _ = module(x)
    torch.manual_seed(5)
    again, _ = module(x)
    second, _ = module(x)
    assert torch.equal(first, again)               # torch's generator drives it
    assert not torch.allclose(first, second)
    module.eval()
    reference = torch.nn.LSTM(3, 4, num_layers=2, dropout=0.5).eval()
    reference.load_state_dict(module.state_dict())
    torch.testing.assert_close(module(x)[0], reference(x)[0], rtol=1e-5, atol=1e-6)
    # A single layer has no dropout to apply, in training mode too.
    single = ft.LSTM(3, 4, dropout=0.5)
    torch.testing.assert_close(single(x)[0], single(x)[0], rtol=0, atol=0)


def test_retain_graph_backward_twice():
    torch.manual_seed(6)
    module = ft.LSTM(3, 4)
    x = torch.randn(5, 2, 3, requires_grad=True)
    output, _ = module(x)
    output.sum().backward(retain_graph=True)
    once = x.grad.clone()
    output.sum().backward()
    torch.testing.assert_close(x.grad, 2 * once)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(proj_size=4), ValueError, "proj_size"),
    (dict(proj_size=-1), ValueError, "proj_size"),
    (dict(hidden_size=0), ValueError, "hidden_size"),
    (dict(hidden_size=2.0), TypeError, "hidden_size"),
    (dict(bias=1), TypeError, "bias"),
    (dict(dropout=1.5), ValueError, "dropout"),
    (dict(num_layers=0), ValueError, "num_layers"),
    (dict(dtype=torch.int32), TypeError, "dtype"),
])
def test_constructor_errors(kwargs, error, match):
    """The exception classes nn.LSTM raises for the same arguments (checked
    against it)."""
    arguments = dict(input_size=3, hidden_size=4) | kwargs
    with pytest.raises(error, match=match):
        ft.LSTM(**arguments)
    if "dtype" not in kwargs:
        with pytest.raises(error):
            torch.nn.LSTM(**arguments)


@pytest.mark.parametrize("args, match", [
    ((torch.zeros(2, 1, 3, dtype=torch.float64),), "dtype"),
    ((torch.zeros(2, 1, 5),), "input_size. Expected 3, got 5"),
    ((torch.zeros(2, 1, 1, 3),), "2D or 3D, got 4D"),
    ((torch.zeros(0, 2, 3),), "sequence length"),
    ((torch.zeros(2, 1, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 1, 4))),
     r"hidden\[0\] size \(1, 1, 4\), got \[1, 2, 4\]"),
    ((torch.zeros(2, 1, 3), (torch.zeros(1, 1, 4), torch.zeros(1, 1, 5))),
     r"hidden\[1\] size"),
    ((torch.zeros(2, 1, 3), (torch.zeros(1, 4), torch.zeros(1, 4))), "3-D"),
    ((torch.zeros(2, 3), (torch.zeros(1, 1, 4), torch.zeros(1, 1, 4))), "2-D"),
])
def test_call_errors_are_what_nn_lstm_raises(args, match):
    """Each bad call raises LSTMInputError (a ValueError and a
    RuntimeError) where nn.LSTM raises one of the two."""
    module, theirs = ft.LSTM(3, 4), torch.nn.LSTM(3, 4)
    with pytest.raises(ft.LSTMInputError, match=match) as raised:
        module(*args)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, RuntimeError)
    with pytest.raises((ValueError, RuntimeError)):
        theirs(*args)


def test_call_type_errors():
    module = ft.LSTM(3, 4)
    with pytest.raises(TypeError, match="tensor or a PackedSequence, got ndarray"):
        module(np.zeros((2, 1, 3), np.float32))


def test_input_without_grad(tol):
    """An input that needs no gradient skips the dX product; the weight
    gradients are unchanged."""
    theirs, ours = _pair(torch.float64, input_size=3, hidden_size=4, num_layers=2)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    for module in (theirs, ours):
        output, _ = module(x)
        output.sum().backward()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), **tol(np.float64))


def test_bias_gradients_do_not_share_memory():
    module = ft.LSTM(3, 2)
    output, _ = module(torch.randn(4, 1, 3))
    output.sum().backward()
    expected = module.bias_hh_l0.grad.clone()
    module.bias_ih_l0.grad.mul_(0)            # e.g. an in-place clipping step
    torch.testing.assert_close(module.bias_hh_l0.grad, expected)


def test_reused_training_tapes_keep_gradients_right(tol):
    """The module lends a spare tape to the next forward once a graph is
    freed: graphs alive at once (two forwards, then both backwards; a loop
    whose previous outputs are still bound) must each keep their own."""
    theirs, ours = _pair(torch.float64, input_size=4, hidden_size=5, num_layers=2,
                         batch_first=True)
    generator = torch.Generator().manual_seed(3)
    xs = [torch.randn(2, 6, 4, generator=generator, dtype=torch.float64) for _ in range(4)]

    def grads(module, two_at_once):
        module.zero_grad()
        if two_at_once:      # both graphs alive while the second forward runs
            outputs = [module(x)[0] for x in xs[:2]]
            for output in reversed(outputs):
                output.sum().backward()
        for x in xs[2:]:     # the previous step's outputs still bound
            output, _ = module(x)
            (output ** 2).sum().backward()
        return [p.grad.clone() for p in module.parameters()]

    for two_at_once in (True, False):
        for _ in range(2):   # the second round runs on recycled tapes
            for a, e in zip(grads(ours, two_at_once), grads(theirs, two_at_once),
                            strict=True):
                np.testing.assert_allclose(a.numpy(), e.numpy(), **tol(np.float64))
    assert all(len(free) == 1 for free in ours._free_tapes)


def test_fastlstm_torch_is_an_attribute_without_importing_torch_early():
    """``fastlstm.torch`` works after a plain ``import fastlstm`` (module
    ``__getattr__``), and only that first use imports torch."""
    import subprocess
    import sys

    code = ("import sys, fastlstm; assert 'torch' not in sys.modules; "
            "module = fastlstm.torch.LSTM(2, 3); assert 'torch' in sys.modules; "
            "assert fastlstm.torch.LSTM is type(module); "
            "import fastlstm.torch as ft; assert ft is fastlstm.torch")
    subprocess.run([sys.executable, "-c", code], check=True)
    import fastlstm
    with pytest.raises(AttributeError, match="no attribute 'tensorflow'"):
        fastlstm.tensorflow  # noqa: B018


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_computes_in_float32(dtype):
    """A .half()/.bfloat16() module computes in float32 from its weights and
    returns its dtype: the float32 result of the same (rounded) weights,
    rounded once (so within one unit of the last place of that dtype)."""
    theirs, ours = _pair(torch.float32, input_size=5, hidden_size=6, num_layers=2)
    ours = ours.to(dtype)
    theirs.load_state_dict({k: v.float() for k, v in ours.state_dict().items()})
    x = torch.randn(7, 3, 5).to(dtype)
    output, (h_n, c_n) = ours(x)
    expected, (h_e, c_e) = theirs(x.float())
    ulp = torch.finfo(dtype).eps
    for actual, wanted in ((output, expected), (h_n, h_e), (c_n, c_e)):
        assert actual.dtype == dtype
        torch.testing.assert_close(actual.float(), wanted, rtol=ulp, atol=1e-6)
    output.float().sum().backward()
    assert ours.weight_ih_l0.grad.dtype == dtype


def test_autocast_returns_the_autocast_dtype():
    """nn.LSTM under torch.autocast("cpu") runs in bfloat16 and returns
    bfloat16; fastlstm computes in float32 and returns bfloat16 (so its
    values are the float32 ones, rounded once)."""
    theirs, ours = _pair(torch.float32, input_size=5, hidden_size=6)
    x = torch.randn(7, 3, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, (h_n, c_n) = ours(x)
        try:
            reference = theirs(x)[0]
        except RuntimeError as error:
            # nn.LSTM's bfloat16 path is a oneDNN primitive that CPUs
            # without AVX-512 (AVX2 only: seen on a Zen 3 EPYC) do not have;
            # there only our side of the comparison can run.
            if "primitive descriptor" not in str(error):
                raise
            reference = None
    assert output.dtype == h_n.dtype == c_n.dtype == torch.bfloat16
    if reference is not None:
        assert reference.dtype == torch.bfloat16
    torch.testing.assert_close(output.float(), theirs(x)[0], atol=1e-6,
                               rtol=torch.finfo(torch.bfloat16).eps)


def test_empty_batch_and_zero_steps_as_nn_lstm():
    theirs, ours = _pair(torch.float32, input_size=3, hidden_size=4, num_layers=2)
    for module in (theirs, ours):
        output, (h_n, c_n) = module(torch.zeros(5, 0, 3))
        assert output.shape == (5, 0, 4) and h_n.shape == c_n.shape == (2, 0, 4)
        with pytest.raises(RuntimeError, match="sequence length to be larger than 0"):
            module(torch.zeros(0, 2, 3))


def test_all_weights_as_nn_lstm():
    for bias in (True, False):
        theirs, ours = _pair(torch.float32, input_size=3, hidden_size=4, num_layers=2,
                             bidirectional=True, bias=bias)
        assert len(ours.all_weights) == len(theirs.all_weights) == 4
        for mine, reference in zip(ours.all_weights, theirs.all_weights, strict=True):
            assert [w.shape for w in mine] == [w.shape for w in reference]
            assert all(torch.equal(a, b) for a, b in zip(mine, reference, strict=True))
        names = {id(p): name for name, p in ours.named_parameters()}
        assert [names[id(w)] for w in ours.all_weights[1]] == [
            "weight_ih_l0_reverse", "weight_hh_l0_reverse",
            "bias_ih_l0_reverse", "bias_hh_l0_reverse"][:4 if bias else 2]


def test_to_torch_is_nn_lstm_with_the_same_weights():
    module = ft.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True).eval()
    theirs = module.to_torch()
    assert type(theirs) is torch.nn.LSTM and not theirs.training and theirs.batch_first
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(theirs(x)[0], module(x)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_projection_inference_weights_and_to_torch(dtype):
    """proj_size without autograd (the inference kernel, padded and packed),
    weight_hr in state_dict and all_weights, and to_torch keeping it."""
    torch.manual_seed(7)
    theirs = torch.nn.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=2, dtype=dtype)
    ours = ft.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=2, dtype=dtype)
    ours.load_state_dict(theirs.state_dict())
    assert [[tuple(w.shape) for w in ws] for ws in ours.all_weights] == \
        [[tuple(w.shape) for w in ws] for ws in theirs.all_weights]
    assert "proj_size=2" in repr(ours)
    x = torch.randn(5, 3, 3, dtype=dtype)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, [5, 3, 1])
    tolerance = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else {}
    with torch.no_grad():
        for inputs in (x, packed):
            actual, (h_n, c_n) = ours(inputs)
            expected, (h_ref, c_ref) = theirs(inputs)
            if inputs is packed:
                actual, expected = actual.data, expected.data
            assert h_n.shape == (4, 3, 2) and c_n.shape == (4, 3, 6)
            for a, e in ((actual, expected), (h_n, h_ref), (c_n, c_ref)):
                torch.testing.assert_close(a, e, **tolerance)
        torch.testing.assert_close(ours.to_torch()(x)[0], theirs(x)[0], **tolerance)
    with pytest.raises(ValueError, match="quantize_dynamic.*proj_size=2"):
        fastlstm.quantize_dynamic(ours.eval())
