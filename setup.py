"""Build the compiled kernels: src/ sources become the private modules
fastlstm._kernel (inference: its own SIMD tiles, no BLAS, OpenMP where the
compiler has it) and fastlstm._train (training: BLAS from SciPy's Cython
interface at run time, so nothing is linked for it here)."""
import os
import shutil
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_TEST = """
#include <omp.h>
int main(void) { int n = 0;
#pragma omp parallel reduction(+:n)
n += omp_get_num_threads() > 0;
return n > 0 ? 0 : 1; }
"""


def openmp_flags(compiler):
    """(compile, link) flags that build and link an OpenMP program, or None."""
    candidates = [(["/openmp"], [])] if compiler.compiler_type == "msvc" else [
        (["-fopenmp"], ["-fopenmp"]),
        (["-Xpreprocessor", "-fopenmp"], ["-lomp"]),   # Apple clang + libomp
    ]
    tmp = tempfile.mkdtemp()
    try:
        source = os.path.join(tmp, "omp_test.c")
        with open(source, "w") as f:
            f.write(OPENMP_TEST)
        for cflags, ldflags in candidates:
            try:
                objects = compiler.compile([source], output_dir=tmp, extra_postargs=cflags)
                compiler.link_executable(objects, "omp_test", output_dir=tmp,
                                         extra_postargs=ldflags)
            except Exception:  # noqa: BLE001 - any failure means "not this one"
                continue
            return cflags, ldflags
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# The extensions whose Cython uses prange/parallel.
OPENMP_EXTENSIONS = {"fastlstm._kernel"}


class BuildExt(build_ext):
    def build_extensions(self):
        flags = openmp_flags(self.compiler)
        if flags is None:
            print("fastlstm: the compiler has no OpenMP; the kernel will run on one thread")
        for ext in self.extensions:
            if flags is not None and ext.name in OPENMP_EXTENSIONS:
                ext.extra_compile_args += flags[0]
                ext.extra_link_args += flags[1]
        super().build_extensions()


extensions = [
    Extension(
        "fastlstm._kernel",
        sources=["src/_kernel.pyx"],
        include_dirs=["src", np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # No -march: lstm_layer.h compiles its AVX2/AVX-512 tiles with
        # per-function targets and picks one at run time.
        extra_compile_args=["-O3"],
    ),
    Extension(
        "fastlstm._train",
        sources=["src/_train.pyx"],
        include_dirs=["src"],
        # No FP trap handlers are installed, so selects may evaluate both
        # sides: this lets the compiler vectorise the cell loops.
        extra_compile_args=["-O3", "-fno-trapping-math"],
    ),
]

setup(
    # A top-level src/ would make setuptools guess a src-layout: list the package.
    packages=["fastlstm"],
    ext_modules=cythonize(extensions, include_path=["src"],
                          compiler_directives={"language_level": 3}),
    cmdclass={"build_ext": BuildExt},
)
