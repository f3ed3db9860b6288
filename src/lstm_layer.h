/* The LSTM time loop, run by each thread of a team, and the choice of
 * instruction set.  Plain C; _kernel.pyx owns the memory, fl_pool.h the threads.
 *
 * Packed layout (built by _kernel.pack): units are padded to Up, a multiple
 * of the block width W, and cut into NB = Up / W blocks.  Block p's slice of
 * the recurrent kernel is a panel [U][4][W] (gates i, f, c, o of units
 * p*W .. p*W+W-1 for each input row k), so a tile streams one contiguous
 * panel.  The input kernel and bias use the same column order, so the input
 * projection [B][steps][NB*4*W] comes out of one GEMM already interleaved.
 *
 * Threads share either the batch rows (no synchronisation: rows are
 * independent) or the unit blocks (every block reads all of h_prev, so a
 * step starts when the previous one is done); see fl_layer_job.  Each
 * output value is computed by exactly one tile with a fixed summation
 * order, so results are bitwise identical for any number of threads.
 */
#ifndef FASTLSTM_LSTM_LAYER_H
#define FASTLSTM_LSTM_LAYER_H

#include <stddef.h>
#include <string.h>
#include "lstm_cell.h"
#include "fl_pool.h"

/* Instruction sets; _kernel.pyx holds the names. */
enum { FL_ISA_PORTABLE = 0, FL_ISA_AVX2 = 1, FL_ISA_AVX512 = 2 };

/* One tile: mr rows of one block of W units.  Pointers are at the tile's
 * first row; row strides in elements. */
#define FL_DEFINE_TILE_ARGS(T, SUF)                                           \
typedef struct {                                                              \
    ptrdiff_t U;                  /* units: length of the k loop */           \
    const T *h;              /* h_prev, column 0      [mr][ldh] */            \
    ptrdiff_t ldh;                                                            \
    ptrdiff_t col;                /* first unit of the block (p * W) */       \
    const T *r;              /* packed panel          [U][4][W] */            \
    const T *x;              /* input projection      [mr][ldx] at block */   \
    ptrdiff_t ldx;                                                            \
    T *c, *hn, *y;           /* cell, next h, last output at block [mr][ldc] */ \
    ptrdiff_t ldc;                                                            \
    const unsigned char *mask; /* mask[b, t] of row 0, or NULL [mr][ldm] */   \
    ptrdiff_t ldm;                                                            \
    T *seq;                  /* output [b, k, col], or NULL [mr][lds] */      \
    ptrdiff_t lds;                                                            \
    int nvalid;              /* units of the block that are real (<= W) */    \
    int act, rec_act;                                                         \
    T *rec;                  /* training's record of the step, or NULL: per   \
                                row (stride ldr) gates i, f, c, o, then c and \
                                act(c), W each */                             \
    ptrdiff_t ldr;                                                            \
} fl_tile_##SUF;

/* A product tile for mr rows and one block (4*W columns):
 *   out[r] = init[r] + sum_k x[r * ldx + k * ldk] * panel[k].
 * The input projection: x row-major (ldk = 1), init = the block's bias for
 * every row (ldb = 0).  Training's weight gradients x^T dZ and h^T dZ: x
 * read down its columns (ldx = 1), init = out to accumulate (bias = out,
 * ldb = ldo) or zero (bias = NULL). */
#define FL_DEFINE_PROJ_ARGS(T, SUF)                                           \
typedef struct {                                                              \
    ptrdiff_t n_in;               /* length of the k loop */                  \
    const T *x;                   /* x[r * ldx + k * ldk] */                  \
    ptrdiff_t ldx, ldk;                                                       \
    const T *kp;                  /* packed panel          [n_in][4][W] */    \
    const T *bias;                /* init of row r at r * ldb, or NULL */     \
    ptrdiff_t ldb;                                                            \
    T *out;                       /* at the block          [mr][ldo] */       \
    ptrdiff_t ldo;                                                            \
} fl_proj_##SUF;

