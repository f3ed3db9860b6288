# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""LSTM training kernel: a forward pass that keeps its activations, and
backpropagation through time.

Knows nothing about Keras; fastlstm/training.py validates, allocates the
workspace and arranges results.  Shapes use B = batch, T = timesteps,
I = input features, U = units, G = 4U.

Two implementations:

* ``packed_forward`` / ``packed_backward`` (the common case): the weights
  packed by ``_kernel.pack`` and the tiles of lstm_layer.h run both
  recurrences and the weight gradients, with no BLAS except for dx; batch
  rows (then blocks of units) are split between threads, bitwise identically
  for any thread count.  Layout in lstm_train.h.
* ``forward`` / ``backward`` below: one BLAS product per step, for dropout
  that masks h or x per gate block (which changes each block's product).

The per-step BLAS path's workspace is time-major and
indexed by real time t, so one step's rows are contiguous (a strided step
slice of a batch-major buffer puts B rows a power-of-two-ish stride apart,
which thrashes the cache in the per-step GEMMs) and row t*B + b of every
buffer lines up with x[b, t]:

    xs     [P, T, B, I]  inputs (see below)
    gates  [T, B, G]     activated gates i, f, c, o of each step
    cs     [T, B, U]     c after each step (carried over masked steps)
    acts   [T, B, U]     act(c) of each processed step
    hp     [Q, T, B, U]  h entering each step, times the recurrent dropout
                         mask of each gate block when Q == 4

Dropout masks arrive pre-applied where they can be: ``xs`` is [P, T, B, I],
P == 1 (x, or x times one input mask) or P == 4 (x times the mask of each
gate block, as Keras does when recurrent dropout is on); the recurrent
masks ``rmask`` [4, B, U] multiply h inside the time loop.

