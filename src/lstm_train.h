/* Training kernels.
 *
 * Two ways through the steps:
 * - on the packed weights (below FL_DEFINE_TRAIN_LAYER): the inference
 *   tiles of lstm_layer.h run the recurrence of both passes; the common
 *   case, every dtype and instruction set;
 * - per step BLAS (the Keras-layout rows of FL_DEFINE_TRAIN, driven by
 *   _train.pyx): used where dropout masks h or x per gate block, which
 *   changes each gate block's product.
 *
 * Every activation's derivative is written in terms of the activation's
 * *output* (fl_dact, lstm_portable.h), so the forward pass stores activated
 * values only:
 *   tanh' = 1 - y^2, sigmoid' = y (1 - y), hard_sigmoid' = 1/6 inside
 *   (0, 1) else 0, relu' = [y > 0], linear' = 1
 * (at the kinks this picks PyTorch's choices: relu'(0) = 0 and
 * hard_sigmoid' = 0 at x = +-3).
 */
#ifndef FASTLSTM_LSTM_TRAIN_H
#define FASTLSTM_LSTM_TRAIN_H

#include <string.h>

/* The tiles of the inference kernel (lstm_layer.h), whose layer function
 * this module does not use. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "lstm_layer.h"
#pragma GCC diagnostic pop

/* The row loops are compiled for the baseline ISA and, where the toolchain
 * can dispatch at load time (GNU ifuncs on x86-64 Linux), also for AVX2 and
 * AVX-512, so wheels built for baseline x86-64 still use wide vectors. */
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) \
    && !defined(__clang__)
/* Feature names, not arch=: gcc dispatches arch= clones by CPU model. */
#define FL_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))
#else
#define FL_CLONES
#endif

/* y = act(x) over n values with the activations of the tiles: float32 by
 * instruction set `isa` (lstm_simd.h's vector code, or libm's on the
 * portable path), float64 by libm. */
static void fl_train_activate_f32(int isa, int kind, const float *x, float *y,
                                  ptrdiff_t n)
{
    enum { V = 16 };     /* a multiple of every vector width */
    ptrdiff_t bulk = n - n % V;
    float tmp[V] = {0};
    if (bulk)
        fl_activate_f32(isa, kind, x, y, bulk);
    if (bulk < n) {
        memcpy(tmp, x + bulk, (n - bulk) * sizeof(float));
        fl_activate_f32(isa, kind, tmp, tmp, V);
        memcpy(y + bulk, tmp, (n - bulk) * sizeof(float));
    }
}

static void fl_train_activate_f64(int isa, int kind, const double *x, double *y,
                                  ptrdiff_t n)
{
    (void)isa;
    for (ptrdiff_t j = 0; j < n; ++j)
        y[j] = fl_act_f64(kind, x[j]);
}

#define FL_DEFINE_TRAIN(T, SUF)                                               \
/* c = f * c + i * g from the activated gates z [4U]. */                      \
FL_CLONES static void fl_train_cell_update_##SUF(const T *restrict z,         \
                                              T *restrict c, long U)          \
{                                                                             \
    for (long j = 0; j < U; ++j)                                              \
        c[j] = z[U + j] * c[j] + z[j] * z[2 * U + j];                         \
}                                                                             \
                                                                              \
FL_CLONES static void fl_train_cell_output_##SUF(const T *restrict o,         \
                                              const T *restrict a,            \
                                              T *restrict h, long U)          \
{                                                                             \
    for (long j = 0; j < U; ++j)                                              \
        h[j] = o[j] * a[j];                                                   \
}                                                                             \
                                                                              \
/* z: [4U] in: pre-activations i, f, c, o; out: the activated gates.         \
 * c: [U] in: c_prev, out: c.  h: [U] out.  a: [U] out: act(c). */            \
