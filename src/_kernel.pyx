# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled LSTM kernel: packed weights, inference, and training.

Knows nothing about Keras.  The callers (fastlstm/layer.py, training.py)
validate and allocate; ``pack`` prepares weights once per weight change, and
``forward``, ``train_forward`` and ``train_backward`` fill the outputs they
are given.  This module only turns arrays into pointers: the C kernel under
src/kernel/ (one thread pool, one table of tiles per instruction set and
dtype) does the work.  Shapes use B = batch, T = timesteps, I = input
features, U = units, G = 4U.
"""
import os
import threading
import warnings

import numpy as np

cimport numpy as cnp
from cpython.pythread cimport PyThread_get_thread_ident
from cython cimport floating
from libc.string cimport memcpy, memset

cnp.import_array()

cdef extern from "Python.h":
    # Declared without an error check: poll leaves the exception set for
    # the entry's caller to raise.
    int _check_signals "PyErr_CheckSignals" ()

cdef extern from "kernel/cancel.h" nogil:
    enum:
        FL_CANCELLED
    ctypedef int (*fl_poll)(void *ctx) noexcept nogil

cdef extern from "kernel/isa.h" nogil:
    enum:
        FL_ISA_PORTABLE
        FL_ISA_AVX2
        FL_ISA_AVX512
    ctypedef void (*fl_activate_fn_f32)(int kind, const float *x, float *y, Py_ssize_t n)
    ctypedef struct fl_ops_f32:
        int isa, width, rows
        fl_activate_fn_f32 activate
    ctypedef void (*fl_activate_fn_f64)(int kind, const double *x, double *y, Py_ssize_t n)
    ctypedef struct fl_ops_f64:
        int isa, width, rows
        fl_activate_fn_f64 activate
    const fl_ops_f32 *fl_ops_f32_of(int isa)
    const fl_ops_f64 *fl_ops_f64_of(int isa)
    int fl_isa_supported(int isa)
    ctypedef struct fl_ops_i8:
        int isa, width, rows
    const fl_ops_i8 *fl_ops_i8_of(int kernel)
    int fl_i8_supported(int kernel)

cdef extern from "kernel/pool.h" nogil:
    enum:
        FL_HAVE_POOL
    int fl_pool_workers()

cdef extern from "kernel/plan.h" nogil:
    enum:
        FL_PLAN_FORWARD
        FL_PLAN_TRAIN
    int fl_plan(int kind, Py_ssize_t B, Py_ssize_t T, Py_ssize_t I, Py_ssize_t U,
                Py_ssize_t NB, int nt, int *split_units)

cdef extern from "kernel/forward.h" nogil:
    int fl_forward_f32(const float *x, const float *kernel, const float *bias,
                       const float *recurrent, float *h, float *c, float *y,
                       const unsigned char *mask, float *seq, Py_ssize_t B, Py_ssize_t T,
                       Py_ssize_t I, Py_ssize_t U, int isa, int backwards, int act,
                       int rec_act, int threads, fl_poll poll,
                       void *poll_ctx)
    int fl_forward_f64(const double *x, const double *kernel, const double *bias,
                       const double *recurrent, double *h, double *c, double *y,
                       const unsigned char *mask, double *seq, Py_ssize_t B, Py_ssize_t T,
                       Py_ssize_t I, Py_ssize_t U, int isa, int backwards, int act,
                       int rec_act, int threads, fl_poll poll,
                       void *poll_ctx)
    ctypedef struct fl_weights_i8:
        int kernel
        const signed char *kernel_panels
        const signed char *recurrent_panels
        const int *kernel_comp
        const int *recurrent_comp
        const float *kernel_scale
        const float *recurrent_scale
        const float *bias
    int fl_forward_i8(const float *x, const fl_weights_i8 *weights, float *h, float *c,
                      float *y, const unsigned char *mask, float *seq, Py_ssize_t B,
                      Py_ssize_t T, Py_ssize_t I, Py_ssize_t U, int backwards, int act,
                      int rec_act, int threads, fl_poll poll, void *poll_ctx)

cdef extern from "kernel/train.h" nogil:
    int fl_train_forward_f32(const float *x, Py_ssize_t ldx, int x_gates, const float *kernel,
                             const float *bias, const float *recurrent, float *h, float *c,
                             float *y, const unsigned char *mask, const float *hmask,
                             float *seq, float *rec, float *hs, float *hm, Py_ssize_t ldh,
                             Py_ssize_t B, Py_ssize_t T, Py_ssize_t I, Py_ssize_t U, int isa,
                             int backwards, int act, int rec_act, int threads, fl_poll poll,
                             void *poll_ctx)
    int fl_train_forward_f64(const double *x, Py_ssize_t ldx, int x_gates,
                             const double *kernel, const double *bias,
                             const double *recurrent, double *h, double *c, double *y,
                             const unsigned char *mask, const double *hmask, double *seq,
                             double *rec, double *hs, double *hm, Py_ssize_t ldh,
                             Py_ssize_t B, Py_ssize_t T, Py_ssize_t I, Py_ssize_t U, int isa,
                             int backwards, int act, int rec_act, int threads, fl_poll poll,
                             void *poll_ctx)
    int fl_train_backward_f32(const float *x, Py_ssize_t ldx, int x_gates,
                              const float *xmask, const float *kernel_t,
                              const float *recurrent_t, const float *rec, const float *hs,
                              const float *hmask, const float *hm, Py_ssize_t ldh,
                              float *dz, const unsigned char *mask, const float *dseq,
                              float *dh, float *dc, const float *dy, float *dx,
                              float *dkernel, float *drk, float *dbias, Py_ssize_t B,
                              Py_ssize_t T, Py_ssize_t I, Py_ssize_t U, int isa,
                              int backwards, int act, int rec_act, int threads, fl_poll poll,
                              void *poll_ctx)
    int fl_train_backward_f64(const double *x, Py_ssize_t ldx, int x_gates,
                              const double *xmask, const double *kernel_t,
                              const double *recurrent_t, const double *rec,
                              const double *hs, const double *hmask, const double *hm,
                              Py_ssize_t ldh, double *dz, const unsigned char *mask,
                              const double *dseq, double *dh, double *dc, const double *dy,
                              double *dx, double *dkernel, double *drk, double *dbias,
                              Py_ssize_t B, Py_ssize_t T, Py_ssize_t I, Py_ssize_t U, int isa,
                              int backwards, int act, int rec_act, int threads, fl_poll poll,
                              void *poll_ctx)

ISA_NAMES = ("portable", "sse2", "neon", "avx2", "avx512")
# Whether calls can run on several threads (kernel/pool.h: POSIX threads).
THREAD_POOL = bool(FL_HAVE_POOL)


# The thread signals are handled on (the main thread of the main
# interpreter): a call from another thread does not poll.
cdef unsigned long _main_thread = threading.main_thread().ident


cdef int _poll(void *ctx) noexcept nogil:
    """The kernel's cancellation point (kernel/cancel.h): runs the signal
    handlers; nonzero when one raised, its exception left set."""
    with gil:
        return _check_signals() != 0


cdef fl_poll _poller() noexcept:
    """The poll for a call from this thread, or NULL."""
    if PyThread_get_thread_ident() == _main_thread:
        return _poll
    return NULL


cdef int _check(int status, str what) except -1:
    """Raise what a kernel entry's status says: the exception a signal
    handler raised while it ran (FL_CANCELLED), or MemoryError."""
    if status == FL_CANCELLED:
        return -1       # the handler's exception, still set
    if status != 0:
        raise MemoryError(f"fastlstm: cannot allocate {what}")
    return 0


def supported_isas():
    """Names of the instruction sets this CPU can run, slowest first."""
    return [name for code, name in enumerate(ISA_NAMES) if fl_isa_supported(code)]


cdef int _isa = 0


def set_isa(name):
    """Use instruction set ``name`` for weights packed from now on."""
    global _isa
    if name not in ISA_NAMES:
        raise ValueError(f"instruction set must be one of {list(ISA_NAMES)}, got {name!r}")
    code = ISA_NAMES.index(name)
    if not fl_isa_supported(code):
        raise ValueError(
            f"instruction set {name!r} is not supported by this CPU "
            f"(supported: {supported_isas()})")
    _isa = code


def isa():
    """Name of the instruction set new packs use."""
    return ISA_NAMES[_isa]


def current_isa():
    """Code of the instruction set new packs use (index into ISA_NAMES)."""
    return _isa


def _initial_isa():
    """The fastest instruction set, or the one FASTLSTM_ISA names; a bad
    name is ignored with a warning (an import must not fail on it)."""
    names = supported_isas()
    fastest = names[len(names) - 1]     # no negative indices: wraparound is off
    forced = os.environ.get("FASTLSTM_ISA")
    if forced:
        try:
            set_isa(forced)
            return
        except ValueError as error:
            warnings.warn(f"FASTLSTM_ISA={forced!r} ignored ({error}); using {fastest!r}",
                          RuntimeWarning)
    set_isa(fastest)


def _default_threads():
    """CPUs this process may use, capped by OMP_NUM_THREADS when it is set."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isascii() and env.isdigit() and int(env) > 0:
        n = min(n, int(env))
    elif env:
        warnings.warn(f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']!r} ignored (expected "
                      f"a positive integer)", RuntimeWarning)
    return max(1, n) if THREAD_POOL else 1


