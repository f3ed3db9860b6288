"""The README's Python examples run as written, each on its own in a
temporary directory, so a newcomer can paste them."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _blocks():
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)


def test_readme_has_python_examples():
    assert len(_blocks()) >= 6


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_example_runs(tmp_path, monkeypatch, index):
    monkeypatch.chdir(tmp_path)             # the Keras example writes model files
    # Each block stands alone: its own imports and data.
    exec(compile(_blocks()[index], f"README.md example {index}", "exec"), {"__name__": "readme"})