static void fl_train_cell_row_##SUF(int isa, T *restrict z, T *restrict c,    \
                                    T *restrict h, T *restrict a, long U,     \
                                    int act, int rec_act)                     \
{                                                                             \
    fl_train_activate_##SUF(isa, rec_act, z, z, 2 * U);    /* i, f */         \
    fl_train_activate_##SUF(isa, act, z + 2 * U, z + 2 * U, U);               \
    fl_train_activate_##SUF(isa, rec_act, z + 3 * U, z + 3 * U, U);           \
    fl_train_cell_update_##SUF(z, c, U);                                      \
    fl_train_activate_##SUF(isa, act, c, a, U);                               \
    fl_train_cell_output_##SUF(z + 3 * U, a, h, U);                           \
}                                                                             \
                                                                              \
/* z: [4U] activated gates of the step.  dz: [4U] out: dL/d(pre-activations). \
 * c_prev: [U] the step's incoming c.  a: [U] act(c) of the step.            \
 * dh: [U] dL/dh of the step's output h.                                     \
 * dc: [U] in: dL/dc of the step's c; out: dL/dc_prev. */                     \
FL_CLONES static void fl_train_cell_back_row_##SUF(                             \
    const T *restrict z, T *restrict dz, const T *restrict c_prev,            \
    const T *restrict a, const T *restrict dh, T *restrict dc, long U,        \
    int act, int rec_act)                                                     \
{                                                                             \
    const T *restrict zi = z, *restrict zf = z + U;                           \
    const T *restrict zg = z + 2 * U, *restrict zo = z + 3 * U;               \
    T *restrict di = dz, *restrict df = dz + U;                               \
    T *restrict dg = dz + 2 * U, *restrict dout = dz + 3 * U;                 \
    long j;                                                                   \
    if (act == FL_ACT_TANH && rec_act == FL_ACT_SIGMOID) {                    \
        for (j = 0; j < U; ++j) {                                             \
            T i = zi[j], f = zf[j], g = zg[j], o = zo[j], aj = a[j];          \
            T dct = dc[j] + dh[j] * o * ((T)1 - aj * aj);                     \
            di[j] = dct * g * i * ((T)1 - i);                                 \
            df[j] = dct * c_prev[j] * f * ((T)1 - f);                         \
            dg[j] = dct * i * ((T)1 - g * g);                                 \
            dout[j] = dh[j] * aj * o * ((T)1 - o);                              \
            dc[j] = dct * f;                                                  \
        }                                                                     \
        return;                                                               \
    }                                                                         \
    for (j = 0; j < U; ++j) {                                                 \
        T i = zi[j], f = zf[j], g = zg[j], o = zo[j], aj = a[j];              \
        T dct = dc[j] + dh[j] * o * fl_dact_##SUF(act, aj);                   \
        di[j] = dct * g * fl_dact_##SUF(rec_act, i);                          \
        df[j] = dct * c_prev[j] * fl_dact_##SUF(rec_act, f);                  \
        dg[j] = dct * i * fl_dact_##SUF(act, g);                              \
        dout[j] = dh[j] * aj * fl_dact_##SUF(rec_act, o);                       \
        dc[j] = dct * f;                                                      \
    }                                                                         \
}

FL_DEFINE_TRAIN(float, f32)
FL_DEFINE_TRAIN(double, f64)

#undef FL_DEFINE_TRAIN