/* Training's backward step for mr rows and a group of up to 4 blocks (4*W
 * units): dh += dzn @ R^T for the group's units, then, when `rec` is set,
 * the cell's backward step, which writes the step's dZ and updates dc. */
#define FL_DEFINE_BACK_ARGS(T, SUF)                                           \
typedef struct {                                                              \
    ptrdiff_t K;             /* gate columns of dzn (4*Up), 0: no product */  \
    const T *dzn;            /* dZ of the step processed next, by blocks: */  \
    ptrdiff_t ldz, zstride;  /* block q of row r at q * zstride + r * ldz */  \
    const T *rt;             /* packed R^T panel of the group [K][4][W] */    \
    T *dh, *dc, *dy;         /* carried gradients at the group [mr][lds]; */  \
    ptrdiff_t lds;           /* dy: of the last output, NULL without mask */  \
    const T *rec;            /* the step's record at the group, or NULL */    \
    const T *cprev;          /* the previous step's record (for c) */         \
    ptrdiff_t ldr;           /* row stride of both (layout as fl_tile's) */   \
    const T *dseq;           /* dL/d(step output) at the group [mr][ldq], */  \
    ptrdiff_t ldq;           /* or NULL */                                    \
    const unsigned char *mask; /* mask[b, t] of row 0, or NULL [mr][ldm] */   \
    ptrdiff_t ldm;                                                            \
    T *dz;                   /* out: dZ of the step at the group, by blocks */ \
    int nblk;                /* blocks in the group (1..4) */                 \
    int nlast;               /* real units of its last block (<= W) */        \
    int act, rec_act;                                                         \
} fl_back_##SUF;


FL_DEFINE_TILE_ARGS(float, f32)
FL_DEFINE_TILE_ARGS(double, f64)
FL_DEFINE_PROJ_ARGS(float, f32)
FL_DEFINE_PROJ_ARGS(double, f64)
FL_DEFINE_BACK_ARGS(float, f32)
FL_DEFINE_BACK_ARGS(double, f64)
#undef FL_DEFINE_BACK_ARGS
#undef FL_DEFINE_TILE_ARGS
#undef FL_DEFINE_PROJ_ARGS

#include "lstm_portable.h"

/* The SIMD tiles are compiled for each instruction set inside a target
 * region: `#pragma GCC target` for GCC, `#pragma clang attribute` for clang
 * (which gives every function of the region the target attribute).  Other
 * compilers (MSVC) build the portable path only, which stays correct
 * everywhere. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FL_HAVE_X86 1
#if defined(__clang__)
#define FL_TARGET_BEGIN(isa) \
    _Pragma(FL_STR(clang attribute push(__attribute__((target(isa))), apply_to = function)))
#define FL_TARGET_END _Pragma("clang attribute pop")
#else
#define FL_TARGET_BEGIN(isa) _Pragma("GCC push_options") _Pragma(FL_STR(GCC target(isa)))
#define FL_TARGET_END _Pragma("GCC pop_options")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#define FL_STR_(x) #x
#define FL_STR(x) FL_STR_(x)

FL_TARGET_BEGIN("avx2,fma")
#define FL_SUF avx2
#define FL_W 8
#define FL_MR 3
#include "lstm_simd.h"
#undef FL_SUF
#undef FL_W
#undef FL_MR
FL_TARGET_END

FL_TARGET_BEGIN("avx512f,avx512dq,avx512vl,avx2,fma")
#define FL_SUF avx512
#define FL_W 16
#define FL_MR 6
#include "lstm_simd.h"
#undef FL_SUF
#undef FL_W
#undef FL_MR
FL_TARGET_END

#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#else
#define FL_HAVE_X86 0
#endif

#if FL_HAVE_X86
#include <cpuid.h>
/* Read from CPUID and XCR0 directly rather than with __builtin_cpu_supports,
 * which needs the compiler's runtime library to have filled in its CPU
 * model (not every clang toolchain does). */
