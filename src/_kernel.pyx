# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""LSTM forward kernel: packed weights and the threaded time loop of fused
SIMD tiles (src/lstm_layer.h), input projection included.

Knows nothing about Keras.  The caller (fastlstm/layer.py) validates and
allocates; ``pack`` prepares weights once per weight change and ``forward``
fills the outputs it is given.  Shapes use B = batch, T = timesteps,
I = input features, U = units.
"""
import os

import numpy as np

cimport numpy as cnp
from cython.parallel cimport parallel, threadid
from libc.stdint cimport uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cnp.import_array()

ctypedef fused floating:
    float
    double

cdef extern from "lstm_layer.h" nogil:
    enum:
        FL_ISA_PORTABLE
        FL_ISA_AVX2
        FL_ISA_AVX512
    int fl_isa_supported(int isa)
    int fl_isa_width(int isa, int is_double)
    int fl_isa_rows(int isa, int is_double)
    void fl_activate_f32(int isa, int kind, const float *x, float *y, Py_ssize_t n)
    int fl_openmp()
    int fl_team_size()
    ctypedef struct fl_layer_f32:
        Py_ssize_t B, T_, n_in, U, Up, NB, W, MR, chunk
        int backwards, act, rec_act, isa, split_units
        const float *x
        const float *kp
        const float *bias
        const float *r
        float *proj
        float *h
        float *c
        float *y
        const unsigned char *mask
        float *seq
    ctypedef struct fl_layer_f64:
        Py_ssize_t B, T_, n_in, U, Up, NB, W, MR, chunk
        int backwards, act, rec_act, isa, split_units
        const double *x
        const double *kp
        const double *bias
        const double *r
        double *proj
        double *h
        double *c
        double *y
        const unsigned char *mask
        double *seq
    void fl_layer_thread_f32(const fl_layer_f32 *a, int tid, int nt)
    void fl_layer_thread_f64(const fl_layer_f64 *a, int tid, int nt)

ISA_NAMES = ("portable", "avx2", "avx512")
OPENMP = bool(fl_openmp())

# Upper bound on the input-projection workspace [B, chunk, 4Up]: it is
# computed for ``chunk`` time steps at once, so memory stays bounded for any T,
# and small enough to stay in L2 between its writes and reads.
cdef Py_ssize_t WORKSPACE_BYTES = 1024 * 1024
# Below this many multiply-adds a call runs on one thread.  A team saves a
# few microseconds on an idle machine ((100, 4, 10, 16): 35 -> 22 us) but
# waits a scheduler time slice for a thread whose core another process holds
# (measured: 35 us -> 8 ms), which small calls cannot amortise.
cdef double PARALLEL_MIN_FMAS = 2e6
# Fewest multiply-adds per step for which threads split the units (see _plan).
cdef double UNIT_SPLIT_MIN_FMAS = 1e6


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
    forced = os.environ.get("FASTLSTM_ISA")
    if forced:
        set_isa(forced)
    else:
        names = supported_isas()
        set_isa(names[len(names) - 1])


def _default_threads():
    """CPUs this process may use, capped by OMP_NUM_THREADS when it is set."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        n = min(n, int(env))
    return max(1, n) if OPENMP else 1


_initial_isa()
DEFAULT_THREADS = _default_threads()


def info():
    """How the kernel runs here: ``{"isa", "supported_isas", "openmp",
    "default_threads"}`` (OpenMP off means one thread)."""
    return {"isa": isa(), "supported_isas": supported_isas(), "openmp": OPENMP,
            "default_threads": DEFAULT_THREADS}


def activate(kind, const float[::1] x):
    """The float32 activation ``kind`` (code) of the current ISA, applied to
    ``x`` (length a multiple of 16); for testing its accuracy."""
    if x.shape[0] % 16:
        raise ValueError(f"activate needs a length divisible by 16, got {x.shape[0]}")
    y = np.empty(x.shape[0], np.float32)
    cdef float[::1] out = y
    if x.shape[0]:
        fl_activate_f32(_isa, kind, &x[0], &out[0], x.shape[0])
    return y


cdef class Packed:
    """Weights in the layout of one instruction set's tiles (lstm_layer.h).

    Built by :func:`pack`; read-only afterwards.
    """
    cdef readonly object kernel            # [NB, I, 4*W]
    cdef readonly object recurrent_kernel  # [NB, U, 4*W]
    cdef readonly object bias              # [NB*4*W]
    cdef readonly str isa
    cdef readonly int isa_code, width, rows
    # The ISA selected when packing (float64 packs use the portable layout
    # whatever it is): a pack is stale once the selection changes.
    cdef readonly int selected
    cdef readonly Py_ssize_t units, padded