_initial_isa()
DEFAULT_THREADS = _default_threads()


def info():
    """How the kernel runs here: ``{"isa", "supported_isas", "thread_pool",
    "default_threads", "int8", "int8_supported"}`` (no thread pool means one
    thread; "int8" is the int8 kernel that goes with the chosen instruction
    set)."""
    return {"isa": isa(), "supported_isas": supported_isas(), "thread_pool": THREAD_POOL,
            "default_threads": DEFAULT_THREADS, "int8": int8_kernel(),
            "int8_supported": int8_kernels()}


def activate(kind, const floating[::1] x):
    """The activation ``kind`` (code) of the current ISA in the dtype of
    ``x`` (float32 or float64, length a multiple of 16), applied to ``x``;
    for testing its accuracy."""
    if x.shape[0] % 16:
        raise ValueError(f"activate needs a length divisible by 16, got {x.shape[0]}")
    y = np.empty(x.shape[0], np.float32 if floating is float else np.float64)
    cdef floating[::1] out = y
    if x.shape[0]:
        if floating is float:
            fl_ops_f32_of(_isa).activate(kind, &x[0], &out[0], x.shape[0])
        else:
            fl_ops_f64_of(_isa).activate(kind, &x[0], &out[0], x.shape[0])
    return y


def pool_workers():
    """Worker threads the process's one pool has started so far (inference
    and training share them)."""
    return fl_pool_workers()