/* Training on the packed weights and the tiles of lstm_layer.h: the
 * forward step is the inference tile, which also writes a record of the
 * step; the backward step is fl_back.  Both take a group of batch rows
 * through every step; rows are independent, so groups run on separate
 * threads (fl_pool.h) without synchronisation, and a row's arithmetic does
 * not depend on the grouping (the tiles' fixed summation order).  The
 * weight gradients and dL/dx follow as passes of their own, over groups of
 * blocks and of rows.
 *
 * Buffers (B batch, T_ steps, I features, U units padded to Up = NB * W,
 * NQ = ceil(NB / 4) groups of 4 blocks, G4 = 4 * Up, G6 = NB * 6 * W):
 *   rec  [T_ + 1][B][G6]  slot s + 1: the record of processing step s
 *                         (per block: gates i, f, c, o, then c, act(c));
 *                         slot 0: only c, the initial cell
 *   hs   [T_ + 1][B][ldh] h0 at slot T_ with backwards else 0; step t
 *                         writes slot t (backwards) or t + 1, so slots
 *                         [backwards, backwards + T_) are the h entering
 *                         each step t, in time order
 *   x and hs have row strides ldx >= I and ldh >= Up whose byte sizes are
 *   not multiples of 512: the weight gradient tiles read them down columns,
 *   and rows a power of two apart would share a few cache sets.
 *   dz   [NB][T_ * B][4W] dL/d(gate pre-activations), one panel per block
 *                         (row t * B + b: step t, batch row b), padding
 *                         lanes zero; the weight gradients are x^T dz and
 *                         h^T dz (fl_proj tiles reading x and h down their
 *                         columns), blocks split between threads
 */
