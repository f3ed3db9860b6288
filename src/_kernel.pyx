# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""LSTM forward kernel: packed weights and the threaded time loop of fused
SIMD tiles (src/lstm_layer.h), input projection included.

Knows nothing about Keras.  The caller (fastlstm/layer.py) validates and
allocates; ``pack`` prepares weights once per weight change and ``forward``
fills the outputs it is given.  Shapes use B = batch, T = timesteps,
I = input features, U = units.
"""
import os
import warnings

import numpy as np

cimport numpy as cnp
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
    enum:
        FL_HAVE_POOL
    ctypedef struct fl_sync:
        pass
    ctypedef struct fl_owner:
        pass
    ctypedef void (*fl_job_fn)(void *ctx, int slot)
    void fl_pool_run(fl_job_fn fn, void *ctx, int n)
    ctypedef struct fl_layer_f32:
        Py_ssize_t B, T_, n_in, U, Up, NB, W, MR, chunk
        int backwards, act, rec_act, isa, split_units, parts
        fl_sync *sync
        fl_owner *owner
        Py_ssize_t *present
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
        int backwards, act, rec_act, isa, split_units, parts
        fl_sync *sync
        fl_owner *owner
        Py_ssize_t *present
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
    void fl_layer_job_f32(void *ctx, int slot)
    void fl_layer_job_f64(void *ctx, int slot)

ISA_NAMES = ("portable", "avx2", "avx512")
# Whether calls can run on several threads (fl_pool.h: POSIX threads).
THREAD_POOL = bool(FL_HAVE_POOL)

# Upper bound on the input-projection workspace [B, chunk, 4Up]: it is
# computed for ``chunk`` time steps at once, so memory stays bounded for any T,
# and small enough to stay in L2 between its writes and reads.
cdef Py_ssize_t WORKSPACE_BYTES = 1024 * 1024
# Below this many multiply-adds a call runs on one thread: about 8 us of
# work, where waking a sleeping worker costs the caller a few microseconds.
cdef double PARALLEL_MIN_FMAS = 2e5
# Fewest multiply-adds of h_prev @ U per step for which threads share the
# units of a small batch: each step then ends in a hand-over between cores
# (~0.2 us here).  Measured with 2 threads at T=100, I=32: B=1, U=32 (4096)
# gains nothing; U=64 (16384) 94 -> 78 us; U=128 290 -> 168 us.
cdef double UNIT_SPLIT_MIN_FMAS = 16384

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
    "default_threads"}`` (no thread pool means one thread)."""
    return {"isa": isa(), "supported_isas": supported_isas(), "thread_pool": THREAD_POOL,
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
    Float64 always uses the portable layout.
    """
    cdef Packed p = Packed()
    is_double = kernel.dtype == np.float64
    code = FL_ISA_PORTABLE if is_double else _isa
    W = fl_isa_width(code, is_double)
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
    p.rows = fl_isa_rows(code, is_double)
    p.units = U
    p.padded = Up
    return p


cdef int _plan(Py_ssize_t B, Py_ssize_t T, Py_ssize_t I, Py_ssize_t U,
               Py_ssize_t NB, int nt, int *split_units) noexcept nogil:
    """Threads to ask for, at most ``nt``; sets ``split_units``.

    Share the batch rows when every thread gets a few: threads then meet
    only at the end.  Sharing the unit blocks hands h over between threads
    every step, which pays when the batch is small and the steps are big
    (measured at 2 threads: B=4, U=256: units 2.8 ms, rows 4.0 ms;
    B=8, U=128: rows 9.0 ms, units 9.1 ms).  Neither waits for a thread
    that has not started (fl_pool.h), so asking for threads is cheap.
    """
    split_units[0] = 0
    if nt <= 1 or <double>B * T * 4 * U * (I + U) < PARALLEL_MIN_FMAS:
        return 1
    if B >= 4 * nt:
        return nt
    if NB >= nt and <double>B * U * 4 * U >= UNIT_SPLIT_MIN_FMAS:
        split_units[0] = 1
        return nt
    if B >= nt:
        return nt
    return 1

def plan(B, T, I, U, num_threads, isa_name=None):
    """``(threads, "rows" | "units")`` the kernel would ask for in a float32
    call of this shape on the current (or the named) instruction set."""
    code = _isa if isa_name is None else ISA_NAMES.index(isa_name)
    W = fl_isa_width(code, 0)
    cdef int split = 0
    threads = _plan(B, T, I, U, -(-U // W), num_threads, &split)
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
    cdef int split_units = 0
    nt = _plan(B, T, I, U, NB, nt, &split_units)
    # Row groups: up to 4 per thread while each keeps a full tile of rows, so
    # that when one thread runs slowly (its core shared with another
    # process) the others take over more of its groups (measured with a busy
    # core at (64, 50, 256, 512): 93 ms with one group per thread, 75 with 4).
    cdef int parts = nt if split_units else nt * max(1, min(4, B // (nt * MR)))
    cdef Py_ssize_t n_state = (4 if mask != NULL else 3) * B * Up
    cdef Py_ssize_t n_proj = B * chunk * G
    # The shared counters: one cache line, one line per unit range, then
    # the flags of the threads present (read-mostly: a line of their own).
    cdef size_t sync_bytes = 64 * (1 + nt) + 64 * ((nt * sizeof(Py_ssize_t) + 63) // 64)
    cdef void *raw = malloc((n_state + n_proj) * sizeof(floating) + sync_bytes + 64)
    if raw == NULL:
        return -1
    # 64-byte alignment keeps each block of a row on its own cache lines.
    cdef char *base = <char *>((<uintptr_t>raw + 63) & ~(<uintptr_t>63))
    memset(base, 0, sync_bytes)
    cdef floating *hbuf = <floating *>(base + sync_bytes)
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

    cdef fl_layer_f32 a32
    cdef fl_layer_f64 a64
    if floating is float:
        a32.B = B; a32.T_ = T; a32.n_in = I; a32.U = U; a32.Up = Up; a32.NB = NB
        a32.W = W; a32.MR = MR; a32.chunk = chunk; a32.backwards = backwards
        a32.act = act; a32.rec_act = rec_act; a32.isa = isa_code
        a32.split_units = split_units; a32.parts = parts
        a32.sync = <fl_sync *>base; a32.owner = <fl_owner *>(base + 64)
        a32.present = <Py_ssize_t *>(base + 64 * (1 + nt))
        a32.x = x; a32.kp = kp; a32.bias = bp
        a32.r = rp; a32.proj = proj; a32.h = hbuf; a32.c = cbuf; a32.y = ybuf
        a32.mask = mask; a32.seq = seq
        fl_pool_run(fl_layer_job_f32, &a32, nt)
    else:
        a64.B = B; a64.T_ = T; a64.n_in = I; a64.U = U; a64.Up = Up; a64.NB = NB
        a64.W = W; a64.MR = MR; a64.chunk = chunk; a64.backwards = backwards
        a64.act = act; a64.rec_act = rec_act; a64.isa = isa_code
        a64.split_units = split_units; a64.parts = parts
        a64.sync = <fl_sync *>base; a64.owner = <fl_owner *>(base + 64)
        a64.present = <Py_ssize_t *>(base + 64 * (1 + nt))
        a64.x = x; a64.kp = kp; a64.bias = bp
        a64.r = rp; a64.proj = proj; a64.h = hbuf; a64.c = cbuf; a64.y = ybuf
        a64.mask = mask; a64.seq = seq
        fl_pool_run(fl_layer_job_f64, &a64, nt)

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

