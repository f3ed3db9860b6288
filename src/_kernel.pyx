# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""LSTM forward kernel: the fused gate matmuls and the time loop.

Knows nothing about Keras.  The caller (fastlstm/layer.py) validates and
allocates; ``forward`` fills the outputs it is given.  Shapes use
B = batch, T = timesteps, I = input features, U = units.
"""
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from scipy.linalg.cython_blas cimport sgemm, dgemm

ctypedef fused floating:
    float
    double

cdef extern from "lstm_cell.h" nogil:
    void fl_cell_row_f32(float *z, float *c, float *h, long U, int act, int rec_act)
    void fl_cell_row_f64(double *z, double *c, double *h, long U, int act, int rec_act)

# Upper bound on the gate workspace [B, chunk, 4U]: the input projection is
# computed for ``chunk`` time steps at once, so memory stays bounded for any T.
cdef enum:
    WORKSPACE_BYTES = 32 * 1024 * 1024


cdef inline void _gemm_rm(int m, int n, int k, floating *a, int lda,
                          floating *b, int ldb, floating beta,
                          floating *c, int ldc) noexcept nogil:
    """Row-major C[m, n] = A[m, k] @ B[k, n] + beta * C (no transposes).

    Fortran BLAS is column-major, so compute C^T = B^T A^T by swapping
    the operands.
    """
    cdef char no = b'N'
    cdef floating one = 1
    if floating is float:
        sgemm(&no, &no, &n, &m, &k, &one, b, &ldb, a, &lda, &beta, c, &ldc)
    else:
        dgemm(&no, &no, &n, &m, &k, &one, b, &ldb, a, &lda, &beta, c, &ldc)


cdef inline void _cell_row(floating *z, floating *c, floating *h, long U,
                           int act, int rec_act) noexcept nogil:
    if floating is float:
        fl_cell_row_f32(z, c, h, U, act, rec_act)
    else:
        fl_cell_row_f64(z, c, h, U, act, rec_act)


cdef void _run(floating *x, floating *kernel, floating *rkernel,
               floating *bias, floating *h, floating *c, floating *y,
               const unsigned char *mask, floating *seq, floating *ws,
               Py_ssize_t B, Py_ssize_t T, Py_ssize_t I, Py_ssize_t U,
               Py_ssize_t chunk, bint backwards, int act,
               int rec_act) noexcept nogil:
    cdef Py_ssize_t G = 4 * U
    cdef Py_ssize_t n_chunks = (T + chunk - 1) // chunk
    cdef Py_ssize_t ci, t0, tc, s, t, k, b
    cdef floating *z
    for ci in range(n_chunks):
        # Chunks and the steps inside them run in processing order; the
        # workspace is indexed by real time, ws[b, t - t0, :].
        t0 = (n_chunks - 1 - ci) * chunk if backwards else ci * chunk
        tc = min(chunk, T - t0)
        # Input projection for the chunk: ws = x[:, t0:t0+tc] @ kernel + bias.
        for b in range(B * tc):
            memcpy(ws + b * G, bias, G * sizeof(floating))
        if tc == T:    # one GEMM over all B*T rows
            _gemm_rm(<int>(B * T), <int>G, <int>I, x, <int>I, kernel, <int>G,
                     1, ws, <int>G)
        else:          # rows of one sample are contiguous only within a chunk
            for b in range(B):
                _gemm_rm(<int>tc, <int>G, <int>I, x + (b * T + t0) * I, <int>I,
                         kernel, <int>G, 1, ws + b * tc * G, <int>G)
        for s in range(tc):
            t = t0 + tc - 1 - s if backwards else t0 + s
            k = T - 1 - t if backwards else t      # output index
            # ws[:, t - t0, :] += h @ recurrent_kernel  (rows strided by tc*G)
            if U > 0:
                _gemm_rm(<int>B, <int>G, <int>U, h, <int>U, rkernel, <int>G,
                         1, ws + (t - t0) * G, <int>(tc * G))
            for b in range(B):
                if mask == NULL:
                    _cell_row(ws + (b * tc + t - t0) * G, c + b * U, h + b * U,
                              U, act, rec_act)
                    if seq != NULL:
                        memcpy(seq + (b * T + k) * U, h + b * U,
                               U * sizeof(floating))
                    continue
                if mask[b * T + t]:
                    _cell_row(ws + (b * tc + t - t0) * G, c + b * U, h + b * U,
                              U, act, rec_act)
                    memcpy(y + b * U, h + b * U, U * sizeof(floating))
                # masked: h and c stay, the output repeats the previous one
                if seq != NULL:
                    memcpy(seq + (b * T + k) * U, y + b * U, U * sizeof(floating))


def forward(const floating[:, :, ::1] x,
            const floating[:, ::1] kernel,
            const floating[:, ::1] recurrent_kernel,
            const floating[::1] bias,
            floating[:, ::1] h,
            floating[:, ::1] c,
            floating[:, ::1] y,
            const unsigned char[:, ::1] mask=None,
            floating[:, :, ::1] seq=None,
            bint go_backwards=False,
            int activation=0,
            int recurrent_activation=1):
    """Run one LSTM layer over a batch of sequences.

    x                 [B, T, I]  inputs
    kernel            [I, 4U]    input weights, gate blocks i, f, c, o
    recurrent_kernel  [U, 4U]    recurrent weights, same blocks
    bias              [4U]
    h, c              [B, U]     in: initial state; out: final state
    y                 [B, U]     in: zeros; out: last output (only with mask;
                                 without one the last output is h)
    mask              [B, T]     nonzero = step is processed, or None
    seq               [B, T, U]  out: output of every step in processing
                                 order, or None to skip writing it
    go_backwards      process t = T-1 .. 0
    activation, recurrent_activation: codes from lstm_cell.h

    The caller guarantees the shapes agree, I >= 1, and every size fits a
    C int.
    Raises MemoryError if the gate workspace cannot be allocated.
    """
    cdef Py_ssize_t B = x.shape[0], T = x.shape[1], I = x.shape[2]
    cdef Py_ssize_t U = h.shape[1], G = 4 * h.shape[1]
    if B == 0 or T == 0 or U == 0:
        return
    cdef Py_ssize_t chunk = WORKSPACE_BYTES // (B * G * <Py_ssize_t>sizeof(floating))
    chunk = max(1, min(T, chunk))
    cdef floating *ws = <floating *>malloc(B * chunk * G * sizeof(floating))
    if ws == NULL:
        raise MemoryError(
            f"fastlstm: cannot allocate the gate workspace "
            f"({B} x {chunk} x {G} values)")
    cdef const unsigned char *mask_ptr = NULL
    cdef floating *seq_ptr = NULL
    if mask is not None:
        mask_ptr = &mask[0, 0]
    if seq is not None:
        seq_ptr = &seq[0, 0, 0]
    with nogil:
        _run(<floating *>&x[0, 0, 0], <floating *>&kernel[0, 0],
             <floating *>&recurrent_kernel[0, 0], <floating *>&bias[0],
             &h[0, 0], &c[0, 0], &y[0, 0], mask_ptr, seq_ptr, ws,
             B, T, I, U, chunk, go_backwards, activation,
             recurrent_activation)
    free(ws)