#define FL_DEFINE_TRAIN_LAYER(T, SUF)                                         \
typedef struct {                                                              \
    ptrdiff_t B, T_, n_in, U, Up, NB, W, MR;                                  \
    ptrdiff_t ldx, ldh;  /* row strides of x and of hs, c, y (see below) */   \
    int backwards, act, rec_act;                                              \
    void (*tile)(int, const fl_tile_##SUF *);                                 \
    void (*proj)(int, const fl_proj_##SUF *);                                 \
    void (*back)(int, const fl_back_##SUF *);                                 \
    const T *x;         /* inputs, time-major        [T_][B][ldx] */          \
    const T *kp;        /* packed kernel             [NB][I][4][W] */         \
    const T *bias;      /* packed bias               [NB][4][W] */            \
    const T *r;         /* packed recurrent kernel   [NB][U][4][W] */         \
    const T *rt;        /* packed R^T                [NQ][G4][4][W] */        \
    T *rec, *hs, *dz;   /* see above */                                       \
    T *c;               /* cell                      [B][ldh] */              \
    T *y;               /* last output [B][ldh], NULL: no mask */             \
    const unsigned char *mask;  /*                   [B][T_] or NULL */       \
    T *seq;             /* outputs, processing order [B][T_][U] or NULL */    \
    T *dh, *dc;         /* carried gradients         [B][Up] */               \
    T *dy;              /* of the last output [B][Up], NULL: no mask */       \
    const T *dseq;      /* of the outputs            [B][T_][U] or NULL */    \
    T *dkernel, *drk, *dbias;  /* out, packed columns [I][G4], [U][G4], [G4] */ \
    const T *kt;        /* kernel^T in panels of 4W features [NX][G4][4][W] */ \
    T *dx;              /* in: zeros, out: dL/dx [T_ * B][ceil(I / W) * W] */ \
} fl_train_##SUF;                                                             \
                                                                              \
static void fl_train_forward_rows_##SUF(const fl_train_##SUF *a,              \
                                        ptrdiff_t r0, ptrdiff_t r1)           \
{                                                                             \
    const ptrdiff_t B = a->B, T_ = a->T_, I = a->n_in, ldx = a->ldx, ldh = a->ldh; \
    const ptrdiff_t W4 = 4 * a->W, W6 = 6 * a->W, G6 = a->NB * W6;            \
    const ptrdiff_t slot = B * G6, rows = r1 - r0;                            \
    const ptrdiff_t ntiles = (rows + a->MR - 1) / a->MR;                      \
    /* Steps projected at once: their records stay in L2 until stepped. */    \
    ptrdiff_t chunk = ((ptrdiff_t)1 << 19) / (rows * G6 * (ptrdiff_t)sizeof(T)); \
    chunk = chunk < 1 ? 1 : chunk;                                            \
    fl_tile_##SUF tl;                                                         \
    fl_proj_##SUF pj;                                                         \
    tl.U = a->U; tl.ldh = ldh; tl.ldc = ldh; tl.ldx = G6; tl.ldr = G6;        \
    tl.ldm = T_; tl.lds = T_ * a->U; tl.act = a->act; tl.rec_act = a->rec_act; \
    pj.n_in = I;                                                              \
    pj.ldk = 1;                                                               \
    pj.ldb = 0;                                                               \
    for (ptrdiff_t b = r0; b < r1; ++b)      /* slot 0: the initial c */      \
        for (ptrdiff_t p = 0; p < a->NB; ++p)                                 \
            memcpy(a->rec + b * G6 + p * W6 + 4 * a->W, a->c + b * ldh + p * a->W, \
                   a->W * sizeof(T));                                         \
    for (ptrdiff_t s0 = 0; s0 < T_; s0 += chunk) {                            \
        ptrdiff_t tc = T_ - s0 < chunk ? T_ - s0 : chunk;                     \
        /* Projection of the chunk's steps into their records' gates,        \
         * tiled along time within a row when the chunk is long enough. */    \
        int along_time = tc >= a->MR || rows < tc;                            \
        ptrdiff_t outer = along_time ? rows : tc;                             \
        ptrdiff_t inner = along_time ? tc : rows;                             \
        ptrdiff_t ptiles = (inner + a->MR - 1) / a->MR;                       \
        pj.ldx = !along_time ? ldx : a->backwards ? -B * ldx : B * ldx;       \
        pj.ldo = along_time ? slot : G6;                                      \
        for (ptrdiff_t p = 0; p < a->NB; ++p) {                               \
            pj.kp = a->kp + p * I * W4;                                       \
            pj.bias = a->bias + p * W4;                                       \
            for (ptrdiff_t o = 0; o < outer; ++o) {                           \
                ptrdiff_t i0 = 0;                                             \
                for (ptrdiff_t q = 0; q < ptiles; ++q) {                      \
                    int mr = fl_tile_rows(inner, ptiles, q);                  \
                    ptrdiff_t b = r0 + (along_time ? o : i0);                 \
                    ptrdiff_t s = s0 + (along_time ? i0 : o);                 \
                    ptrdiff_t t = a->backwards ? T_ - 1 - s : s;              \
                    pj.x = a->x + (t * B + b) * ldx;                          \
                    pj.out = a->rec + (s + 1) * slot + b * G6 + p * W6;       \
                    a->proj(mr, &pj);                                         \
                    i0 += mr;                                                 \
                }                                                             \
            }                                                                 \
        }                                                                     \
        for (ptrdiff_t s = s0; s < s0 + tc; ++s) {                            \
            ptrdiff_t t = a->backwards ? T_ - 1 - s : s;                      \
            T *hprev = a->hs + (a->backwards ? t + 1 : t) * B * ldh;          \
            T *hnext = a->hs + (a->backwards ? t : t + 1) * B * ldh;          \
            for (ptrdiff_t p = 0; p < a->NB; ++p) {                           \
                ptrdiff_t col = p * a->W, b = r0;                             \
                tl.col = col;                                                 \
                tl.r = a->r + p * a->U * W4;                                  \
                tl.nvalid = (int)(a->U - col < a->W ? a->U - col : a->W);     \
                for (ptrdiff_t q = 0; q < ntiles; ++q) {                      \
                    int mr = fl_tile_rows(rows, ntiles, q);                   \
                    tl.h = hprev + b * ldh;                                   \
                    /* the tile reads its projection before writing the      \
                     * record over it */                                      \
                    tl.rec = a->rec + (s + 1) * slot + b * G6 + p * W6;       \
                    tl.x = tl.rec;                                            \
                    tl.c = a->c + b * ldh + col;                              \
                    tl.hn = hnext + b * ldh + col;                            \
                    tl.y = a->y != NULL ? a->y + b * ldh + col : NULL;        \
                    tl.mask = a->mask != NULL ? a->mask + b * T_ + t : NULL;  \
                    tl.seq = a->seq != NULL                                   \
                        ? a->seq + (b * T_ + s) * a->U + col : NULL;          \
                    a->tile(mr, &tl);                                         \
                    b += mr;                                                  \
                }                                                             \
            }                                                                 \
        }                                                                     \
    }                                                                         \
}                                                                             \
                                                                              \
/* Steps in reverse, then (s = -1) the product that gives dL/dh0. */          \
static void fl_train_backward_rows_##SUF(const fl_train_##SUF *a,             \
                                         ptrdiff_t r0, ptrdiff_t r1)          \
{                                                                             \
    const ptrdiff_t B = a->B, T_ = a->T_, Up = a->Up, W = a->W;               \
    const ptrdiff_t W4 = 4 * W, W6 = 6 * W, G4 = 4 * Up, G6 = a->NB * W6;     \
    const ptrdiff_t slot = B * G6, rows = r1 - r0;                            \
    const ptrdiff_t ntiles = (rows + a->MR - 1) / a->MR;                      \
    fl_back_##SUF bk;                                                         \
    bk.ldz = W4; bk.zstride = T_ * B * W4;                                    \
    bk.lds = Up; bk.ldr = G6; bk.ldq = T_ * a->U; bk.ldm = T_;                \
    bk.act = a->act; bk.rec_act = a->rec_act;                                 \
    for (ptrdiff_t s = T_ - 1; s >= -1; --s) {                                \
        ptrdiff_t t = a->backwards ? T_ - 1 - s : s;                          \
        ptrdiff_t tn = a->backwards ? t - 1 : t + 1;   /* step s + 1 */       \
        bk.K = s + 1 < T_ ? G4 : 0;                                           \
        for (ptrdiff_t p0 = 0; p0 < a->NB; p0 += 4) {                         \
            ptrdiff_t b = r0;                                                 \
            bk.rt = a->rt + (p0 / 4) * G4 * W4;                               \
            bk.nblk = (int)(a->NB - p0 < 4 ? a->NB - p0 : 4);                 \
            ptrdiff_t last = (p0 + bk.nblk - 1) * W;                          \
            bk.nlast = (int)(a->U - last < W ? a->U - last : W);              \
            for (ptrdiff_t q = 0; q < ntiles; ++q) {                          \
                int mr = fl_tile_rows(rows, ntiles, q);                       \
                bk.dzn = bk.K ? a->dz + (tn * B + b) * W4 : NULL;             \
                bk.dh = a->dh + b * Up + p0 * W;                              \
                bk.dc = a->dc + b * Up + p0 * W;                              \
                bk.dy = a->dy != NULL ? a->dy + b * Up + p0 * W : NULL;       \
                bk.rec = NULL;                                                \
                if (s >= 0) {                                                 \
                    bk.rec = a->rec + (s + 1) * slot + b * G6 + p0 * W6;      \
                    bk.cprev = bk.rec - slot;                                 \
                    bk.dseq = a->dseq != NULL                                 \
                        ? a->dseq + (b * T_ + s) * a->U + p0 * W : NULL;      \
                    bk.mask = a->mask != NULL ? a->mask + b * T_ + t : NULL;  \
                    bk.dz = a->dz + p0 * bk.zstride + (t * B + b) * W4;       \
                }                                                             \
                a->back(mr, &bk);                                             \
                b += mr;                                                      \
            }                                                                 \
        }                                                                     \
    }                                                                         \
}                                                                             \
                                                                              \
/* The weight gradients of blocks [p0, p1): dkernel = x^T dz, drk = h^T dz \
 * (h entering each step) and dbias = the column sums of dz.  The sums run  \
 * over chunks of kc rows: a chunk of a block's panel stays in L1 while     \
 * every row of the output passes over it, and the chunk's rows of x and h  \
 * stay in L2 for every block. */                                             \
static void fl_train_weights_##SUF(const fl_train_##SUF *a, ptrdiff_t p0,     \
                                   ptrdiff_t p1)                              \
{                                                                             \
    const ptrdiff_t BT = a->B * a->T_, I = a->n_in, U = a->U;                 \
    const ptrdiff_t ldx = a->ldx, ldh = a->ldh, W4 = 4 * a->W, G4 = 4 * a->Up; \
    const ptrdiff_t kc = (16384 / (ptrdiff_t)sizeof(T)) / W4;   /* 16 KiB */  \
    const T *hin = a->hs + (a->backwards ? a->B * ldh : 0);                   \
    const ptrdiff_t ti = (I + a->MR - 1) / a->MR, tu = (U + a->MR - 1) / a->MR; \
    fl_proj_##SUF xt;    /* out[r] (+)= sum_k x[k * ldk + r] * dz[k] */       \
    xt.ldx = 1;                                                               \
    xt.ldo = xt.ldb = G4;                                                     \
    for (ptrdiff_t k0 = 0; k0 < BT; k0 += kc) {                               \
        xt.n_in = BT - k0 < kc ? BT - k0 : kc;                                \
        for (ptrdiff_t p = p0; p < p1; ++p) {                                 \
            ptrdiff_t i0 = 0, u0 = 0;                                         \
            xt.kp = a->dz + (p * BT + k0) * W4;                               \
            xt.ldk = ldx;                                                     \
            for (ptrdiff_t q = 0; q < ti; ++q) {                              \
                int mr = fl_tile_rows(I, ti, q);                              \
                xt.x = a->x + k0 * ldx + i0;                                  \
                xt.out = a->dkernel + i0 * G4 + p * W4;                       \
                xt.bias = k0 > 0 ? xt.out : NULL;     /* accumulate */        \
                a->proj(mr, &xt);                                             \
                i0 += mr;                                                     \
            }                                                                 \
            xt.ldk = ldh;                                                     \
            for (ptrdiff_t q = 0; q < tu; ++q) {                              \
                int mr = fl_tile_rows(U, tu, q);                              \
                xt.x = hin + k0 * ldh + u0;                                   \
                xt.out = a->drk + u0 * G4 + p * W4;                           \
                xt.bias = k0 > 0 ? xt.out : NULL;                             \
                a->proj(mr, &xt);                                             \
                u0 += mr;                                                     \
            }                                                                 \
        }                                                                     \
    }                                                                         \
    for (ptrdiff_t p = p0; p < p1; ++p) {                                     \
        const T *pan = a->dz + p * BT * W4;                                   \
        T *db = a->dbias + p * W4;                                            \
        memset(db, 0, W4 * sizeof(T));                                        \
        for (ptrdiff_t n = 0; n < BT; ++n)                                    \
            for (ptrdiff_t j = 0; j < W4; ++j)                                \
                db[j] += pan[n * W4 + j];                                     \
    }                                                                         \
}                                                                             \
                                                                              \
