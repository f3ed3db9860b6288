"""Build the compiled kernel: the C sources under src/kernel/ and the Cython
layer src/_kernel.pyx become one private module, fastlstm._kernel
(inference and training: one thread pool, one table of tiles).  No BLAS:
the tiles do every product."""

import glob
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# Every header, so that editing one rebuilds the module (Cython's own
# dependency scan does not follow the C sources' includes).
HEADERS = sorted(glob.glob("src/kernel/*.h"))

extensions = [
    Extension(
        "fastlstm._kernel",
        sources=["src/_kernel.pyx"] + sorted(glob.glob("src/kernel/*.c")),
        depends=HEADERS,
        include_dirs=["src", np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # No -march: isa.c compiles the vector tiles with per-function
        # targets and the table picks them at run time.  No FP trap handlers
        # are installed, so selects may evaluate both sides: this lets the
        # compiler vectorise the cell loops.  -pthread: the thread pool.
        # Hidden symbols: the C entries are for this module only.
        extra_compile_args=["-O3", "-fno-trapping-math", "-fvisibility=hidden", "-pthread"],
        extra_link_args=["-pthread"],
    ),
]


def write_build_info(path="fastlstm/_build_info.py"):
    """Record the C compiler that build_ext will use, for fastlstm.show_config().

    build_ext makes its compiler the same way: new_compiler() customised
    from this Python's sysconfig and the CC/CFLAGS environment variables.
    """
    import subprocess
    from distutils.ccompiler import new_compiler  # setuptools' own copy
    from distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    record = {"name": compiler.compiler_type, "version": "", "flags": ""}
    command = getattr(compiler, "compiler_so", None)
    if command:
        try:
            version = subprocess.run([command[0], "--version"], capture_output=True,
                                     text=True, timeout=60).stdout.splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            version = ""
        record = {"name": command[0], "version": version, "flags": " ".join(command[1:])}
    with open(path, "w") as f:
        f.write('"""Written by setup.py at build time; read by fastlstm.show_config()."""\n')
        f.write(f"COMPILER = {record!r}\n")


class BuildExt(build_ext):
    """The extensions' flags (written for gcc and clang) by compiler family.

    gcc/clang: no debug info (-g0 overrides the -g of Python's own CFLAGS,
    which was three quarters of a wheel: 2.5 MB against 0.54 MB for
    `pip wheel .`), and on Linux no symbol table either (-s: a wheel is for
    users, its C has no debugger attached).  MSVC takes none of the gcc flags (it
    would ignore each with a warning) and builds the portable path on one
    thread (see lstm_layer.h and fl_pool.h).
    """

    def build_extensions(self):
        for ext in self.extensions:
            if self.compiler.compiler_type == "msvc":
                ext.extra_compile_args, ext.extra_link_args = [], []
            else:
                ext.extra_compile_args = ext.extra_compile_args + ["-g0"]
                if sys.platform.startswith("linux"):
                    ext.extra_link_args = ext.extra_link_args + ["-s"]
        super().build_extensions()


write_build_info()

setup(
    # A top-level src/ would make setuptools guess a src-layout: list the package.
    packages=["fastlstm"],
    cmdclass={"build_ext": BuildExt},
    ext_modules=cythonize(extensions, include_path=["src"],
                          compiler_directives={"language_level": 3}),
)
