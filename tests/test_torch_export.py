"""``fastlstm.torch.LSTM`` under torch.compile, torch.export, torch.onnx.export
and TorchScript, against ``torch.nn.LSTM`` with the same weights.

torch.compile runs with the ``aot_eager`` backend: it traces the module
with Dynamo and the custom ops' fake implementations and autograd formula
exactly as the default backend does, without spending ~10 s compiling C++.
"""
import gc
import io

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import fastlstm.torch as ft

CONFIG = dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True,
              batch_first=True)


def _pair(**config):
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(**CONFIG | config)
    ours = ft.LSTM(**CONFIG | config)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def _step(module, x):
    """Outputs and gradients of one training step."""
    module.zero_grad()
    x = x.clone().requires_grad_(True)
    output, (h_n, c_n) = module(x)
    (output.square().sum() + h_n.sum() + c_n.sum()).backward()
    return [output, h_n, c_n, x.grad] + [p.grad for p in module.parameters()]


@pytest.mark.parametrize("proj_size", [0, 2])
def test_compile_fullgraph_inference_and_training(proj_size):
    """Both custom ops (forward and backward), with and without weight_hr."""
    theirs, ours = _pair(proj_size=proj_size)
    compiled = torch.compile(ours, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x)[0], theirs(x)[0], rtol=1e-5, atol=1e-6)
    for actual, expected in zip(_step(compiled, x), _step(theirs, x), strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_plain_compile_prints_no_errors(capfd):
    """Issue 14: plain torch.compile printed "Exception ignored in
    _Lease.__del__" (a tape lease made while Dynamo traced)."""
    theirs, ours = _pair()
    compiled = torch.compile(ours, backend="aot_eager")
    x = torch.randn(2, 5, 3)
    for _ in range(2):
        for actual, expected in zip(_step(compiled, x), _step(theirs, x), strict=True):
            torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
    del compiled
    gc.collect()
    captured = capfd.readouterr()
    assert "Exception ignored" not in captured.err and "_Lease" not in captured.err


def test_export_runs_the_custom_op():
    theirs, ours = _pair()
    x = torch.randn(2, 5, 3)
    program = torch.export.export(ours, (x,))
    assert "torch.ops.fastlstm.lstm_direction" in program.graph_module.code
    exported = program.module()
    for actual, expected in zip(exported(x)[1] + (exported(x)[0],),
                                theirs(x)[1] + (theirs(x)[0],), strict=True):
        torch.testing.assert_close(actual, expected.detach(), rtol=1e-5, atol=1e-6)


# torch's exporter calls a pytree check that torch itself deprecated.
@pytest.mark.filterwarnings("ignore:`isinstance.treespec, LeafSpec.` is deprecated:FutureWarning")
def test_onnx_export_writes_the_standard_lstm_operator():
    """torch.onnx.export (its default exporter) writes ONNX's LSTM operator,
    and ONNX Runtime computes nn.LSTM's output from it."""
    theirs, ours = _pair()
    ours.eval()
    x = torch.randn(2, 5, 3)
    program = torch.onnx.export(ours, (x,), input_names=["x"], verbose=False)
    model = onnx.load_from_string(program.model_proto.SerializeToString())
    assert [node.op_type for node in model.graph.node].count("LSTM") == 2
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    output, h_n, c_n = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        expected, (h_e, c_e) = theirs(x)
    for actual, wanted in ((output, expected), (h_n, h_e), (c_n, c_e)):
        np.testing.assert_allclose(actual, wanted.numpy(), rtol=1e-5, atol=1e-6)


# The TorchScript-based exporter is deprecated (torch 2.9+) and warns that
# batch sizes other than 1 need the states as inputs: both are about the
# exporter, not about the module.
@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:Exporting a model to ONNX with a batch_size other than 1")
def test_legacy_onnx_exporter_too():
    theirs, ours = _pair()
    buffer = io.BytesIO()
    torch.onnx.export(ours.eval(), (torch.randn(2, 5, 3),), buffer, dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    assert [node.op_type for node in model.graph.node].count("LSTM") == 2


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
def test_onnx_export_refuses_a_projection():
    """ONNX's LSTM operator has no projection: a module with proj_size says so."""
    _, ours = _pair(proj_size=2)
    with pytest.raises(ft.LSTMInputError, match="proj_size=2 cannot be exported to ONNX"):
        torch.onnx.export(ours.eval(), (torch.randn(2, 5, 3),), io.BytesIO(), dynamo=False)


# torch.jit.script and trace are deprecated (DeprecationWarnings), and
# tracing nn.LSTM warns about its shape checks (TracerWarning): torch's own.
@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("record", [torch.jit.script,
                                    lambda module: torch.jit.trace(module, torch.randn(2, 5, 3))])
def test_torchscript_refused_pointing_to_to_torch(record):
    _, ours = _pair()
    with pytest.raises(RuntimeError, match=r"TorchScript.*to_torch\(\)"):
        record(ours)
    # What the error suggests (torch 2.13 cannot script nn.LSTM itself, it
    # traces it).
    x = torch.randn(2, 5, 3)
    traced = torch.jit.trace(ours.to_torch(), x)
    torch.testing.assert_close(traced(x)[0], ours(x)[0], rtol=1e-5, atol=1e-6)