Only the recurrence is sequential.  The backward pass walks the steps in
reverse through the cell and one GEMM per step (dh_prev = dZ_t @ R^T, with
R^T stored contiguously), writing dZ = dL/d(gate pre-activations) [T, B, G]
into its own buffer; then it forms dW = X^T dZ, dR = H_prev^T dZ and
dX = dZ W^T as one large GEMM each, and db = the column sums of dZ.
"""
from libc.stdlib cimport calloc, malloc, free
from libc.string cimport memcpy, memset
from cython cimport floating

from _blas cimport gemm

cdef extern from "lstm_train.h" nogil:
    ctypedef struct fl_train_f32:
        Py_ssize_t B, T_, n_in, U, Up, NB, W, MR, ldx, ldh
        int backwards, act, rec_act
        const float *x
        const float *kp
        const float *bias
        const float *r
        const float *rt
        float *rec
        float *hs
        float *dz
        float *c
        float *y
        const unsigned char *mask
        float *seq
        float *dh
        float *dc
        float *dy
        const float *dseq
        float *dkernel
        float *drk
        float *dbias
        const float *kt
        float *dx
    ctypedef struct fl_train_f64:
        Py_ssize_t B, T_, n_in, U, Up, NB, W, MR, ldx, ldh
        int backwards, act, rec_act
        const double *x
        const double *kp
        const double *bias
        const double *r
        const double *rt
        double *rec
        double *hs
        double *dz
        double *c
        double *y
        const unsigned char *mask
        double *seq
        double *dh
        double *dc
        double *dy
        const double *dseq
        double *dkernel
        double *drk
        double *dbias
        const double *kt
        double *dx
    void fl_train_pick_f32(fl_train_f32 *a, int isa)
    void fl_train_pick_f64(fl_train_f64 *a, int isa)
    enum:
        FL_TRAIN_FORWARD
        FL_TRAIN_BACKWARD
        FL_TRAIN_WEIGHTS
        FL_TRAIN_DX
    void fl_train_run_f32(const fl_train_f32 *a, int which, int nt)
    void fl_train_run_f64(const fl_train_f64 *a, int which, int nt)

cdef extern from "lstm_train.h" nogil:
    void fl_train_cell_row_f32(int isa, float *z, float *c, float *h, float *a, long U,
                               int act, int rec_act)
    void fl_train_cell_row_f64(int isa, double *z, double *c, double *h, double *a,
                               long U, int act, int rec_act)
    void fl_train_cell_back_row_f32(const float *z, float *dz, const float *c_prev,
                                    const float *a, const float *dh, float *dc, long U,
                                    int act, int rec_act)
    void fl_train_cell_back_row_f64(const double *z, double *dz, const double *c_prev,
                                    const double *a, const double *dh, double *dc,
                                    long U, int act, int rec_act)


cdef inline void _cell(int isa, floating *z, floating *c, floating *h, floating *a,
                       Py_ssize_t U, int act, int rec_act) noexcept nogil:
    if floating is float:
        fl_train_cell_row_f32(isa, z, c, h, a, U, act, rec_act)
    else:
        fl_train_cell_row_f64(isa, z, c, h, a, U, act, rec_act)


cdef inline void _cell_back(const floating *z, floating *dz, const floating *c_prev,
                            const floating *a, const floating *dh, floating *dc,
                            Py_ssize_t U, int act, int rec_act) noexcept nogil:
    if floating is float:
        fl_train_cell_back_row_f32(z, dz, c_prev, a, dh, dc, U, act, rec_act)
    else:
        fl_train_cell_back_row_f64(z, dz, c_prev, a, dh, dc, U, act, rec_act)


cdef inline void _scaled_copy(floating *dst, const floating *src,
                              const floating *scale, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    if scale == NULL:
        memcpy(dst, src, n * sizeof(floating))
    else:
        for j in range(n):
            dst[j] = src[j] * scale[j]


cdef void _forward(const floating *xs, Py_ssize_t P, const floating *kernel,
                   const floating *rkernel, const floating *bias,
                   floating *h, floating *c, floating *y,
                   const unsigned char *mask, const floating *rmask,
                   floating *seq, floating *gates, floating *cs, floating *acts,
                   floating *hp, Py_ssize_t B, Py_ssize_t T, Py_ssize_t I,
                   Py_ssize_t U, bint backwards, int act, int rec_act,
                   int isa) noexcept nogil:
    cdef Py_ssize_t G = 4 * U, BT = B * T, BTU = B * T * U
    cdef Py_ssize_t s, t, b, g, row
    cdef bint on
    # Input projection of every step at once: gates = xs @ kernel + bias.
    for row in range(BT):
        memcpy(gates + row * G, bias, G * sizeof(floating))
    if P == 1:
        gemm(False, False, <int>BT, <int>G, <int>I, <floating>1, xs, <int>I,
             kernel, <int>G, <floating>1, gates, <int>G)
    else:      # one masked copy of x per gate block
        for g in range(4):
            gemm(False, False, <int>BT, <int>U, <int>I, <floating>1, xs + g * BT * I,
                 <int>I, kernel + g * U, <int>G, <floating>1, gates + g * U, <int>G)
    for s in range(T):
        t = T - 1 - s if backwards else s
        # hp[:, :, t] = h (times the recurrent masks); gates[:, t] += hp @ R.
        if rmask == NULL:
            memcpy(hp + t * B * U, h, B * U * sizeof(floating))
            gemm(False, False, <int>B, <int>G, <int>U, <floating>1, hp + t * B * U,
                 <int>U, rkernel, <int>G, <floating>1, gates + t * B * G, <int>G)
        else:
            for g in range(4):
                for b in range(B):
                    _scaled_copy(hp + g * BTU + (t * B + b) * U, h + b * U,
                                 rmask + (g * B + b) * U, U)
                gemm(False, False, <int>B, <int>U, <int>U, <floating>1,
                     hp + g * BTU + t * B * U, <int>U, rkernel + g * U, <int>G,
                     <floating>1, gates + t * B * G + g * U, <int>G)
        for b in range(B):
            on = mask == NULL or mask[b * T + t] != 0
            if on:
                _cell(isa, gates + (t * B + b) * G, c + b * U, h + b * U,
                      acts + (t * B + b) * U, U, act, rec_act)
                if mask != NULL:
                    memcpy(y + b * U, h + b * U, U * sizeof(floating))
            # masked: h and c stay, the output repeats the previous one
            memcpy(cs + (t * B + b) * U, c + b * U, U * sizeof(floating))
            if seq != NULL:
                memcpy(seq + (b * T + s) * U, (h if mask == NULL else y) + b * U,
                       U * sizeof(floating))


cdef void _backward(const floating *xs, Py_ssize_t P, const floating *kernel,
                    const floating *rkernel_t, const floating *gates, floating *dzs,
                    const floating *cs,
                    const floating *acts, const floating *hp, const floating *c0,
                    const unsigned char *mask, const floating *rmask,
                    const floating *dseq, floating *dh, floating *dc, floating *dy,
                    floating *tmp, floating *dxs, floating *dkernel,
                    floating *drkernel, floating *dbias, Py_ssize_t B, Py_ssize_t T,
                    Py_ssize_t I, Py_ssize_t U, bint backwards, int act,
                    int rec_act) noexcept nogil:
    cdef Py_ssize_t G = 4 * U, BT = B * T, BTU = B * T * U
    cdef Py_ssize_t s, t, t_prev, b, g, j
    cdef floating *dz
    cdef const floating *c_prev
    cdef floating *rows_dh
    cdef const floating *rm
    if mask == NULL:
        # Without a mask the last output is the final h.
        for j in range(B * U):
            dh[j] += dy[j]
    for s in range(T - 1, -1, -1):
        t = T - 1 - s if backwards else s
        t_prev = t + 1 if backwards else t - 1
        for b in range(B):
            dz = dzs + (t * B + b) * G
            if mask == NULL:
                if dseq != NULL:
                    for j in range(U):
                        dh[b * U + j] += dseq[(b * T + s) * U + j]
            else:
                # The output y is carried over masked steps and replaced by h
                # at processed ones, so its gradient accumulates until then.
                if dseq != NULL:
                    for j in range(U):
                        dy[b * U + j] += dseq[(b * T + s) * U + j]
                if mask[b * T + t] == 0:
                    memset(dz, 0, G * sizeof(floating))
                    continue
                for j in range(U):
                    dh[b * U + j] += dy[b * U + j]
                    dy[b * U + j] = 0
            c_prev = c0 + b * U if s == 0 else cs + (t_prev * B + b) * U
            _cell_back(gates + (t * B + b) * G, dz, c_prev, acts + (t * B + b) * U,
                       dh + b * U, dc + b * U, U, act, rec_act)
        # dh_prev = dZ_t @ R^T (per gate block, times its mask, with dropout);
        # masked rows keep dh.
        if rmask == NULL:
            rows_dh = dh if mask == NULL else tmp
            gemm(False, False, <int>B, <int>U, <int>G, <floating>1, dzs + t * B * G,
                 <int>G, rkernel_t, <int>U, <floating>0, rows_dh, <int>U)
            if mask != NULL:
                for b in range(B):
                    if mask[b * T + t] != 0:
                        memcpy(dh + b * U, tmp + b * U, U * sizeof(floating))
        else:
            for g in range(4):
                gemm(False, False, <int>B, <int>U, <int>U, <floating>1,
                     dzs + t * B * G + g * U, <int>G, rkernel_t + g * U * U, <int>U,
                     <floating>0, tmp, <int>U)
                for b in range(B):
                    if mask != NULL and mask[b * T + t] == 0:
                        continue
                    rm = rmask + (g * B + b) * U
                    if g == 0:
                        for j in range(U):
                            dh[b * U + j] = tmp[b * U + j] * rm[j]
                    else:
                        for j in range(U):
                            dh[b * U + j] += tmp[b * U + j] * rm[j]
    # Everything below is one large product over all B*T rows.
    if P == 1:
        gemm(True, False, <int>I, <int>G, <int>BT, <floating>1, xs, <int>I,
             dzs, <int>G, <floating>0, dkernel, <int>G)
        if dxs != NULL:
            gemm(False, True, <int>BT, <int>I, <int>G, <floating>1, dzs, <int>G,
                 kernel, <int>G, <floating>0, dxs, <int>I)
    else:
        for g in range(4):
            gemm(True, False, <int>I, <int>U, <int>BT, <floating>1, xs + g * BT * I,
                 <int>I, dzs + g * U, <int>G, <floating>0, dkernel + g * U, <int>G)
            if dxs != NULL:
                gemm(False, True, <int>BT, <int>I, <int>U, <floating>1, dzs + g * U,
                     <int>G, kernel + g * U, <int>G, <floating>0, dxs + g * BT * I,
                     <int>I)
    if rmask == NULL:
        gemm(True, False, <int>U, <int>G, <int>BT, <floating>1, hp, <int>U,
             dzs, <int>G, <floating>0, drkernel, <int>G)
    else:
        for g in range(4):
            gemm(True, False, <int>U, <int>U, <int>BT, <floating>1, hp + g * BTU,
                 <int>U, dzs + g * U, <int>G, <floating>0, drkernel + g * U, <int>G)
    _column_sums(dbias, dzs, BT, G)


def forward(const floating[:, :, :, ::1] xs,
            const floating[:, ::1] kernel,
            const floating[:, ::1] recurrent_kernel,
            const floating[::1] bias,
            floating[:, ::1] h,
            floating[:, ::1] c,
            floating[:, ::1] y,
            const unsigned char[:, ::1] mask,
            const floating[:, :, ::1] rmask,
            floating[:, :, ::1] seq,
            floating[:, :, ::1] gates,
            floating[:, :, ::1] cs,
            floating[:, :, ::1] acts,
            floating[:, :, :, ::1] hp,
            bint go_backwards, int activation, int recurrent_activation, int isa):
    """Training-mode forward pass over a batch of sequences, one BLAS
    product per step (see ``packed_forward`` for the common case).

    xs                [P, T, B, I]  inputs, time-major (P = 1, or 4
                                    gate-masked copies)
    kernel            [I, G], recurrent_kernel [U, G], bias [G]
    h, c              [B, U]  in: initial state; out: final state
    y                 [B, U]  in: zeros; out: last output (only with mask)
    mask              [B, T]  nonzero = step is processed, or None
    rmask             [4, B, U] recurrent dropout mask per gate block, or None
    seq               [B, T, U] out: outputs in processing order, or None
    gates, cs, acts   workspace, out (see the module docstring)
    hp                [Q, T, B, U] workspace, Q = 4 with rmask else 1
    isa               instruction set code whose float32 activations to use

    The caller guarantees the shapes agree, B, T, I >= 1 and that B*T and
    every size fit a C int.
    """
    cdef Py_ssize_t P = xs.shape[0], T = xs.shape[1], B = xs.shape[2]
    cdef Py_ssize_t I = xs.shape[3], U = h.shape[1]
    cdef const unsigned char *mask_ptr = NULL
    cdef const floating *rmask_ptr = NULL
    cdef floating *seq_ptr = NULL
    if mask is not None:
        mask_ptr = &mask[0, 0]
    if rmask is not None:
        rmask_ptr = &rmask[0, 0, 0]
    if seq is not None:
        seq_ptr = &seq[0, 0, 0]
    with nogil:
        _forward(&xs[0, 0, 0, 0], P, &kernel[0, 0], &recurrent_kernel[0, 0],
                 &bias[0], &h[0, 0], &c[0, 0], &y[0, 0], mask_ptr, rmask_ptr,
                 seq_ptr, &gates[0, 0, 0], &cs[0, 0, 0], &acts[0, 0, 0],
                 &hp[0, 0, 0, 0], B, T, I, U, go_backwards, activation,
                 recurrent_activation, isa)


def backward(const floating[:, :, :, ::1] xs,
             const floating[:, ::1] kernel,
             const floating[:, ::1] recurrent_kernel_t,
             const floating[:, :, ::1] gates,
             floating[:, :, ::1] dz,
             const floating[:, :, ::1] cs,
             const floating[:, :, ::1] acts,
             const floating[:, :, :, ::1] hp,
             const floating[:, ::1] c0,
             const unsigned char[:, ::1] mask,
             const floating[:, :, ::1] rmask,
             const floating[:, :, ::1] dseq,
             floating[:, ::1] dh,
             floating[:, ::1] dc,
             floating[:, ::1] dy,
             floating[:, :, :, ::1] dxs,
             floating[:, ::1] dkernel,
             floating[:, ::1] drecurrent_kernel,
             floating[::1] dbias,
             bint go_backwards, int activation, int recurrent_activation):
    """Backpropagation through the steps recorded by ``forward``.

    recurrent_kernel_t  [G, U] the recurrent kernel transposed: the per-step
                      product reads it row by row (OpenBLAS packs a
                      transposed operand noticeably slower, every step)
    gates, cs, acts, hp  the forward's workspace (left unchanged, so one
                      recorded pass can be backpropagated more than once)
    c0                [B, U] the forward's initial c
    dz                [T, B, G] out: dL/d(gate pre-activations)
    dseq              [B, T, U] dL/d(outputs, processing order), or None
    dh, dc            [B, U] in: dL/d(final h, c); out: dL/d(initial h, c)
    dy                [B, U] in: dL/d(last output); clobbered
    dxs               [P, T, B, I] out: dL/dxs, or None to skip it
    dkernel, drecurrent_kernel, dbias  out: weight gradients
    Other arguments as in ``forward``; the caller guarantees the same.
    Raises MemoryError if the scratch row buffer cannot be allocated.
    """
    cdef Py_ssize_t P = xs.shape[0], T = xs.shape[1], B = xs.shape[2]
    cdef Py_ssize_t I = xs.shape[3], U = dh.shape[1]
    cdef const unsigned char *mask_ptr = NULL
    cdef const floating *rmask_ptr = NULL
    cdef const floating *dseq_ptr = NULL
    cdef floating *dxs_ptr = NULL
    if mask is not None:
        mask_ptr = &mask[0, 0]
    if rmask is not None:
        rmask_ptr = &rmask[0, 0, 0]
    if dseq is not None:
        dseq_ptr = &dseq[0, 0, 0]
    if dxs is not None:
        dxs_ptr = &dxs[0, 0, 0, 0]
    cdef floating *tmp = <floating *>malloc(B * U * sizeof(floating))
    if tmp == NULL:
        raise MemoryError(f"fastlstm: cannot allocate {B} x {U} values")
    with nogil:
        _backward(&xs[0, 0, 0, 0], P, &kernel[0, 0], &recurrent_kernel_t[0, 0],
                  &gates[0, 0, 0], &dz[0, 0, 0], &cs[0, 0, 0], &acts[0, 0, 0],
                  &hp[0, 0, 0, 0],
                  &c0[0, 0], mask_ptr, rmask_ptr, dseq_ptr, &dh[0, 0], &dc[0, 0],
                  &dy[0, 0], tmp, dxs_ptr, &dkernel[0, 0], &drecurrent_kernel[0, 0],
                  &dbias[0], B, T, I, U, go_backwards, activation,
                  recurrent_activation)
    free(tmp)


# ------------------------------------------------------- packed weights, tiles
# Below this many multiply-adds in the recurrence a pass runs on one thread
# (as in _kernel.pyx: a team costs more than it saves on small problems).
cdef double PARALLEL_MIN_FMAS = 2e6


def threads_for(Py_ssize_t B, Py_ssize_t T, Py_ssize_t U, int num_threads):
    """Row groups (threads) a packed pass of this shape uses."""
    if num_threads <= 1 or B < 2 or <double>B * T * 4 * U * U < PARALLEL_MIN_FMAS:
        return 1
    return min(num_threads, B)


cdef void _run(bint backward, const floating *x, const floating *kp,
               const floating *bias, const floating *r, const floating *rt,
               floating *rec, floating *hs, floating *dz, floating *c, floating *y,
               const unsigned char *mask, floating *seq, floating *dh, floating *dc,
               floating *dy, const floating *dseq, floating *dkernel, floating *drk,
               floating *dbias, const floating *kt, floating *dx, Py_ssize_t B,
               Py_ssize_t T, Py_ssize_t I, Py_ssize_t U, Py_ssize_t NB, Py_ssize_t W, Py_ssize_t MR, Py_ssize_t ldx, Py_ssize_t ldh,
               bint backwards, int act, int rec_act, int isa, int nt) noexcept nogil:
    """The forward pass, or the backward pass through the steps followed by
    the weight gradients and (``dx`` not NULL) the input gradient; each on
    up to ``nt`` threads (row groups, groups of blocks, groups of rows of dx:
    all independent, so no synchronisation inside a pass)."""
    cdef fl_train_f32 a32
    cdef fl_train_f64 a64
    if floating is float:
        a32.B = B; a32.T_ = T; a32.n_in = I; a32.U = U; a32.Up = NB * W; a32.NB = NB
        a32.W = W; a32.MR = MR; a32.ldx = ldx; a32.ldh = ldh
        a32.backwards = backwards; a32.act = act
        a32.rec_act = rec_act; a32.x = x; a32.kp = kp; a32.bias = bias; a32.r = r
        a32.rt = rt; a32.rec = rec; a32.hs = hs; a32.dz = dz; a32.c = c; a32.y = y
        a32.mask = mask; a32.seq = seq; a32.dh = dh; a32.dc = dc; a32.dy = dy
        a32.dseq = dseq; a32.dkernel = dkernel; a32.drk = drk; a32.dbias = dbias
        a32.kt = kt; a32.dx = dx
        fl_train_pick_f32(&a32, isa)
        if not backward:
            fl_train_run_f32(&a32, FL_TRAIN_FORWARD, nt)
            return
        fl_train_run_f32(&a32, FL_TRAIN_BACKWARD, nt)
        fl_train_run_f32(&a32, FL_TRAIN_WEIGHTS, nt)
        if dx != NULL:
            fl_train_run_f32(&a32, FL_TRAIN_DX, nt)
    else:
        a64.B = B; a64.T_ = T; a64.n_in = I; a64.U = U; a64.Up = NB * W; a64.NB = NB
        a64.W = W; a64.MR = MR; a64.ldx = ldx; a64.ldh = ldh
        a64.backwards = backwards; a64.act = act
        a64.rec_act = rec_act; a64.x = x; a64.kp = kp; a64.bias = bias; a64.r = r
        a64.rt = rt; a64.rec = rec; a64.hs = hs; a64.dz = dz; a64.c = c; a64.y = y
        a64.mask = mask; a64.seq = seq; a64.dh = dh; a64.dc = dc; a64.dy = dy
        a64.dseq = dseq; a64.dkernel = dkernel; a64.drk = drk; a64.dbias = dbias
        a64.kt = kt; a64.dx = dx
        fl_train_pick_f64(&a64, isa)
        if not backward:
            fl_train_run_f64(&a64, FL_TRAIN_FORWARD, nt)
            return
        fl_train_run_f64(&a64, FL_TRAIN_BACKWARD, nt)
        fl_train_run_f64(&a64, FL_TRAIN_WEIGHTS, nt)
        if dx != NULL:
            fl_train_run_f64(&a64, FL_TRAIN_DX, nt)


cdef inline void _pad_rows(floating *dst, const floating *src, Py_ssize_t B,
                           Py_ssize_t U, Py_ssize_t Up) noexcept nogil:
    """[B, U] rows into [B, Up] rows (the padding is left alone)."""
    cdef Py_ssize_t b
    for b in range(B):
        memcpy(dst + b * Up, src + b * U, U * sizeof(floating))


cdef inline void _unpad_rows(floating *dst, const floating *src, Py_ssize_t B,
                             Py_ssize_t U, Py_ssize_t Up) noexcept nogil:
    cdef Py_ssize_t b
    for b in range(B):
        memcpy(dst + b * U, src + b * Up, U * sizeof(floating))


def packed_forward(const floating[:, :, ::1] x,
                   const floating[:, :, ::1] kernel,
                   const floating[::1] bias,
                   const floating[:, :, ::1] recurrent_kernel,
                   floating[:, ::1] h,
                   floating[:, ::1] c,
                   floating[:, ::1] y,
                   const unsigned char[:, ::1] mask,
                   floating[:, :, ::1] seq,
                   floating[:, :, ::1] rec,
                   floating[:, :, ::1] hs,
                   bint go_backwards, int activation, int recurrent_activation,
                   int isa, int rows, int num_threads):
    """Training-mode forward pass on packed weights (``_kernel.pack``).

    x                 [T, B, ldx]  inputs, time-major, in [..., :I]
    kernel, bias, recurrent_kernel  the pack's [NB, I, 4W], [NB*4W], [NB, U, 4W]
    h, c              [B, U]  in: initial state; out: final state
    y                 [B, U]  in: zeros; out: last output (only with mask)
    mask              [B, T]  nonzero = step is processed, or None
    seq               [B, T, U] out: outputs in processing order, or None
    rec, hs           [T+1, B, NB*6W], [T+1, B, ldh >= Up] out: the record
                      for ``packed_backward`` (layout in lstm_train.h)
    isa, rows         the pack's instruction set code and rows per tile
    num_threads       most threads (see ``threads_for``)

    The caller guarantees the shapes agree, B, T, I >= 1, and that every
    size fits a C int.  Raises MemoryError if the cell buffer cannot be
    allocated.
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = kernel.shape[1]
    cdef Py_ssize_t NB = kernel.shape[0], W = kernel.shape[2] // 4, U = h.shape[1]
    cdef Py_ssize_t ldx = x.shape[2], ldh = hs.shape[2]
    cdef const unsigned char *mask_ptr = NULL
    cdef floating *seq_ptr = NULL if seq is None else &seq[0, 0, 0]
    if mask is not None:
        mask_ptr = &mask[0, 0]
    cdef int nt = threads_for(B, T, U, num_threads)
    # Padding lanes are computed (and discarded) too: start them at zero.
    cdef floating *cbuf = <floating *>calloc((2 if mask_ptr != NULL else 1) * B * ldh,
                                             sizeof(floating))
    if cbuf == NULL:
        raise MemoryError(f"fastlstm: cannot allocate {B} x {ldh} values")
    cdef floating *ybuf = cbuf + B * ldh if mask_ptr != NULL else NULL
    cdef floating *h0 = &hs[T if go_backwards else 0, 0, 0]
    cdef floating *hT = &hs[0 if go_backwards else T, 0, 0]
    with nogil:
        memset(h0, 0, B * ldh * sizeof(floating))
        _pad_rows(h0, &h[0, 0], B, U, ldh)
        _pad_rows(cbuf, &c[0, 0], B, U, ldh)
        _run(False, &x[0, 0, 0], &kernel[0, 0, 0], &bias[0], &recurrent_kernel[0, 0, 0],
             NULL, &rec[0, 0, 0], &hs[0, 0, 0], NULL, cbuf, ybuf, mask_ptr, seq_ptr,
             NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, B, T, I, U, NB, W,
             rows, ldx, ldh, go_backwards, activation, recurrent_activation, isa, nt)
        _unpad_rows(&h[0, 0], hT, B, U, ldh)
        _unpad_rows(&c[0, 0], cbuf, B, U, ldh)
        if ybuf != NULL:
            _unpad_rows(&y[0, 0], ybuf, B, U, ldh)
    free(cbuf)