def pack(kernel, recurrent_kernel, bias):
    """Pack ``kernel [I, 4U]``, ``recurrent_kernel [U, 4U]`` and
    ``bias [4U]`` (Keras gate blocks i, f, c, o) for the current ISA.

    Units are padded with zero weights to a multiple of the block width W;
    gate columns are reordered to [block][gate][W] so one tile's gates are
    contiguous, and each block's rows of a matrix form one contiguous panel.  Float64 always uses the portable layout.
    """
    cdef Packed p = Packed()
    dtype = kernel.dtype
    is_double = dtype == np.float64
    code = FL_ISA_PORTABLE if is_double else _isa
    W = fl_isa_width(code, is_double)
    U = recurrent_kernel.shape[0]
    Up = -(-U // W) * W
    NB = Up // W

    def columns(w):   # [..., 4U] -> [..., NB*4*W]
        lead = w.shape[:w.ndim - 1]
        padded = np.zeros(lead + (4, Up), dtype)
        padded[..., :U] = w.reshape(lead + (4, U))
        blocks = padded.reshape(lead + (4, NB, W))
        order = np.moveaxis(blocks, w.ndim - 1, w.ndim)   # gate after block
        return np.ascontiguousarray(order).reshape(lead + (NB * 4 * W,))

    def panels(w):    # [K, 4U] -> [NB, K, 4*W]: one contiguous panel per block
        return np.ascontiguousarray(columns(w).reshape(w.shape[0], NB, 4 * W).transpose(1, 0, 2))

    p.kernel = panels(kernel)
    p.bias = columns(bias)
    p.recurrent_kernel = panels(recurrent_kernel)
    p.isa = ISA_NAMES[code]
    p.isa_code = code
    p.selected = _isa
    p.width = W
    p.rows = fl_isa_rows(code, is_double)
    p.units = U
    p.padded = Up
    return p


cdef int _plan(Py_ssize_t B, Py_ssize_t T, Py_ssize_t U, Py_ssize_t NB, int nt,
               int *split_units) noexcept nogil:
    """Threads to use, at most ``nt``; sets ``split_units``.

    Split the batch rows when every thread gets a few: threads then meet
    only at the end.  Splitting the unit blocks needs a barrier per step,
    and a barrier waits for every thread of the team: when another process
    holds one of our cores, each step then costs a scheduler time slice
    (milliseconds; measured 80 us -> 400 ms at (1, 100, 32, 64)).  So the
    unit split is kept for steps big enough to be worth that risk.
    """
    split_units[0] = 0
    if nt <= 1 or <double>B * T * U * 4 * U < PARALLEL_MIN_FMAS:
        return 1
    if B >= 4 * nt:
        return nt
    if NB >= nt and <double>B * U * 4 * U >= UNIT_SPLIT_MIN_FMAS:
        split_units[0] = 1
        return nt
    if B >= nt:
        return nt
    return 1


def plan(B, T, U, num_threads, isa_name=None):
    """``(threads, "rows" | "units")`` the kernel would use for a float32
    call of this shape on the current (or the named) instruction set."""
    code = _isa if isa_name is None else ISA_NAMES.index(isa_name)
    W = fl_isa_width(code, 0)
    cdef int split = 0
    threads = _plan(B, T, U, -(-U // W), num_threads, &split)
    return threads, ("units" if split else "rows")


cdef int _run(floating *x, floating *kp, floating *rp, floating *bp,
              floating *h, floating *c, floating *y,
              const unsigned char *mask, floating *seq,
              Py_ssize_t B, Py_ssize_t T, Py_ssize_t I, Py_ssize_t U,
              Py_ssize_t Up, Py_ssize_t W, Py_ssize_t MR, int isa_code,
              bint backwards, int act, int rec_act, int nt) noexcept nogil:
    """Returns 0, or -1 when the workspace cannot be allocated."""
    cdef Py_ssize_t G = 4 * Up, NB = Up // W
    cdef Py_ssize_t chunk = WORKSPACE_BYTES // (B * G * <Py_ssize_t>sizeof(floating))
    chunk = max(1, min(T, chunk))
    cdef Py_ssize_t n_state = (4 if mask != NULL else 3) * B * Up
    cdef Py_ssize_t n_proj = B * chunk * G
    cdef void *raw = malloc((n_state + n_proj) * sizeof(floating) + 64)
    if raw == NULL:
        return -1
    # 64-byte alignment keeps each block of a row on its own cache lines.
    cdef floating *hbuf = <floating *>((<uintptr_t>raw + 63) & ~(<uintptr_t>63))
    cdef floating *cbuf = hbuf + 2 * B * Up
    cdef floating *ybuf = cbuf + B * Up if mask != NULL else NULL
    cdef floating *proj = hbuf + n_state
    cdef Py_ssize_t b
    cdef size_t row = U * sizeof(floating)
    # Padding lanes are computed (and discarded) too: keep them finite.
    memset(hbuf, 0, n_state * sizeof(floating))
    for b in range(B):
        memcpy(hbuf + b * Up, h + b * U, row)
        memcpy(cbuf + b * Up, c + b * U, row)
        if ybuf != NULL:
            memcpy(ybuf + b * Up, y + b * U, row)

    cdef int split_units = 0
    nt = _plan(B, T, U, NB, nt, &split_units)

    cdef fl_layer_f32 a32
    cdef fl_layer_f64 a64
    cdef int tid = 0, size = 1
    if floating is float:
        a32.B = B; a32.T_ = T; a32.n_in = I; a32.U = U; a32.Up = Up; a32.NB = NB
        a32.W = W; a32.MR = MR; a32.chunk = chunk; a32.backwards = backwards
        a32.act = act; a32.rec_act = rec_act; a32.isa = isa_code
        a32.split_units = split_units; a32.x = x; a32.kp = kp; a32.bias = bp
        a32.r = rp; a32.proj = proj; a32.h = hbuf; a32.c = cbuf; a32.y = ybuf
        a32.mask = mask; a32.seq = seq
    else:
        a64.B = B; a64.T_ = T; a64.n_in = I; a64.U = U; a64.Up = Up; a64.NB = NB
        a64.W = W; a64.MR = MR; a64.chunk = chunk; a64.backwards = backwards
        a64.act = act; a64.rec_act = rec_act; a64.isa = isa_code
        a64.split_units = split_units; a64.x = x; a64.kp = kp; a64.bias = bp
        a64.r = rp; a64.proj = proj; a64.h = hbuf; a64.c = cbuf; a64.y = ybuf
        a64.mask = mask; a64.seq = seq
    if nt > 1:
        with parallel(num_threads=nt):
            tid = threadid()
            size = fl_team_size()   # may be fewer than asked for
            if floating is float:
                fl_layer_thread_f32(&a32, tid, size)
            else:
                fl_layer_thread_f64(&a64, tid, size)
    elif floating is float:
        fl_layer_thread_f32(&a32, 0, 1)
    else:
        fl_layer_thread_f64(&a64, 0, 1)

    cdef floating *hfin = hbuf + (T & 1) * B * Up
    for b in range(B):
        memcpy(h + b * U, hfin + b * Up, row)
        memcpy(c + b * U, cbuf + b * Up, row)
        if ybuf != NULL:
            memcpy(y + b * U, ybuf + b * Up, row)
    free(raw)
    return 0


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
    activation, recurrent_activation: codes from lstm_cell.h
    num_threads       most threads to use (>= 1)

    The caller guarantees dtypes, C-contiguity and agreeing shapes, I >= 1,
    and that every size fits a C int.  Raises MemoryError if the workspace
    cannot be allocated.
    """
    cdef Py_ssize_t B = x.shape[0], T = x.shape[1], I = x.shape[2]
    cdef Py_ssize_t U = packed.units
    if B == 0 or T == 0:
        return
    cdef const unsigned char *mask_ptr = NULL
    cdef void *seq_ptr = NULL
    if mask is not None:
        mask_ptr = <const unsigned char *>cnp.PyArray_DATA(mask)
    if seq is not None:
        seq_ptr = cnp.PyArray_DATA(seq)
    cdef void *xp = cnp.PyArray_DATA(x)
    cdef void *kp = cnp.PyArray_DATA(packed.kernel)
    cdef void *rp = cnp.PyArray_DATA(packed.recurrent_kernel)
    cdef void *bp = cnp.PyArray_DATA(packed.bias)
    cdef void *hp = cnp.PyArray_DATA(h)
    cdef void *cp = cnp.PyArray_DATA(c)
    cdef void *yp = cnp.PyArray_DATA(y)
    cdef int status, isa_code = packed.isa_code
    cdef Py_ssize_t Up = packed.padded, W = packed.width, MR = packed.rows
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        with nogil:
            status = _run(<float *>xp, <float *>kp, <float *>rp, <float *>bp,
                          <float *>hp, <float *>cp, <float *>yp, mask_ptr,
                          <float *>seq_ptr, B, T, I, U, Up, W, MR, isa_code,
                          go_backwards, activation, recurrent_activation, num_threads)
    else:
        with nogil:
            status = _run(<double *>xp, <double *>kp, <double *>rp, <double *>bp,
                          <double *>hp, <double *>cp, <double *>yp, mask_ptr,
                          <double *>seq_ptr, B, T, I, U, Up, W, MR, isa_code,
                          go_backwards, activation, recurrent_activation, num_threads)
    if status != 0:
        raise MemoryError(
            f"fastlstm: cannot allocate the workspace for batch {B}, "
            f"{T} timesteps, {U} units")
