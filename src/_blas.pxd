# cython: language_level=3
"""Row-major GEMM over scipy.linalg.cython_blas, for float and double.

One shim for every compiled module (scikit-learn's ``_cython_blas._gemm``
idea): Fortran BLAS is column-major, so a row-major ``C = op(A) op(B)`` is
computed as the column-major ``C^T = op(B)^T op(A)^T`` by swapping the
operands; the transpose flags stay with their operands.
"""
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating *a, int lda,
                      const floating *b, int ldb, floating beta,
                      floating *c, int ldc) noexcept nogil:
    """C[m, n] = alpha * op(A) @ op(B) + beta * C, all row-major.

    op(A) is [m, k] (A is [k, m] when trans_a); op(B) is [k, n].
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float *>b, &ldb, <float *>a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double *>b, &ldb, <double *>a, &lda,
              &beta, c, &ldc)