def packed_backward(const floating[:, :, ::1] x,
                    const floating[:, :, ::1] kernel_t,
                    const floating[:, :, ::1] recurrent_kernel_t,
                    const floating[:, :, ::1] rec,
                    const floating[:, :, ::1] hs,
                    floating[:, :, ::1] dz,
                    const unsigned char[:, ::1] mask,
                    const floating[:, :, ::1] dseq,
                    floating[:, ::1] dh,
                    floating[:, ::1] dc,
                    floating[:, ::1] dy,
                    floating[:, :, ::1] dx,
                    floating[:, ::1] dkernel,
                    floating[:, ::1] drecurrent_kernel,
                    floating[::1] dbias,
                    bint go_backwards, int activation, int recurrent_activation,
                    int isa, int rows, int num_threads):
    """Backpropagation through the steps recorded by ``packed_forward``.

    x                 [T, B, ldx] the forward's inputs
    kernel_t          [NX, 4Up, 4W] kernel^T in panels of 4W features (for
                      dx; NX = ceil(I / 4W)), or None when dx is None
    recurrent_kernel_t  [NQ, 4Up, 4W] R^T in panels of 4W units
    rec, hs           the forward's record (left unchanged)
    dz                [NB, T*B, 4W] out: dL/d(gate pre-activations), by block
    dseq              [B, T, U] dL/d(outputs, processing order), or None
    dh, dc            [B, U] in: dL/d(final h, c); out: dL/d(initial h, c)
    dy                [B, U] in: dL/d(last output)
    dx                [T, B, ceil(I / W) * W] in: zeros; out: dL/dx in
                      [..., :I], or None to skip it
    dkernel, drecurrent_kernel, dbias  out: [I, 4Up], [U, 4Up], [4Up], the
                      weight gradients in packed columns
    Other arguments as in ``packed_forward``; the caller guarantees the same.
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = dkernel.shape[0]
    cdef Py_ssize_t ldx = x.shape[2], ldh = hs.shape[2]
    cdef Py_ssize_t NB = dz.shape[0], W = dz.shape[2] // 4
    cdef Py_ssize_t Up = NB * W, U = dh.shape[1]
    cdef Py_ssize_t j, row
    cdef const unsigned char *mask_ptr = NULL
    cdef const floating *dseq_ptr = NULL
    if mask is not None:
        mask_ptr = &mask[0, 0]
    if dseq is not None:
        dseq_ptr = &dseq[0, 0, 0]
    cdef int nt = threads_for(B, T, U, num_threads)
    cdef floating *buf = <floating *>calloc(3 * B * Up, sizeof(floating))
    if buf == NULL:
        raise MemoryError(f"fastlstm: cannot allocate {B} x {Up} values")
    cdef floating *dhp = buf
    cdef floating *dcp = buf + B * Up
    cdef floating *dyp = buf + 2 * B * Up if mask_ptr != NULL else NULL
    cdef floating *dx_ptr = NULL
    cdef const floating *kt_ptr = NULL
    if dx is not None:
        dx_ptr = &dx[0, 0, 0]
        kt_ptr = &kernel_t[0, 0, 0]
    with nogil:
        _pad_rows(dhp, &dh[0, 0], B, U, Up)
        _pad_rows(dcp, &dc[0, 0], B, U, Up)
        if dyp != NULL:
            _pad_rows(dyp, &dy[0, 0], B, U, Up)
        else:       # without a mask the last output is the final h
            for row in range(B):
                for j in range(U):
                    dhp[row * Up + j] += dy[row, j]
        _run(True, &x[0, 0, 0], NULL, NULL, NULL, &recurrent_kernel_t[0, 0, 0],
             <floating *>&rec[0, 0, 0], <floating *>&hs[0, 0, 0], &dz[0, 0, 0], NULL, NULL,
             mask_ptr, NULL, dhp, dcp, dyp, dseq_ptr, &dkernel[0, 0],
             &drecurrent_kernel[0, 0], &dbias[0], kt_ptr, dx_ptr, B, T, I, U, NB, W, rows,
             ldx, ldh, go_backwards, activation, recurrent_activation, isa, nt)
        _unpad_rows(&dh[0, 0], dhp, B, U, Up)
        _unpad_rows(&dc[0, 0], dcp, B, U, Up)
    free(buf)


cdef void _column_sums(floating *out, const floating *a, Py_ssize_t rows,
                       Py_ssize_t cols) noexcept nogil:
    """out[cols] = the sums of the columns of a[rows, cols]."""
    cdef Py_ssize_t i, j
    cdef const floating *row
    memset(out, 0, cols * sizeof(floating))
    for i in range(rows):
        row = a + i * cols
        for j in range(cols):
            out[j] += row[j]