/* dL/dx of rows [r0, r1) (row t * B + b) = dz @ kernel^T: the product half  \
 * of the backward tile, over groups of 4 blocks of W features. */            \
static void fl_train_dx_rows_##SUF(const fl_train_##SUF *a, ptrdiff_t r0,     \
                                   ptrdiff_t r1)                              \
{                                                                             \
    const ptrdiff_t BT = a->B * a->T_, W4 = 4 * a->W, G4 = 4 * a->Up;         \
    const ptrdiff_t nbx = (a->n_in + a->W - 1) / a->W, ldo = nbx * a->W;      \
    const ptrdiff_t rows = r1 - r0, ntiles = (rows + a->MR - 1) / a->MR;      \
    fl_back_##SUF bk;                                                         \
    bk.K = G4; bk.ldz = W4; bk.zstride = BT * W4; bk.lds = ldo; bk.rec = NULL; \
    for (ptrdiff_t p0 = 0; p0 < nbx; p0 += 4) {                               \
        ptrdiff_t b = r0;                                                     \
        bk.rt = a->kt + (p0 / 4) * G4 * W4;                                   \
        bk.nblk = (int)(nbx - p0 < 4 ? nbx - p0 : 4);                         \
        for (ptrdiff_t q = 0; q < ntiles; ++q) {                              \
            int mr = fl_tile_rows(rows, ntiles, q);                           \
            bk.dzn = a->dz + b * W4;                                          \
            bk.dh = a->dx + b * ldo + p0 * a->W;                              \
            a->back(mr, &bk);                                                 \
            b += mr;                                                          \
        }                                                                     \
    }                                                                         \
}                                                                             \
                                                                              \
