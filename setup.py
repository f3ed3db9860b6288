"""Build the compiled kernels: src/ sources become the private modules
fastlstm._kernel (inference) and fastlstm._train (training).  BLAS comes
from SciPy's Cython interface at run time, so nothing is linked here."""
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "fastlstm._kernel",
        sources=["src/_kernel.pyx"],
        include_dirs=["src"],
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
)
