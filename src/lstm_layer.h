/* The LSTM time loop, run by each thread of a team, and the choice of
 * instruction set.  Plain C; _kernel.pyx owns memory and the OpenMP team.
 *
 * Packed layout (built by _kernel.pack): units are padded to Up, a multiple
 * of the block width W, and cut into NB = Up / W blocks.  Block p's slice of
 * the recurrent kernel is a panel [U][4][W] (gates i, f, c, o of units
 * p*W .. p*W+W-1 for each input row k), so a tile streams one contiguous
 * panel.  The input kernel and bias use the same column order, so the input
 * projection [B][steps][NB*4*W] comes out of one GEMM already interleaved.
 *
 * Threads split either the batch rows (no synchronisation: rows are
 * independent) or the unit blocks (one barrier per step, since every block
 * reads all of h_prev).  Each output value is computed by exactly one tile
 * with a fixed summation order, so results are bitwise identical for any
 * number of threads.
 */
#ifndef FASTLSTM_LSTM_LAYER_H
#define FASTLSTM_LSTM_LAYER_H

#include <stddef.h>
#include <string.h>
#include "lstm_cell.h"

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

/* Input projection of mr rows of x for one block: out = bias + x @ panel. */
#define FL_DEFINE_PROJ_ARGS(T, SUF)                                           \
typedef struct {                                                              \
    ptrdiff_t n_in;               /* features: length of the k loop */        \
    const T *x;              /* inputs                [mr][ldx] */            \
    ptrdiff_t ldx;                                                            \
    const T *kp;             /* packed kernel panel   [I][4][W] */            \
    const T *bias;           /* packed bias of the block [4][W] */            \
    T *out;                  /* projection at block   [mr][ldo] */            \
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

/* Training's weight gradients: out = x^T @ panel for mr columns of x and
 * one block (4*W columns), summed over K rows: out[r] (+)= sum_k
 * x[k * ldk + r] * panel[k]. */
#define FL_DEFINE_XTP_ARGS(T, SUF)                                            \
typedef struct {                                                              \
    ptrdiff_t K;                  /* rows summed over */                      \
    const T *x;              /* x[k * ldk + r]        [K][ldk] */             \
    ptrdiff_t ldk;                                                            \
    const T *pan;            /* panel                 [K][4][W] */            \
    T *out;                  /* at the block          [mr][ldo] */            \
    ptrdiff_t ldo;                                                            \
    int add;                 /* 1: add to out, 0: overwrite it */             \
} fl_xtp_##SUF;

FL_DEFINE_TILE_ARGS(float, f32)
FL_DEFINE_TILE_ARGS(double, f64)
FL_DEFINE_PROJ_ARGS(float, f32)
FL_DEFINE_PROJ_ARGS(double, f64)
FL_DEFINE_BACK_ARGS(float, f32)
FL_DEFINE_BACK_ARGS(double, f64)
FL_DEFINE_XTP_ARGS(float, f32)
FL_DEFINE_XTP_ARGS(double, f64)
#undef FL_DEFINE_XTP_ARGS
#undef FL_DEFINE_BACK_ARGS
#undef FL_DEFINE_TILE_ARGS
#undef FL_DEFINE_PROJ_ARGS

#include "lstm_portable.h"

/* The SIMD tiles rely on GCC's `#pragma GCC target` regions; other
 * compilers (clang spells it differently, untested here) build the portable
 * path only, which stays correct everywhere. */
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define FL_HAVE_X86 1
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define FL_SUF avx2
#define FL_W 8
#define FL_MR 3
#include "lstm_simd.h"
#undef FL_SUF
#undef FL_W
#undef FL_MR
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx2,fma")
#define FL_SUF avx512
#define FL_W 16
#define FL_MR 6
#include "lstm_simd.h"
#undef FL_SUF
#undef FL_W
#undef FL_MR
#pragma GCC pop_options

#pragma GCC diagnostic pop
#else
#define FL_HAVE_X86 0
#endif

/* Whether this CPU (and OS) can run an instruction set. */
static int fl_isa_supported(int isa)
{
#if FL_HAVE_X86
    __builtin_cpu_init();
    if (isa == FL_ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2")
            && __builtin_cpu_supports("fma");
    if (isa == FL_ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
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

#ifdef _OPENMP
#define FL_BARRIER _Pragma("omp barrier")
#else
#define FL_BARRIER
#endif

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

/* The whole layer, run by every thread of a team with its id.  Time is cut
 * into chunks of `chunk` steps; for each chunk a thread first computes the
 * input projection of its own rows and blocks (no other thread reads them),
 * then runs the chunk's steps. */
#define FL_DEFINE_LAYER(T, SUF)                                               \
typedef struct {                                                              \
    ptrdiff_t B, T_, n_in, U, Up, NB, W, MR, chunk;                           \
    int backwards, act, rec_act, isa;                                         \
    int split_units;   /* 1: threads split blocks; 0: threads split rows */   \
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
static void fl_layer_thread_##SUF(const fl_layer_##SUF *a, int tid, int nt)   \
{                                                                             \
    ptrdiff_t r0 = 0, r1 = a->B, p0 = 0, p1 = a->NB, s, ci;                   \
    void (*tile)(int, const fl_tile_##SUF *) = fl_tile_portable_##SUF;        \
    void (*proj)(int, const fl_proj_##SUF *) = fl_proj_portable_##SUF;        \
    FL_PICK_TILE_##SUF                                                        \
    if (a->split_units) {                                                     \
        p0 = a->NB * tid / nt;                                                \
        p1 = a->NB * (tid + 1) / nt;                                          \
    } else {                                                                  \
        r0 = a->B * tid / nt;                                                 \
        r1 = a->B * (tid + 1) / nt;                                           \
    }                                                                         \
    ptrdiff_t rows = r1 - r0, G = a->NB * 4 * a->W, W4 = 4 * a->W;            \
    ptrdiff_t ntiles = (rows + a->MR - 1) / a->MR;                            \
    ptrdiff_t n_chunks = (a->T_ + a->chunk - 1) / a->chunk;                   \
    fl_tile_##SUF tl;                                                         \
    fl_proj_##SUF pj;                                                         \
    tl.U = a->U; tl.ldh = a->Up; tl.ldc = a->Up;                              \
    tl.ldm = a->T_; tl.lds = a->T_ * a->U;                                    \
    tl.act = a->act; tl.rec_act = a->rec_act;                                 \
    tl.rec = NULL;                                                            \
    tl.ldx = a->chunk * G;  /* the same for every chunk: see proj above */    \
    pj.n_in = a->n_in;                                                        \
    ptrdiff_t done = 0, tc = 0;  /* steps before this chunk, steps in it */   \
    for (ci = 0; ci < n_chunks; ++ci, done += tc) {                           \
        /* chunks in processing order; proj is indexed by real time */        \
        ptrdiff_t t0 = a->backwards ? (n_chunks - 1 - ci) * a->chunk          \
                               : ci * a->chunk;                               \
        tc = a->T_ - t0 < a->chunk ? a->T_ - t0 : a->chunk;                   \
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
        for (s = 0; s < tc; ++s) {                                            \
            ptrdiff_t t = a->backwards ? t0 + tc - 1 - s : t0 + s;            \
            ptrdiff_t k = a->backwards ? a->T_ - 1 - t : t;    /* output index */ \
            ptrdiff_t par = (done + s) & 1;     /* h buffer of this step */   \
            T *hprev = a->h + par * a->B * a->Up;                             \
            T *hnext = a->h + (1 - par) * a->B * a->Up;                       \
            for (ptrdiff_t p = p0; p < p1; ++p) {                             \
                ptrdiff_t col = p * a->W, b = r0;                             \
                tl.col = col;                                                 \
                tl.r = a->r + p * a->U * W4;                                  \
                tl.nvalid = (int)(a->U - col < a->W ? a->U - col : a->W);     \
                for (ptrdiff_t q = 0; q < ntiles; ++q) {                      \
                    int mr = fl_tile_rows(rows, ntiles, q);                   \
                    tl.h = hprev + b * a->Up;                                 \
                    tl.x = a->proj + (b * a->chunk + t - t0) * G + p * W4;    \
                    tl.c = a->c + b * a->Up + col;                            \
                    tl.hn = hnext + b * a->Up + col;                          \
                    tl.y = a->y != NULL ? a->y + b * a->Up + col : NULL;      \
                    tl.mask = a->mask != NULL ? a->mask + b * a->T_ + t : NULL; \
                    tl.seq = a->seq != NULL                                   \
                        ? a->seq + (b * a->T_ + k) * a->U + col : NULL;       \
                    tile(mr, &tl);                                            \
                    b += mr;                                                  \
                }                                                             \
            }                                                                 \
            if (a->split_units && nt > 1) {                                   \
                FL_BARRIER                                                    \
            }                                                                 \
        }                                                                     \
    }                                                                         \
}

FL_DEFINE_LAYER(float, f32)
FL_DEFINE_LAYER(double, f64)
#undef FL_DEFINE_LAYER

/* 1 when the module was compiled with OpenMP. */
static int fl_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* The size of the current thread team (1 outside a parallel region). */
#ifdef _OPENMP
#include <omp.h>
static int fl_team_size(void) { return omp_get_num_threads(); }
#else
static int fl_team_size(void) { return 1; }
#endif

#endif /* FASTLSTM_LSTM_LAYER_H */