static int fl_x86_supports(int isa)
{
    unsigned a, b, c, d, xcr0, xcr0_hi;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    /* FMA, OSXSAVE (the OS manages XCR0) and AVX */
    if (!(c & (1u << 12)) || !(c & (1u << 27)) || !(c & (1u << 28)))
        return 0;
    __asm__ volatile("xgetbv" : "=a"(xcr0), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0 & 0x6) != 0x6)           /* the OS saves XMM and YMM state */
        return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 5)))   /* AVX2 */
        return 0;
    if (isa == FL_ISA_AVX2)
        return 1;
    /* AVX-512 F, DQ and VL, and the OS saves opmask and all of ZMM */
    return (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 31))
        && (xcr0 & 0xe0) == 0xe0;
}
#endif

/* Whether this CPU (and OS) can run an instruction set. */
static int fl_isa_supported(int isa)
{
#if FL_HAVE_X86
    if (isa == FL_ISA_AVX512 || isa == FL_ISA_AVX2)
        return fl_x86_supports(isa);
#endif
    return isa == FL_ISA_PORTABLE;
}

/* Block width W and most rows per tile of an instruction set. */
static int fl_isa_width(int isa, int is_double)
{
#if FL_HAVE_X86
    if (!is_double && isa == FL_ISA_AVX512) return 16;
    if (!is_double && isa == FL_ISA_AVX2) return 8;
#endif
    (void)isa; (void)is_double;
    return FL_PW;
}

static int fl_isa_rows(int isa, int is_double)
{
#if FL_HAVE_X86
    if (!is_double && isa == FL_ISA_AVX512) return 6;
    if (!is_double && isa == FL_ISA_AVX2) return 3;
#endif
    (void)isa; (void)is_double;
    return FL_PMR;
}

static void fl_activate_f32(int isa, int kind, const float *x, float *y, ptrdiff_t n)
{
#if FL_HAVE_X86
    if (isa == FL_ISA_AVX512) { fl_activate_avx512(kind, x, y, n); return; }
    if (isa == FL_ISA_AVX2) { fl_activate_avx2(kind, x, y, n); return; }
#endif
    for (ptrdiff_t j = 0; j < n; ++j)
        y[j] = fl_act_f32(kind, x[j]);
}

#if FL_HAVE_X86
#define FL_PICK_TILE_f32                                                      \
    if (a->isa == FL_ISA_AVX512) {                                            \
        tile = fl_tile_avx512;                                                \
        proj = fl_proj_avx512;                                                \
    } else if (a->isa == FL_ISA_AVX2) {                                       \
        tile = fl_tile_avx2;                                                  \
        proj = fl_proj_avx2;                                                  \
    }
#else
#define FL_PICK_TILE_f32
#endif
#define FL_PICK_TILE_f64

/* Near-equal tiles of at most MR rows: 8 rows -> 4 + 4, not 6 + 2. */
static inline int fl_tile_rows(ptrdiff_t rows, ptrdiff_t ntiles, ptrdiff_t q)
{
    return (int)(rows / ntiles + (q < rows % ntiles));
}

/* The chunk holding step s (in processing order): its first real time t0,
 * its length tc and s's position in it.  Going backwards the chunks are
 * processed last first, and the last one may be short. */
static inline void fl_chunk_of(ptrdiff_t T_, ptrdiff_t chunk, int backwards, ptrdiff_t s,
                               ptrdiff_t *t0, ptrdiff_t *tc, ptrdiff_t *pos)
{
    ptrdiff_t n_chunks = (T_ + chunk - 1) / chunk, ci;
    ptrdiff_t first = backwards ? T_ - (n_chunks - 1) * chunk : chunk;   /* its length */
    if (s < first) {
        ci = 0;
        *pos = s;
    } else {
        ci = 1 + (s - first) / chunk;
        *pos = (s - first) % chunk;
    }
    *t0 = backwards ? (n_chunks - 1 - ci) * chunk : ci * chunk;
    *tc = T_ - *t0 < chunk ? T_ - *t0 : chunk;
}

