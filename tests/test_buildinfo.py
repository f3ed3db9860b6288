"""fastlstm.show_config / build_config and ``python -m fastlstm --config``."""
import io
import os
import subprocess
import sys

import numpy as np
import scipy
import threadpoolctl

import fastlstm
from fastlstm import buildinfo


def test_build_config_reports_this_process():
    config = buildinfo.build_config()
    assert set(config) == {"fastlstm", "python", "platform", "numpy", "scipy", "compiler",
                           "thread_pool", "threads", "simd", "blas"}
    assert config["fastlstm"] == fastlstm.__version__
    assert config["numpy"] == np.__version__ and config["scipy"] == scipy.__version__
    assert config["python"] == ".".join(map(str, sys.version_info[:3]))
    assert isinstance(config["thread_pool"], bool) and config["threads"] >= 1
    simd = config["simd"]
    assert simd["chosen"] in simd["supported"] and "portable" in simd["supported"]
    assert simd["FASTLSTM_ISA"] == os.environ.get("FASTLSTM_ISA")
    assert simd["int8"] in simd["int8_supported"] and "portable" in simd["int8_supported"]


def test_compiler_was_recorded_at_build_time():
    # setup.py writes fastlstm/_build_info.py whenever it builds the kernel.
    compiler = buildinfo.build_config()["compiler"]
    assert not compiler["name"].startswith("unknown")
    assert set(compiler) == {"name", "version", "flags"}


def test_blas_comes_from_threadpoolctl():
    blas = buildinfo.build_config()["blas"]
    expected = [lib for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    assert blas and len(blas) == len(expected)
    for library in blas:
        assert os.path.exists(library["filepath"]) and library["num_threads"] >= 1


def test_show_config_prints_every_fact(capsys):
    fastlstm.show_config()
    out = capsys.readouterr().out
    config = buildinfo.build_config()
    assert out.startswith(f"fastlstm {fastlstm.__version__}\n")
    for key in ("python", "numpy", "scipy", "compiler", "threads", "simd", "blas"):
        assert f"\n  {key}:" in out
    assert f"numpy:     {np.__version__}" in out
    assert f"chosen {config['simd']['chosen']}" in out
    assert f"int8:      {config['simd']['int8']} (" in out
    assert ("threads:   pool" if config["thread_pool"] else "threads:   one") in out
    for library in config["blas"]:
        assert library["filepath"] in out


def test_show_config_writes_to_a_given_stream(capsys):
    stream = io.StringIO()
    fastlstm.show_config(file=stream)
    assert capsys.readouterr().out == ""
    assert stream.getvalue().startswith("fastlstm ")


def test_module_prints_config():
    result = subprocess.run([sys.executable, "-m", "fastlstm", "--config"],
                            capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.startswith(f"fastlstm {fastlstm.__version__}\n")
    assert "simd:" in result.stdout and "threads:" in result.stdout