/* One pass as a job for fl_pool_run: the `total` rows (FL_TRAIN_FORWARD,    \
 * _BACKWARD, _DX) or blocks (FL_TRAIN_WEIGHTS) are cut into `parts` groups,  \
 * each claimed whole by one thread; a group's arithmetic does not depend on \
 * who runs it. */                                                            \
typedef struct {                                                              \
    const fl_train_##SUF *a;                                                  \
    int pass;                                                                 \
    ptrdiff_t total, parts;                                                   \
    ptrdiff_t next;           /* groups claimed so far */                     \
} fl_train_job_##SUF;                                                         \
                                                                              \
static void fl_train_job_fn_##SUF(void *ctx, int slot)                        \
{                                                                             \
    fl_train_job_##SUF *j = (fl_train_job_##SUF *)ctx;                        \
    ptrdiff_t g;                                                              \
    (void)slot;                                                               \
    while ((g = FL_ADD(&j->next, 1) - 1) < j->parts) {                        \
        ptrdiff_t i0 = j->total * g / j->parts;                               \
        ptrdiff_t i1 = j->total * (g + 1) / j->parts;                         \
        switch (j->pass) {                                                    \
        case FL_TRAIN_FORWARD: fl_train_forward_rows_##SUF(j->a, i0, i1); break; \
        case FL_TRAIN_BACKWARD: fl_train_backward_rows_##SUF(j->a, i0, i1); break; \
        case FL_TRAIN_WEIGHTS: fl_train_weights_##SUF(j->a, i0, i1); break;   \
        default: fl_train_dx_rows_##SUF(j->a, i0, i1); break;                 \
        }                                                                     \
    }                                                                         \
}                                                                             \
                                                                              \