/* Work sharing (fl_pool.h: threads join when they can, so work is claimed,
 * never assigned):
 *   rows:  the batch is cut into `parts` row groups; a thread claims a whole
 *          group (every step of it) from the counter `next`.
 *   units: the unit blocks are cut into `parts` ranges, range k belonging
 *          to thread slot k.  Every step each range is claimed by one thread
 *          (owner[k].count counts the steps range k was claimed for), and
 *          `done` counts finished (step, range) pieces; a thread starts step
 *          s + 1 once all of step s is done.  A range whose thread has not
 *          joined the job is claimed at once by whoever is waiting; one whose
 *          thread is present only after FL_STEAL_SPINS pauses (it may have
 *          lost its core), so normally each thread keeps its own range and
 *          its weights stay in that core's cache. */
#define FL_STEAL_SPINS 4000
/* Sharing units pays only while handing h between cores costs less than
 * the work it halves, and that hand-over varies (here, on a VM: 70 to 340 ns
 * a round trip).  So the caller times its first steps: if it waited for
 * the others longer than it computed, it finishes the job alone (`solo`;
 * the others leave at their next step). */
#define FL_ADAPT_STEPS 8
typedef struct {
    ptrdiff_t next;
    ptrdiff_t done;
    ptrdiff_t solo;
    char pad[64 - 3 * sizeof(ptrdiff_t)];
} fl_sync;
typedef struct {
    ptrdiff_t count;
    char pad[64 - sizeof(ptrdiff_t)];
} fl_owner;    /* one cache line each: claims of different ranges do not collide */

/* The whole layer: one job for fl_pool_run.  Time is cut into chunks of
 * `chunk` steps; at a chunk's first step, whoever runs rows r0..r1 of
 * blocks p0..p1 first computes their input projection for the chunk. */
#define FL_DEFINE_LAYER(T, SUF)                                               \
typedef struct {                                                              \
    ptrdiff_t B, T_, n_in, U, Up, NB, W, MR, chunk;                           \
    int backwards, act, rec_act, isa;                                         \
    int split_units;   /* 1: parts are unit ranges; 0: row groups */          \
    int parts;         /* row groups or unit ranges (<= threads asked for) */ \
    fl_sync *sync;     /* shared counters, zeroed */                          \
    fl_owner *owner;   /* [parts] claims of the unit ranges, zeroed */        \
    ptrdiff_t *present; /* [parts] range k's thread has joined, zeroed */     \
    const T *x;        /* inputs                    [B][T_][I] */             \
    const T *kp;       /* packed kernel             [NB][I][4][W] */          \
    const T *bias;     /* packed bias               [NB][4][W] */             \
    const T *r;        /* packed recurrent kernel   [NB][U][4][W] */          \
    T *proj;           /* input projection          [B][chunk][NB*4*W] */     \
                       /* (row stride `chunk` even in a shorter last chunk,   \
                          so one thread's rows never overlap another's) */    \
    T *h;              /* h double buffer           [2][B][Up] */             \
    T *c;              /* cell                      [B][Up] */                \
    T *y;              /* last output               [B][Up], NULL: no mask */ \
    const unsigned char *mask;  /*                  [B][T_] or NULL */        \
    T *seq;            /* outputs                   [B][T_][U] or NULL */     \
} fl_layer_##SUF;                                                             \
                                                                              \
