"""``python -m fastlstm``: the tutorial's demo, its fair timing, and the
one-line answer from an uncompiled source tree."""
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastlstm
from fastlstm import __main__ as demo


def test_demo_prints_shapes_accuracy_and_timing_table():
    result = subprocess.run([sys.executable, "-m", "fastlstm"], capture_output=True, text=True,
                            check=True, timeout=300)
    out = result.stdout
    assert "return_sequences=True  return_state=True  -> [(100, 4, 16), (100, 16), (100, 16)]" \
        in out
    assert "parameters: 1,728" in out
    # float32 against float32 peers: well inside the suite's tolerance.
    for peer in ("NumPy reference", "torch.nn.LSTM"):
        difference = re.search(rf"max \|fastlstm - {re.escape(peer)}\| *= (\S+)", out)
        assert difference and float(difference.group(1)) < 1e-5
    rows = {line.split()[0]: line for line in out.splitlines()
            if line.startswith("  ") and " ms " in line}
    assert set(rows) == {"fastlstm", "torch.nn.LSTM", "NumPy"}
    header = next(line for line in out.splitlines() if line.strip().startswith("1 thread"))
    columns = len(re.findall(r"\d+ threads?", header))
    assert all(line.count(" ms ") == columns for line in rows.values())
    assert demo.TORCH_HINT not in out


def test_demo_says_how_to_install_a_missing_peer(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)        # import torch fails
    monkeypatch.setattr(demo, "ROUNDS", 1)
    demo.tutorial()
    out = capsys.readouterr().out
    assert "torch.nn.LSTM" not in out
    assert "PyTorch is not installed" in out
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in out


def test_libraries_take_turns_in_rotated_order():
    order = []

    def runner(name):
        def make(threads):
            import contextlib
            return contextlib.nullcontext(), lambda: order.append((name, threads))
        return make

    medians = demo.time_in_turns({"a": runner("a"), "b": runner("b")}, [1, 2], rounds=4)
    assert set(medians) == {("a", 1), ("a", 2), ("b", 1), ("b", 2)}
    assert all(m > 0 for m in medians.values())
    # Each round's first pair is the next one in turn: blocks start with
    # a different (library, threads) pair after the warm-up.
    starts, previous = [], None
    for pair in order:
        if pair != previous:
            starts.append(pair)
        previous = pair
    rounds = starts[-16:]
    assert [rounds[i] for i in range(0, 16, 4)] == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]


@pytest.fixture
def uncompiled_checkout(tmp_path):
    """A copy of the package's Python sources without the compiled kernel,
    as in a checkout's root after a non-editable ``pip install .``."""
    package = pathlib.Path(fastlstm.__file__).parent
    shutil.copytree(package, tmp_path / "fastlstm",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    return tmp_path


@pytest.mark.parametrize("arguments", [[], ["--config"]])
def test_uncompiled_source_tree_says_what_to_do_in_one_line(uncompiled_checkout, arguments):
    # -S: no site-packages, so the editable install's finder cannot step in
    # and the current directory's fastlstm/ is what Python imports.
    result = subprocess.run([sys.executable, "-S", "-m", "fastlstm", *arguments],
                            cwd=uncompiled_checkout, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert "source tree without its compiled kernel" in lines[0]
    assert "run from another directory" in lines[0] and "pip install -e ." in lines[0]
    assert "circular import" not in lines[0]


def test_import_error_of_a_built_tree_is_left_alone(tmp_path):
    from fastlstm._checkout import uncompiled_error

    error = ImportError("the compiled module does not load")
    assert uncompiled_error(error) is error   # this package directory holds a build
    assert np.isfinite(fastlstm.LSTM(2)(np.ones((1, 1, 1)))).all()