cdef class Packed:
    """Weights in the layout of one instruction set's tiles (kernel/tiles.h).

    Built by :func:`pack`; read-only afterwards.
    """
    cdef readonly object kernel            # [NB, I, 4*W]
    cdef readonly object recurrent_kernel  # [NB, U, 4*W]
    cdef readonly object bias              # [NB*4*W]
    cdef readonly str isa
    cdef readonly int isa_code, width, rows
    # The ISA selected when packing (a dtype without tiles of its own for it
    # packs for the table row's slower ISA): a pack is stale once the
    # selection changes.
    cdef readonly int selected
    cdef readonly Py_ssize_t units, padded


cdef void _panels(const floating *w, Py_ssize_t K, Py_ssize_t U, Py_ssize_t W,
                  Py_ssize_t NB, floating *out) noexcept nogil:
    """``w [K, 4U]`` (gate blocks i, f, c, o) -> ``out [NB, K, 4, W]``: block
    p's units p*W .. p*W+W-1 of each gate, zero past unit U."""
    cdef Py_ssize_t p, k, g, n
    cdef floating *dst
    for p in range(NB):
        n = min(W, U - p * W)
        for k in range(K):
            for g in range(4):
                dst = out + ((p * K + k) * 4 + g) * W
                memcpy(dst, w + k * 4 * U + g * U + p * W, n * sizeof(floating))
                memset(dst + n, 0, (W - n) * sizeof(floating))