/* Step s (processing order) of rows r0..r1 and blocks p0..p1. */             \
static void fl_layer_step_##SUF(const fl_layer_##SUF *a, ptrdiff_t s,         \
                                ptrdiff_t r0, ptrdiff_t r1,                   \
                                ptrdiff_t p0, ptrdiff_t p1)                   \
{                                                                             \
    void (*tile)(int, const fl_tile_##SUF *) = fl_tile_portable_##SUF;        \
    void (*proj)(int, const fl_proj_##SUF *) = fl_proj_portable_##SUF;        \
    FL_PICK_TILE_##SUF                                                        \
    ptrdiff_t rows = r1 - r0, G = a->NB * 4 * a->W, W4 = 4 * a->W;            \
    ptrdiff_t t0, tc, pos;                                                    \
    fl_chunk_of(a->T_, a->chunk, a->backwards, s, &t0, &tc, &pos);            \
    if (pos == 0) {                                                           \
        fl_proj_##SUF pj;                                                     \
        pj.n_in = a->n_in;                                                    \
        pj.ldk = 1;                                                           \
        pj.ldb = 0;                                                           \
        /* Tile the projection along time within each row when the chunk is   \
         * long enough, else along the batch rows at each step. */            \
        int along_time = tc >= a->MR || rows < tc;                            \
        ptrdiff_t outer = along_time ? rows : tc;                             \
        ptrdiff_t inner = along_time ? tc : rows;                             \
        ptrdiff_t ptiles = (inner + a->MR - 1) / a->MR;                       \
        pj.ldx = along_time ? a->n_in : a->T_ * a->n_in;                      \
        pj.ldo = along_time ? G : a->chunk * G;                               \
        for (ptrdiff_t p = p0; p < p1; ++p) {                                 \
            pj.kp = a->kp + p * a->n_in * W4;                                 \
            pj.bias = a->bias + p * W4;                                       \
            for (ptrdiff_t o = 0; o < outer; ++o) {                           \
                ptrdiff_t i0 = 0;                                             \
                for (ptrdiff_t q = 0; q < ptiles; ++q) {                      \
                    int mr = fl_tile_rows(inner, ptiles, q);                  \
                    ptrdiff_t b = r0 + (along_time ? o : i0);                 \
                    ptrdiff_t st = along_time ? i0 : o;                       \
                    pj.x = a->x + (b * a->T_ + t0 + st) * a->n_in;            \
                    pj.out = a->proj + (b * a->chunk + st) * G + p * W4;      \
                    proj(mr, &pj);                                            \
                    i0 += mr;                                                 \
                }                                                             \
            }                                                                 \
        }                                                                     \
    }                                                                         \
    ptrdiff_t t = a->backwards ? t0 + tc - 1 - pos : t0 + pos;                \
    ptrdiff_t k = a->backwards ? a->T_ - 1 - t : t;    /* output index */     \
    T *hprev = a->h + (s & 1) * a->B * a->Up;                                 \
    T *hnext = a->h + (1 - (s & 1)) * a->B * a->Up;                           \
    ptrdiff_t ntiles = (rows + a->MR - 1) / a->MR;                            \
    fl_tile_##SUF tl;                                                         \
    tl.U = a->U; tl.ldh = a->Up; tl.ldc = a->Up;                              \
    tl.ldm = a->T_; tl.lds = a->T_ * a->U;                                    \
    tl.act = a->act; tl.rec_act = a->rec_act;                                 \
    tl.rec = NULL;                                                            \
    tl.ldx = a->chunk * G;  /* the same for every chunk: see proj above */    \
    for (ptrdiff_t p = p0; p < p1; ++p) {                                     \
        ptrdiff_t col = p * a->W, b = r0;                                     \
        tl.col = col;                                                         \
        tl.r = a->r + p * a->U * W4;                                          \
        tl.nvalid = (int)(a->U - col < a->W ? a->U - col : a->W);             \
        for (ptrdiff_t q = 0; q < ntiles; ++q) {                              \
            int mr = fl_tile_rows(rows, ntiles, q);                           \
            tl.h = hprev + b * a->Up;                                         \
            tl.x = a->proj + (b * a->chunk + t - t0) * G + p * W4;            \
            tl.c = a->c + b * a->Up + col;                                    \
            tl.hn = hnext + b * a->Up + col;                                  \
            tl.y = a->y != NULL ? a->y + b * a->Up + col : NULL;              \
            tl.mask = a->mask != NULL ? a->mask + b * a->T_ + t : NULL;       \
            tl.seq = a->seq != NULL                                           \
                ? a->seq + (b * a->T_ + k) * a->U + col : NULL;               \
            tile(mr, &tl);                                                    \
            b += mr;                                                          \
        }                                                                     \
    }                                                                         \
}                                                                             \
                                                                              \
/* Step s of unit range k (all rows), then count it done. */                  \
static void fl_layer_range_##SUF(const fl_layer_##SUF *a, ptrdiff_t s,        \
                                 ptrdiff_t k)                                 \
{                                                                             \
    ptrdiff_t n = a->parts;                                                   \
    fl_layer_step_##SUF(a, s, 0, a->B, a->NB * k / n, a->NB * (k + 1) / n);   \
    FL_ADD(&a->sync->done, 1);                                                \
}                                                                             \
                                                                              \
static void fl_layer_job_##SUF(void *ctx, int slot)                           \
{                                                                             \
    const fl_layer_##SUF *a = (const fl_layer_##SUF *)ctx;                    \
    ptrdiff_t n = a->parts, s, g;                                             \
    if (!a->split_units) {                                                    \
        while ((g = FL_ADD(&a->sync->next, 1) - 1) < n) {                     \
            ptrdiff_t r0 = a->B * g / n, r1 = a->B * (g + 1) / n;             \
            for (s = 0; s < a->T_; ++s)                                       \
                fl_layer_step_##SUF(a, s, r0, r1, 0, a->NB);                  \
        }                                                                     \
        return;                                                               \
    }                                                                         \
    fl_owner *own = a->owner;                                                 \
    long long computed = 0, waited = 0;     /* ticks of the caller's steps */ \
    ptrdiff_t first = FL_LOAD(&a->sync->done) / n;                            \
    if (slot < n)                                                             \
        FL_ADD(&a->present[slot], 1);                                         \
    for (s = first; s < a->T_; ++s) {                                         \
        ptrdiff_t expect = s, spins;                                          \
        int solo = FL_LOAD(&a->sync->solo) != 0;                              \
        if (solo && slot != 0)                                                \
            return;                                                           \
        long long t0 = fl_ticks();                                            \
        if (slot < n && FL_CLAIM(&own[slot].count, expect, s + 1))            \
            fl_layer_range_##SUF(a, s, slot);                                 \
        long long t1 = fl_ticks();                                            \
        for (spins = 0; FL_LOAD(&a->sync->done) < (s + 1) * n; ++spins) {     \
            if (spins == 0 || spins == FL_STEAL_SPINS) {                      \
                for (ptrdiff_t i = 1; i < n; ++i) {                           \
                    ptrdiff_t k = (slot + i) % n;                             \
                    expect = s;                                               \
                    if ((spins || solo || !FL_LOAD(&a->present[k]))           \
                        && FL_CLAIM(&own[k].count, expect, s + 1))            \
                        fl_layer_range_##SUF(a, s, k);                        \
                }                                                             \
            }                                                                 \
            FL_PAUSE();                                                       \
        }                                                                     \
        if (slot == 0 && !solo && s > first) {  /* first: projection, joins */ \
            computed += t1 - t0;                                              \
            waited += fl_ticks() - t1;                                        \
            if (s == first + FL_ADAPT_STEPS && waited > computed)             \
                FL_ADD(&a->sync->solo, 1);                                    \
        }                                                                     \
    }                                                                         \
}

FL_DEFINE_LAYER(float, f32)
FL_DEFINE_LAYER(double, f64)
#undef FL_DEFINE_LAYER

#endif /* FASTLSTM_LSTM_LAYER_H */