/* Pass `pass` on up to nt threads. */                                        \
static void fl_train_run_##SUF(const fl_train_##SUF *a, int pass, int nt)     \
{                                                                             \
    fl_train_job_##SUF job;                                                   \
    job.a = a;                                                                \
    job.pass = pass;                                                          \
    job.total = pass == FL_TRAIN_WEIGHTS ? a->NB                              \
              : pass == FL_TRAIN_DX ? a->B * a->T_ : a->B;                    \
    job.parts = nt;                                                           \
    job.next = 0;                                                             \
    fl_pool_run(fl_train_job_fn_##SUF, &job, nt);                             \
}

enum { FL_TRAIN_FORWARD, FL_TRAIN_BACKWARD, FL_TRAIN_WEIGHTS, FL_TRAIN_DX };
FL_DEFINE_TRAIN_LAYER(float, f32)
FL_DEFINE_TRAIN_LAYER(double, f64)
#undef FL_DEFINE_TRAIN_LAYER

/* The tiles of instruction set `isa` (its packed layout: W, MR). */
static void fl_train_pick_f32(fl_train_f32 *a, int isa)
{
    a->tile = fl_tile_portable_f32;
    a->proj = fl_proj_portable_f32;
    a->back = fl_back_portable_f32;
#if FL_HAVE_X86
    if (isa == FL_ISA_AVX512) {
        a->tile = fl_tile_avx512;
        a->proj = fl_proj_avx512;
        a->back = fl_back_avx512;
    } else if (isa == FL_ISA_AVX2) {
        a->tile = fl_tile_avx2;
        a->proj = fl_proj_avx2;
        a->back = fl_back_avx2;
    }
#endif
    (void)isa;
}

static void fl_train_pick_f64(fl_train_f64 *a, int isa)
{
    a->tile = fl_tile_portable_f64;
    a->proj = fl_proj_portable_f64;
    a->back = fl_back_portable_f64;
    (void)isa;
}

#endif /* FASTLSTM_LSTM_TRAIN_H */