def _pack_matrix(w, Py_ssize_t W, Py_ssize_t NB):
    """``w [K, 4U]`` as panels ``[NB, K, 4*W]`` (see ``_panels``)."""
    cdef Py_ssize_t K = w.shape[0], U = w.shape[1] // 4
    w = np.ascontiguousarray(w)
    out = np.empty((NB, K, 4 * W), w.dtype)
    cdef void *src = cnp.PyArray_DATA(w)
    cdef void *dst = cnp.PyArray_DATA(out)
    if w.dtype == np.float32:
        with nogil:
            _panels(<const float *>src, K, U, W, NB, <float *>dst)
    else:
        with nogil:
            _panels(<const double *>src, K, U, W, NB, <double *>dst)
    return out


def pack(kernel, recurrent_kernel, bias):
    """Pack ``kernel [I, 4U]``, ``recurrent_kernel [U, 4U]`` and
    ``bias [4U]`` (Keras gate blocks i, f, c, o; one dtype, float32 or
    float64) for the current ISA.

    Units are padded with zero weights to a multiple of the block width W;
    gate columns are reordered to [block][gate][W] so one tile's gates are
    contiguous, and each block's rows of a matrix form one contiguous panel.
    The layout (W, rows per tile) is the table row's of the ISA and dtype.
    """
    cdef Packed p = Packed()
    if kernel.dtype == np.float64:
        code, W, rows = fl_ops_f64_of(_isa).isa, fl_ops_f64_of(_isa).width, fl_ops_f64_of(_isa).rows
    else:
        code, W, rows = fl_ops_f32_of(_isa).isa, fl_ops_f32_of(_isa).width, fl_ops_f32_of(_isa).rows
    U = recurrent_kernel.shape[0]
    Up = -(-U // W) * W
    NB = Up // W
    p.kernel = _pack_matrix(kernel, W, NB)
    p.bias = _pack_matrix(bias.reshape(1, 4 * U), W, NB).reshape(NB * 4 * W)
    p.recurrent_kernel = _pack_matrix(recurrent_kernel, W, NB)
    p.isa = ISA_NAMES[code]
    p.isa_code = code
    p.selected = _isa
    p.width = W
    p.rows = rows
    p.units = U
    p.padded = Up
    return p


def plan(B, T, I, U, num_threads, isa_name=None, training=False):
    """``(threads, "rows" | "units")`` the kernel would ask for in a float32
    call of this shape on the current (or the named) instruction set: an
    inference call, or with ``training`` each pass of a training step."""
    code = _isa if isa_name is None else ISA_NAMES.index(isa_name)
    W = fl_ops_f32_of(code).width
    cdef int split = 0
    kind = FL_PLAN_TRAIN if training else FL_PLAN_FORWARD
    threads = fl_plan(kind, B, T, I, U, -(-U // W), num_threads, &split)
    return threads, ("units" if split else "rows")


cdef inline void *_data(a):
    """The data pointer of an ndarray, or NULL for None."""
    return NULL if a is None else cnp.PyArray_DATA(a)


def forward(cnp.ndarray x, Packed packed, cnp.ndarray h, cnp.ndarray c,
            cnp.ndarray y, cnp.ndarray mask, cnp.ndarray seq,
            bint go_backwards, int activation, int recurrent_activation,
            int num_threads):
    """Run one LSTM layer over a batch of sequences.

    x                 [B, T, I]  inputs, C-contiguous, the packed dtype
    packed            weights from :func:`pack`
    h, c              [B, U]     in: initial state; out: final state
    y                 [B, U]     in: zeros; out: last output (only with mask;
                                 without one the last output is h)
    mask              [B, T]     uint8, nonzero = step is processed, or None
    seq               [B, T, U]  out: output of every step in processing
                                 order, or None to skip writing it
    go_backwards      process t = T-1 .. 0
    activation, recurrent_activation: codes from kernel/activations.h
    num_threads       most threads to use (>= 1)

    The caller guarantees dtypes, C-contiguity and agreeing shapes, I >= 1,
    and that every size fits a C int.  Raises MemoryError if the workspace
    cannot be allocated.
    """
    cdef Py_ssize_t B = x.shape[0], T = x.shape[1], I = x.shape[2]
    cdef Py_ssize_t U = packed.units
    if B == 0 or T == 0:
        return
    cdef const unsigned char *m = <const unsigned char *>_data(mask)
    cdef void *xp = _data(x)
    cdef void *kp = _data(packed.kernel)
    cdef void *bp = _data(packed.bias)
    cdef void *rp = _data(packed.recurrent_kernel)
    cdef void *hp = _data(h)
    cdef void *cp = _data(c)
    cdef void *yp = _data(y)
    cdef void *sp = _data(seq)
    cdef int status, isa_code = packed.isa_code
    cdef fl_poll poll = _poller()
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        with nogil:
            status = fl_forward_f32(<float *>xp, <float *>kp, <float *>bp, <float *>rp,
                                    <float *>hp, <float *>cp, <float *>yp, m, <float *>sp,
                                    B, T, I, U, isa_code, go_backwards, activation,
                                    recurrent_activation, num_threads, poll, NULL)
    else:
        with nogil:
            status = fl_forward_f64(<double *>xp, <double *>kp, <double *>bp,
                                    <double *>rp, <double *>hp, <double *>cp,
                                    <double *>yp, m, <double *>sp, B, T, I, U, isa_code,
                                    go_backwards, activation, recurrent_activation,
                                    num_threads, poll, NULL)
    if status:
        _check(status, f"the workspace for batch {B}, {T} timesteps, {U} units")


def train_forward(cnp.ndarray x, Py_ssize_t features, Packed packed, cnp.ndarray h,
                  cnp.ndarray c, cnp.ndarray y, cnp.ndarray mask, cnp.ndarray hmask,
                  cnp.ndarray seq, cnp.ndarray rec, cnp.ndarray hs, cnp.ndarray hm,
                  bint go_backwards, int activation, int recurrent_activation,
                  int num_threads):
    """Training-mode forward pass on packed weights, recorded for
    :func:`train_backward`.

    x                 [P, T, B, ldx]  inputs, time-major, in [..., :features];
                      P = 4: each gate block's copy (x times its input
                      dropout mask), else P = 1
    packed            weights from :func:`pack`
    h, c              [B, U]  in: initial state; out: final state
    y                 [B, U]  in: zeros; out: last output (only with mask)
    mask              [B, T]  uint8, nonzero = step is processed, or None
    hmask             [4, B, Up] recurrent dropout masks of the gate blocks
                      (zero padded), or None
    seq               [B, T, U] out: outputs in processing order, or None
    rec, hs           [T+1, B, NB*6W], [T+1, B, ldh >= Up] out: the record
                      (layout in kernel/train.c)
    hm                [4, T+1, B, ldh] out: hs times each gate's recurrent
                      mask, with hmask; else None
    num_threads       most threads (>= 1)

    Arrays are C-contiguous, of the pack's dtype; the caller guarantees the
    shapes agree, B, T, features >= 1, and that every size fits a C int.
    Raises MemoryError if the cell buffer cannot be allocated.
    """
    cdef Py_ssize_t T = x.shape[1], B = x.shape[2], ldx = x.shape[3]
    cdef Py_ssize_t U = packed.units, ldh = hs.shape[2]
    cdef int x_gates = x.shape[0]
    cdef const unsigned char *m = <const unsigned char *>_data(mask)
    cdef void *xp = _data(x)
    cdef void *kp = _data(packed.kernel)
    cdef void *bp = _data(packed.bias)
    cdef void *rp = _data(packed.recurrent_kernel)
    cdef void *hp = _data(h)
    cdef void *cp = _data(c)
    cdef void *yp = _data(y)
    cdef void *hmaskp = _data(hmask)
    cdef void *sp = _data(seq)
    cdef void *recp = _data(rec)
    cdef void *hsp = _data(hs)
    cdef void *hmp = _data(hm)
    cdef int status, isa_code = packed.isa_code
    cdef fl_poll poll = _poller()
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        with nogil:
            status = fl_train_forward_f32(
                <float *>xp, ldx, x_gates, <float *>kp, <float *>bp, <float *>rp,
                <float *>hp, <float *>cp, <float *>yp, m, <float *>hmaskp, <float *>sp,
                <float *>recp, <float *>hsp, <float *>hmp, ldh, B, T, features, U,
                isa_code, go_backwards, activation, recurrent_activation, num_threads,
                poll, NULL)
    else:
        with nogil:
            status = fl_train_forward_f64(
                <double *>xp, ldx, x_gates, <double *>kp, <double *>bp, <double *>rp,
                <double *>hp, <double *>cp, <double *>yp, m, <double *>hmaskp,
                <double *>sp, <double *>recp, <double *>hsp, <double *>hmp, ldh, B, T,
                features, U, isa_code, go_backwards, activation, recurrent_activation,
                num_threads, poll, NULL)
    if status:
        _check(status, f"{B} x {ldh} values")


def train_backward(cnp.ndarray x, Py_ssize_t features, cnp.ndarray xmask, Packed packed,
                   cnp.ndarray kernel_t, cnp.ndarray recurrent_kernel_t, cnp.ndarray rec,
                   cnp.ndarray hs, cnp.ndarray hmask, cnp.ndarray hm, cnp.ndarray dz,
                   cnp.ndarray mask, cnp.ndarray dseq, cnp.ndarray dh, cnp.ndarray dc,
                   cnp.ndarray dy, cnp.ndarray dx, cnp.ndarray dkernel,
                   cnp.ndarray drecurrent_kernel, cnp.ndarray dbias, bint go_backwards,
                   int activation, int recurrent_activation, int num_threads):
    """Backpropagation through the steps recorded by :func:`train_forward`.

    x, features, packed, hmask  as given to the forward
    xmask             [4, B, ceil(I / W) * W] the input dropout masks (zero
                      padded) when x holds 4 gate copies, else None
    kernel_t          [NX, 4Up, 4W] kernel^T in panels of 4W features (for
                      dx; NX = ceil(I / 4W)), or None when dx is None
    recurrent_kernel_t  [NQ, 4Up, 4W] R^T in panels of 4W units
    rec, hs, hm       the forward's record (left unchanged)
    dz                [NB, T*B, 4W] out: dL/d(gate pre-activations), by block
    dseq              [B, T, U] dL/d(outputs, processing order), or None
    dh, dc            [B, U] in: dL/d(final h, c); out: dL/d(initial h, c)
    dy                [B, U] in: dL/d(last output)
    dx                [T, B, ceil(I / W) * W] in: zeros; out: dL/dx in
                      [..., :I] (of x before the input masks with xmask), or
                      None to skip it
    dkernel, drecurrent_kernel, dbias  out: [I, 4Up], [U, 4Up], [4Up], the
                      weight gradients in packed columns
    Other arguments and guarantees as in :func:`train_forward`.
    """
    cdef Py_ssize_t T = x.shape[1], B = x.shape[2], ldx = x.shape[3]
    cdef Py_ssize_t U = packed.units, ldh = hs.shape[2]
    cdef int x_gates = x.shape[0]
    cdef const unsigned char *m = <const unsigned char *>_data(mask)
    cdef void *xp = _data(x)
    cdef void *xmaskp = _data(xmask)
    cdef void *ktp = _data(kernel_t)
    cdef void *rtp = _data(recurrent_kernel_t)
    cdef void *recp = _data(rec)
    cdef void *hsp = _data(hs)
    cdef void *hmaskp = _data(hmask)
    cdef void *hmp = _data(hm)
    cdef void *dzp = _data(dz)
    cdef void *dsp = _data(dseq)
    cdef void *dhp = _data(dh)
    cdef void *dcp = _data(dc)
    cdef void *dyp = _data(dy)
    cdef void *dxp = _data(dx)
    cdef void *dkp = _data(dkernel)
    cdef void *drp = _data(drecurrent_kernel)
    cdef void *dbp = _data(dbias)
    cdef int status, isa_code = packed.isa_code
    cdef fl_poll poll = _poller()
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        with nogil:
            status = fl_train_backward_f32(
                <float *>xp, ldx, x_gates, <float *>xmaskp, <float *>ktp, <float *>rtp,
                <float *>recp, <float *>hsp, <float *>hmaskp, <float *>hmp, ldh,
                <float *>dzp, m, <float *>dsp, <float *>dhp, <float *>dcp, <float *>dyp,
                <float *>dxp, <float *>dkp, <float *>drp, <float *>dbp, B, T, features, U,
                isa_code, go_backwards, activation, recurrent_activation, num_threads,
                poll, NULL)
    else:
        with nogil:
            status = fl_train_backward_f64(
                <double *>xp, ldx, x_gates, <double *>xmaskp, <double *>ktp,
                <double *>rtp, <double *>recp, <double *>hsp, <double *>hmaskp,
                <double *>hmp, ldh, <double *>dzp, m, <double *>dsp, <double *>dhp,
                <double *>dcp, <double *>dyp, <double *>dxp, <double *>dkp, <double *>drp,
                <double *>dbp, B, T, features, U, isa_code, go_backwards, activation,
                recurrent_activation, num_threads, poll, NULL)
    if status:
        _check(status, f"3 x {B} x {U} values")


# --------------------------------------------------------------------- int8
# int8 kernels (kernel/isa.h's FL_I8_ codes): each vector instruction set's,
# without and with VNNI's vpdpbusd.
INT8_NAMES = ("portable", "avx2", "avx2-vnni", "avx512", "avx512-vnni")


# Asked once: CPUID traps to the hypervisor on a virtual machine (~µs).
_INT8_SUPPORTED = tuple(code for code in range(len(INT8_NAMES)) if fl_i8_supported(code))


def int8_kernels():
    """Names of the int8 kernels this CPU can run, slowest first."""
    return [INT8_NAMES[code] for code in _INT8_SUPPORTED]


def _best_int8(isa_code):
    """The fastest int8 kernel this CPU runs on the vectors of ``isa_code``;
    the portable one (the same integers) for 128-bit paths, which have none."""
    return max((code for code in _INT8_SUPPORTED if fl_ops_i8_of(code).isa == isa_code),
               default=0)


_INT8_BEST = {code: INT8_NAMES[_best_int8(code)] for code in range(len(ISA_NAMES))
              if fl_isa_supported(code)}


def int8_kernel(isa_name=None):
    """The int8 kernel used with the current (or the named) instruction set:
    its VNNI one where the CPU has VNNI."""
    return _INT8_BEST[_isa if isa_name is None else ISA_NAMES.index(isa_name)]


cdef class PackedInt8:
    """int8 weights in the layout of one int8 kernel (kernel/tiles.h).

    Built by :func:`pack_int8`; read-only afterwards.
    """
    cdef readonly object kernel            # [NB, K4x, 4, W, 4] int8
    cdef readonly object recurrent_kernel  # [NB, K4h, 4, W, 4] int8
    cdef readonly object kernel_comp, recurrent_comp      # [NB, 4, W] int32
    cdef readonly object kernel_scale, recurrent_scale    # [NB, 4, W] float32
    cdef readonly object bias              # [NB, 4, W] float32
    cdef readonly str int8_kernel
    cdef readonly int code, width, rows
    # The instruction set selected when packing: stale once it changes.
    cdef readonly int selected
    cdef readonly Py_ssize_t units, padded


def _int8_panels(w, Py_ssize_t U, Py_ssize_t Up, Py_ssize_t W):
    """``w [K, 4U]`` int8 -> (panels [NB, K4, 4, W, 4], -128 * column sums
    [NB, 4, W] int32): inputs in groups of 4 (vpdpbusd's layout), zero
    padding past K and past unit U."""
    K, NB = w.shape[0], Up // W
    K4 = -(-K // 4)
    full = np.zeros((K4 * 4, 4, Up), np.int8)
    full[:K, :, :U] = w.reshape(K, 4, U)
    panels = full.reshape(K4, 4, 4, NB, W).transpose(3, 0, 2, 4, 1)
    comp = -128 * full.sum(axis=0, dtype=np.int32).reshape(4, NB, W).transpose(1, 0, 2)
    return np.ascontiguousarray(panels), np.ascontiguousarray(comp, np.int32)


def _int8_columns(v, Py_ssize_t U, Py_ssize_t Up, Py_ssize_t W):
    """``v [4U]`` -> float32 [NB, 4, W], zero past unit U."""
    full = np.zeros((4, Up), np.float32)
    full[:, :U] = v.reshape(4, U)
    return np.ascontiguousarray(full.reshape(4, Up // W, W).transpose(1, 0, 2))


def pack_int8(kernel, kernel_scale, recurrent_kernel, recurrent_scale, bias, kernel_name=None):
    """Pack int8 weights (fastlstm.quantization.Int8Weights: int8
    ``kernel [I, 4U]`` and ``recurrent_kernel [U, 4U]``, float32 column
    scales and bias ``[4U]``) for the int8 kernel of the current instruction
    set, or for the one named (see :func:`int8_kernels`)."""
    if kernel_name is None:
        kernel_name = int8_kernel()
    if kernel_name not in int8_kernels():
        raise ValueError(f"int8 kernel {kernel_name!r} is not supported by this CPU "
                         f"(supported: {int8_kernels()})")
    cdef PackedInt8 p = PackedInt8()
    code = INT8_NAMES.index(kernel_name)
    W, rows = fl_ops_i8_of(code).width, fl_ops_i8_of(code).rows
    U = recurrent_kernel.shape[0]
    Up = -(-U // W) * W
    p.kernel, p.kernel_comp = _int8_panels(kernel, U, Up, W)
    p.recurrent_kernel, p.recurrent_comp = _int8_panels(recurrent_kernel, U, Up, W)
    p.kernel_scale = _int8_columns(kernel_scale, U, Up, W)
    p.recurrent_scale = _int8_columns(recurrent_scale, U, Up, W)
    p.bias = _int8_columns(bias, U, Up, W)
    p.int8_kernel = kernel_name
    p.code = code
    p.selected = _isa
    p.width = W
    p.rows = rows
    p.units = U
    p.padded = Up
    return p


def forward_int8(cnp.ndarray x, PackedInt8 packed, cnp.ndarray h, cnp.ndarray c,
                 cnp.ndarray y, cnp.ndarray mask, cnp.ndarray seq,
                 bint go_backwards, int activation, int recurrent_activation,
                 int num_threads):
    """:func:`forward` with int8 weights from :func:`pack_int8`: x, h, c, y
    and seq float32.  Every row of x and h is quantized at its step inside
    the time loop (fastlstm/quantization.py states the scheme)."""
    cdef Py_ssize_t B = x.shape[0], T = x.shape[1], I = x.shape[2]
    cdef Py_ssize_t U = packed.units
    if B == 0 or T == 0:
        return
    cdef fl_weights_i8 w
    w.kernel = packed.code
    w.kernel_panels = <const signed char *>_data(packed.kernel)
    w.recurrent_panels = <const signed char *>_data(packed.recurrent_kernel)
    w.kernel_comp = <const int *>_data(packed.kernel_comp)
    w.recurrent_comp = <const int *>_data(packed.recurrent_comp)
    w.kernel_scale = <const float *>_data(packed.kernel_scale)
    w.recurrent_scale = <const float *>_data(packed.recurrent_scale)
    w.bias = <const float *>_data(packed.bias)
    cdef const unsigned char *m = <const unsigned char *>_data(mask)
    cdef float *xp = <float *>_data(x)
    cdef float *hp = <float *>_data(h)
    cdef float *cp = <float *>_data(c)
    cdef float *yp = <float *>_data(y)
    cdef float *sp = <float *>_data(seq)
    cdef int status
    cdef fl_poll poll = _poller()
    with nogil:
        status = fl_forward_i8(xp, &w, hp, cp, yp, m, sp, B, T, I, U, go_backwards,
                               activation, recurrent_activation, num_threads, poll, NULL)
    if status:
        _check(status, f"the workspace for batch {B}, {T} timesteps, {U} units")
