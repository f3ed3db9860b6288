"""What this installation of fastlstm is made of: versions, the compiler that
built the kernel, its threads, the SIMD paths, and the BLAS in use.

The compiler is recorded at build time by setup.py in ``_build_info.py``
next to the compiled kernel; the SIMD and threading facts come from the kernel
itself, and the BLAS from threadpoolctl when it is installed (it is not a
dependency).
"""
from __future__ import annotations

import importlib
import os
import platform
import sys
from typing import IO, Any

import numpy as np

from . import _kernel
from ._version import __version__

# How each int8 kernel (fastlstm.quantization) forms its int32 sums.
_INT8_PRODUCTS = {
    "amx": "AMX tdpbusd, 16 rows x 64 byte products per instruction",
    "avx512-vnni": "vpdpbusd, 64 byte products per instruction",
    "avx2-vnni": "AVX-VNNI vpdpbusd, 32 byte products per instruction",
    "avx512": "no VNNI: vpmaddwd on even and odd bytes",
    "avx2": "no VNNI: vpmaddwd on even and odd bytes",
    "portable": "plain C",
}


def _compiler() -> dict[str, Any]:
    try:   # written by setup.py next to the kernel; absent from a bare checkout
        record = importlib.import_module(f"{__package__}._build_info")
    except ImportError:
        return {"name": "unknown (built without setup.py's build record)"}
    return dict(record.COMPILER)


def _blas() -> list[dict[str, Any]]:
    """The BLAS libraries loaded in this process (SciPy's, NumPy's), or []
    without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("internal_api", "version", "num_threads", "threading_layer",
            "architecture", "filepath")
    return [{key: library.get(key) for key in keys}
            for library in threadpool_info() if library.get("user_api") == "blas"]


def build_config() -> dict[str, Any]:
    """The facts that ``show_config`` prints, as a dict.

    Keys: ``fastlstm``, ``python``, ``platform``, ``numpy``, ``scipy``,
    ``compiler`` (a dict with at least ``name``), ``thread_pool`` (bool:
    calls can use several threads),
    ``threads`` (the kernel's default thread count), ``simd`` (``supported``,
    ``chosen``, ``FASTLSTM_ISA``, ``int8``: the int8 kernel of the chosen
    instruction set or the one ``FASTLSTM_INT8_ISA`` forces,
    ``FASTLSTM_INT8_ISA``, ``int8_supported``) and ``blas`` (a list of dicts,
    empty without threadpoolctl).
    """
    import scipy  # not needed by inference: imported only for its version

    kernel = _kernel.info()
    return {
        "fastlstm": __version__,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "compiler": _compiler(),
        "thread_pool": kernel["thread_pool"],
        "threads": kernel["default_threads"],
        "simd": {"supported": kernel["supported_isas"], "chosen": kernel["isa"],
                 "FASTLSTM_ISA": os.environ.get("FASTLSTM_ISA"), "int8": kernel["int8"],
                 "FASTLSTM_INT8_ISA": os.environ.get("FASTLSTM_INT8_ISA"),
                 "int8_supported": kernel["int8_supported"]},
        "blas": _blas(),
    }


def show_config(file: IO[str] | None = None) -> None:
    """Print how this fastlstm was built and what it runs on.

    Parameters
    ----------
    file : text stream, optional
        Where to print; standard output by default.

    Examples
    --------
    >>> import fastlstm
    >>> fastlstm.show_config()  # doctest: +ELLIPSIS
    fastlstm ...
    """
    config = build_config()
    compiler = config["compiler"]
    simd = config["simd"]
    lines = [
        f"fastlstm {config['fastlstm']}",
        f"  python:    {config['python']} ({config['platform']})",
        f"  numpy:     {config['numpy']}",
        f"  scipy:     {config['scipy']}",
        f"  compiler:  {compiler.get('version') or compiler['name']}",
        f"  threads:   {'pool' if config['thread_pool'] else 'one'} "
        f"(default threads: {config['threads']})",
        f"  simd:      chosen {simd['chosen']}, supported {', '.join(simd['supported'])}"
        + (f" (FASTLSTM_ISA={simd['FASTLSTM_ISA']})" if simd["FASTLSTM_ISA"] else ""),
        f"  int8:      {simd['int8']} ({_INT8_PRODUCTS[simd['int8']]}), supported "
        f"{', '.join(simd['int8_supported'])}"
        + (f" (FASTLSTM_INT8_ISA={simd['FASTLSTM_INT8_ISA']})"
           if simd["FASTLSTM_INT8_ISA"] else ""),
    ]
    if not config["blas"]:
        lines.append("  blas:      not known (install threadpoolctl to list the loaded BLAS)")
    for library in config["blas"]:
        lines.append(
            f"  blas:      {library['internal_api']} {library['version']} "
            f"({library['num_threads']} threads, {library['architecture']}) "
            f"{library['filepath']}")
    print("\n".join(lines), file=file or sys.stdout)
