/* Training on the packed weights: the forward pass that keeps a record of
 * every step, backpropagation through time, the weight gradients and dL/dx;
 * the entries of train.h.
 */
#include <stdlib.h>
#include <string.h>
#include "cancel.h"
#include "forward.h"
#include "isa.h"
#include "lengths.h"
#include "plan.h"
#include "pool.h"
#include "projection.h"
#include "train.h"

/* Training on the packed weights and the tiles of isa.h's table: the
 * forward step is the inference tile, which also writes a record of the
 * step; the backward step is fl_back.  Both take a group of batch rows
 * through every step; rows are independent, so groups run on separate
 * threads (pool.h) without synchronisation, and a row's arithmetic does
 * not depend on the grouping (the tiles' fixed summation order).  The
 * weight gradients and dL/dx follow as passes of their own, over groups of
 * blocks and of rows.
 *
 * Dropout (Keras's LSTMCell with per-gate masks) runs on the same tiles:
 * each gate block of a product reads its own operand (the tiles' gate
 * strides), x times the gate's input mask (copies made by the caller) and
 * h times the gate's recurrent mask (hm, written here after each step);
 * the backward products take each gate's part times its mask.  Bitwise
 * for any thread count as without dropout.
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
 *   hm   [4][T_ + 1][B][ldh] with recurrent dropout: hs times each gate's
 *                         mask, gate-major so that each gate's h rows lie
 *                         one row stride apart for the weight gradients
 *   x and hs have row strides ldx >= I and ldh >= Up whose byte sizes are
 *   not multiples of 512: the weight gradient tiles read them down columns,
 *   and rows a power of two apart would share a few cache sets.
 *   dz   [NB][T_ * B][4W] dL/d(gate pre-activations), one panel per block
 *                         (row t * B + b: step t, batch row b), padding
 *                         lanes zero; the weight gradients are x^T dz and
 *                         h^T dz (fl_proj tiles reading x and h down their
 *                         columns), blocks split between threads
 * With a projection (P > 0, projection.h), h has H = P features and:
 *   ms   [T_][B][ldh]     m = o * act(c) of step t at row t * B + b (zero
 *                         at a masked step); ldh >= both Up and Pq
 *   dhs  [NPB][T_ * B][4W] dL/dh of each step (zero at a masked one), by
 *                         panels of 4W features: the projection's gradient
 *                         is m^T dhs and dL/dm = dhs @ P_k^T, the product
 *                         half of the backward tile
 */
#define FL_DEFINE_TRAIN_LAYER(T, SUF)                                         \
typedef struct {                                                              \
    ptrdiff_t B, T_, n_in, U, Up, NB, W, MR;                                  \
    ptrdiff_t P, H;     /* projected features (0: none), features of h */     \
    ptrdiff_t ldx, ldh;  /* row strides of x and of hs, c, y (see below) */   \
    ptrdiff_t ldd;      /* row stride of dh and dy (Up, or Hp with P) */      \
    int backwards, act, rec_act;                                              \
    const fl_ops_##SUF *ops;  /* the tiles (isa.h) */                         \
    const T *x;         /* inputs, time-major        [P][T_][B][ldx] */       \
    ptrdiff_t xg;       /* 0 (P = 1), or T_ * B * ldx: x times each gate's    \
                           input dropout mask (P = 4) */                      \
    const T *xmask;     /* those masks [4][B][ldo of dx], or NULL */          \
    const T *hmask;     /* recurrent dropout masks   [4][B][Up], or NULL */   \
    T *hm;              /* h times them: as hs, per gate [4][T_ + 1][B][ldh], \
                           or NULL */                                         \
    const T *kp;        /* packed kernel             [NB][I][4][W] */         \
    const T *bias;      /* packed bias               [NB][4][W] */            \
    const T *r;         /* packed recurrent kernel   [NB][H][4][W] */         \
    const T *rt;        /* packed R^T                [NQ][G4][4][W] */        \
    const T *pk;        /* projection panels [NPB][U][4W] (projection.h) */   \
    const T *pt;        /* P_k^T in panels of 4W units [NQ][Pq][4W] */        \
    T *rec, *hs, *dz;   /* see above */                                       \
    T *ms, *dhs;        /* with P (see above), else NULL */                   \
    T *c;               /* cell                      [B][ldh] */              \
    T *y;               /* the tile's last output [B][ldh], NULL: no mask */  \
    T *yp;              /* with P and a mask: h's last output [B][ldh] */     \
    const unsigned char *mask;  /*                   [B][T_] or NULL */       \
    const ptrdiff_t *lengths;   /* sorted, [B] or NULL (lengths.h) */        \
    const ptrdiff_t *active;    /* rows with step t [T_], with lengths */    \
    const ptrdiff_t *first;     /* first row of each row group [threads + 1], \
                                   with lengths */                            \
    T *seq;             /* outputs, processing order [B][T_][H] or NULL */    \
    T *dh, *dc;         /* carried gradients    [B][ldd], [B][Up] */          \
    T *dy;              /* of the last output [B][ldd], NULL: no mask */      \
    T *dm, *dym;        /* with P: dL/dm [B][Up]; zeros [B][Up] (mask) */     \
    const T *dseq;      /* of the outputs            [B][T_][H] or NULL */    \
    T *dkernel, *drk, *dbias;  /* out, packed columns [I][G4], [H][G4], [G4] */ \
    T *dproj;           /* out with P: P_k's gradient [U][Pq] */              \
    const T *kt;        /* kernel^T in panels of 4W features [NX][G4][4][W] */ \
    T *dx;              /* in: zeros, out: dL/dx [T_ * B][ceil(I / W) * W] */ \
    fl_cancel *cancel;  /* polled at every step, chunk or tile */             \
} fl_train_##SUF;                                                             \
                                                                              \
/* With recurrent dropout: slot `slot` of hm, rows [r0, r1), = h times each \
 * gate's mask (one rounding, as Keras's h * mask). */                        \
static void fl_train_mask_h_##SUF(const fl_train_##SUF *a, ptrdiff_t slot,    \
                                  ptrdiff_t r0, ptrdiff_t r1)                 \
{                                                                             \
    if (a->hm == NULL)                                                        \
        return;                                                               \
    const ptrdiff_t B = a->B, Up = a->Up, ldh = a->ldh;                       \
    for (ptrdiff_t g = 0; g < 4; ++g)                                         \
        for (ptrdiff_t b = r0; b < r1; ++b) {                                 \
            const T *h = a->hs + (slot * B + b) * ldh;                        \
            const T *m = a->hmask + (g * B + b) * Up;                         \
            T *out = a->hm + ((g * (a->T_ + 1) + slot) * B + b) * ldh;        \
            for (ptrdiff_t j = 0; j < Up; ++j)                                \
                out[j] = h[j] * m[j];                                         \
        }                                                                     \
}                                                                             \
                                                                              \
static void fl_train_forward_rows_##SUF(const fl_train_##SUF *a, int thread,  \
                                        ptrdiff_t r0, ptrdiff_t r1)           \
{                                                                             \
    const ptrdiff_t B = a->B, T_ = a->T_, I = a->n_in, ldx = a->ldx, ldh = a->ldh; \
    const ptrdiff_t W4 = 4 * a->W, W6 = 6 * a->W, G6 = a->NB * W6;            \
    const ptrdiff_t slot = B * G6, rows = r1 - r0;                            \
    /* Steps projected at once: their records stay in L2 until stepped. */    \
    ptrdiff_t chunk = ((ptrdiff_t)1 << 19) / (rows * G6 * (ptrdiff_t)sizeof(T)); \
    chunk = chunk < 1 ? 1 : chunk;                                            \
    if (chunk > a->MR)              /* whole tiles of steps along time */     \
        chunk -= chunk % a->MR;                                               \
    fl_tile_##SUF tl;                                                         \
    tl.U = a->H; tl.ldh = ldh; tl.ldc = ldh; tl.ldx = G6; tl.ldr = G6;        \
    tl.ldm = T_; tl.lds = T_ * a->U; tl.act = a->act; tl.rec_act = a->rec_act; \
    tl.ldg = a->hm != NULL ? (T_ + 1) * B * ldh : 0;                          \
    fl_chunk_##SUF ch;                                                        \
    memset(&ch, 0, sizeof ch);                                                \
    ch.ops = a->ops; ch.rows = rows; ch.n_in = I;                             \
    ch.kp = a->kp; ch.bias = a->bias;                                         \
    ch.xb = ldx; ch.xs = a->backwards ? -B * ldx : B * ldx; ch.xg = a->xg;    \
    ch.ob = G6; ch.os = slot; ch.op = W6;                                     \
    ch.lengths = a->lengths != NULL ? a->lengths + r0 : NULL;                 \
    ch.backwards = a->backwards;                                              \
    /* The initial c, in the slot before each row's first step: slot 0, or \
     * with lengths backwards slot T_ - lengths[b]. */                        \
    for (ptrdiff_t b = r0; b < r1; ++b) {                                     \
        ptrdiff_t s0 = a->lengths != NULL && a->backwards ? T_ - a->lengths[b] : 0; \
        for (ptrdiff_t p = 0; p < a->NB; ++p)                                 \
            memcpy(a->rec + s0 * slot + b * G6 + p * W6 + 4 * a->W,           \
                   a->c + b * ldh + p * a->W, a->W * sizeof(T));              \
    }                                                                         \
    fl_train_mask_h_##SUF(a, a->backwards ? T_ : 0, r0, r1);                  \
    for (ptrdiff_t s0 = 0; s0 < T_; s0 += chunk) {                            \
        /* Projection of the chunk's steps into their records' gates. */      \
        ch.steps = T_ - s0 < chunk ? T_ - s0 : chunk;                         \
        ch.x = a->x + ((a->backwards ? T_ - 1 - s0 : s0) * B + r0) * ldx;     \
        ch.out = a->rec + (s0 + 1) * slot + r0 * G6;                          \
        ch.t0 = a->backwards ? T_ - 1 - s0 : s0;                              \
        fl_project_chunk_##SUF(&ch, 0, a->NB);                                \
        ptrdiff_t tc = ch.steps;                                              \
        for (ptrdiff_t s = s0; s < s0 + tc; ++s) {                            \
            if (fl_cancelled(a->cancel, thread))                              \
                return;                                                       \
            ptrdiff_t t = a->backwards ? T_ - 1 - s : s;                      \
            ptrdiff_t prev = a->backwards ? t + 1 : t;                        \
            ptrdiff_t next = a->backwards ? t : t + 1;                        \
            T *hprev = a->hs + prev * B * ldh;                                \
            T *hnext = a->hs + next * B * ldh;                                \
            ptrdiff_t n = fl_rows_at(a->active, t, r0, rows);   /* with step t */ \
            ptrdiff_t ntiles = (n + a->MR - 1) / a->MR;                       \
            for (ptrdiff_t p = 0; p < a->NB; ++p) {                           \
                ptrdiff_t col = p * a->W, b = r0;                             \
                tl.col = col;                                                 \
                tl.r = a->r + p * a->H * W4;                                  \
                tl.nvalid = (int)(a->U - col < a->W ? a->U - col : a->W);     \
                for (ptrdiff_t q = 0; q < ntiles; ++q) {                      \
                    int mr = fl_tile_rows(n, ntiles, q);                      \
                    tl.h = hprev + b * ldh;                                   \
                    tl.hg = a->hm != NULL ? a->hm + (prev * B + b) * ldh : NULL; \
                    /* the tile reads its projection before writing the      \
                     * record over it */                                      \
                    tl.rec = a->rec + (s + 1) * slot + b * G6 + p * W6;       \
                    tl.x = tl.rec;                                            \
                    tl.c = a->c + b * ldh + col;                              \
                    /* with P the tile writes m, projected below */          \
                    tl.hn = (a->P ? a->ms + t * B * ldh : hnext)              \
                        + b * ldh + col;                                      \
                    tl.y = a->y != NULL ? a->y + b * ldh + col : NULL;        \
                    tl.mask = a->mask != NULL ? a->mask + b * T_ + t : NULL;  \
                    tl.seq = a->seq != NULL && !a->P                          \
                        ? a->seq + (b * T_ + s) * a->U + col : NULL;          \
                    a->ops->tile(mr, &tl);                                    \
                    b += mr;                                                  \
                }                                                             \
            }                                                                 \
            if (a->P)                                                         \
                fl_project_##SUF(a->ops, n, a->U, a->P, a->pk,                \
                                 a->ms + (t * B + r0) * ldh, ldh,             \
                                 hprev + r0 * ldh, hnext + r0 * ldh, ldh,     \
                                 a->mask != NULL ? a->mask + r0 * T_ + t : NULL, \
                                 T_, a->yp != NULL ? a->yp + r0 * ldh : NULL, \
                                 a->seq != NULL                               \
                                     ? a->seq + (r0 * T_ + s) * a->P : NULL,  \
                                 T_ * a->P);                                  \
            fl_train_mask_h_##SUF(a, next, r0, r1);                           \
        }                                                                     \
    }                                                                         \
}                                                                             \
                                                                              \
/* Steps in reverse, then (s = -1) the product that gives dL/dh0.  Each  \
 * step's rows fall in three ranges (with lengths, lengths.h): rows with   \
 * steps s and s + 1 (the product dh += dZ(s + 1) R^T, then the cell's     \
 * backward step); rows with step s only (their last step: the cell); rows  \
 * with step s + 1 only (backwards: a row's first step: the product). */   \
static void fl_train_backward_rows_##SUF(const fl_train_##SUF *a, int thread, \
                                         ptrdiff_t r0, ptrdiff_t r1)          \
{                                                                             \
    const ptrdiff_t B = a->B, T_ = a->T_, Up = a->Up, W = a->W;               \
    const ptrdiff_t W4 = 4 * W, W6 = 6 * W, G4 = 4 * Up, G6 = a->NB * W6;     \
    const ptrdiff_t slot = B * G6, rows = r1 - r0;                            \
    fl_back_##SUF bk;                                                         \
    bk.ldz = W4; bk.zstride = T_ * B * W4;                                    \
    bk.lds = Up; bk.ldr = G6; bk.ldq = T_ * a->U; bk.ldm = T_;                \
    bk.act = a->act; bk.rec_act = a->rec_act;                                 \
    bk.ldgm = Up; bk.gmstride = B * Up;                                       \
    for (ptrdiff_t s = T_ - 1; s >= -1; --s) {                                \
        if (fl_cancelled(a->cancel, thread))                                  \
            return;                                                           \
        ptrdiff_t t = a->backwards ? T_ - 1 - s : s;                          \
        ptrdiff_t tn = a->backwards ? t - 1 : t + 1;   /* step s + 1 */       \
        ptrdiff_t cell = s >= 0 ? fl_rows_at(a->active, t, r0, rows) : 0;     \
        ptrdiff_t prod = s + 1 < T_ ? fl_rows_at(a->active, tn, r0, rows) : 0; \
        ptrdiff_t both = cell < prod ? cell : prod;                           \
        for (int range = 0; range < 2; ++range) {                             \
            ptrdiff_t lo = range ? both : 0;                                  \
            ptrdiff_t hi = range ? (cell > prod ? cell : prod) : both;        \
            int has_cell = cell > lo, has_prod = prod > lo;                   \
            ptrdiff_t ntiles = (hi - lo + a->MR - 1) / a->MR;                 \
            bk.K = has_prod ? G4 : 0;                                         \
            for (ptrdiff_t p0 = 0; p0 < a->NB; p0 += 4) {                     \
                ptrdiff_t b = r0 + lo;                                        \
                bk.rt = a->rt + (p0 / 4) * G4 * W4;                           \
                bk.nblk = (int)(a->NB - p0 < 4 ? a->NB - p0 : 4);             \
                ptrdiff_t last = (p0 + bk.nblk - 1) * W;                      \
                bk.nlast = (int)(a->U - last < W ? a->U - last : W);          \
                for (ptrdiff_t q = 0; q < ntiles; ++q) {                      \
                    int mr = fl_tile_rows(hi - lo, ntiles, q);                \
                    bk.dzn = bk.K ? a->dz + (tn * B + b) * W4 : NULL;         \
                    bk.dh = a->dh + b * Up + p0 * W;                          \
                    bk.dc = a->dc + b * Up + p0 * W;                          \
                    bk.dy = a->dy != NULL ? a->dy + b * Up + p0 * W : NULL;   \
                    bk.gmask = a->hmask != NULL ? a->hmask + b * Up + p0 * W : NULL; \
                    bk.rec = NULL;                                            \
                    if (has_cell) {                                           \
                        bk.rec = a->rec + (s + 1) * slot + b * G6 + p0 * W6;  \
                        bk.cprev = bk.rec - slot;                             \
                        bk.dseq = a->dseq != NULL                             \
                            ? a->dseq + (b * T_ + s) * a->U + p0 * W : NULL;  \
                        bk.mask = a->mask != NULL ? a->mask + b * T_ + t : NULL; \
                        bk.dz = a->dz + p0 * bk.zstride + (t * B + b) * W4;   \
                    }                                                         \
                    a->ops->back(mr, &bk);                                    \
                    b += mr;                                                  \
                }                                                             \
            }                                                                 \
        }                                                                     \
    }                                                                         \
}                                                                             \
                                                                              \
/* fl_train_backward_rows with a projection: per step the product gives  \
 * dL/dh (P features) on the rows with step s + 1, then on the rows with   \
 * step s the output's gradient and the mask rules join it at h's level,   \
 * dL/dm = dL/dh @ P_k^T, and the cell's backward step (the backward tile  \
 * without its product) from dL/dm. */                                      \
static void fl_train_backward_lstmp_rows_##SUF(const fl_train_##SUF *a,       \
                                               int thread, ptrdiff_t r0,      \
                                               ptrdiff_t r1)                  \
{                                                                             \
    const ptrdiff_t B = a->B, T_ = a->T_, Up = a->Up, W = a->W, P = a->P;     \
    const ptrdiff_t W4 = 4 * W, W6 = 6 * W, G4 = 4 * Up, G6 = a->NB * W6;     \
    const ptrdiff_t slot = B * G6, rows = r1 - r0, BT = B * T_;               \
    const ptrdiff_t NBh = (P + W - 1) / W, Pq = fl_projected_columns(P, W);   \
    fl_back_##SUF hb, mb, cb;                                                 \
    memset(&hb, 0, sizeof hb);                                                \
    hb.ldz = W4; hb.zstride = BT * W4; hb.lds = a->ldd;   /* dh += dzn R^T */ \
    mb = hb;                                                                  \
    mb.K = Pq; mb.lds = Up;                               /* dm = dh P_k^T */ \
    cb = mb;                                              /* the cell */     \
    cb.K = 0; cb.ldr = G6; cb.ldm = T_; cb.act = a->act; cb.rec_act = a->rec_act; \
    for (ptrdiff_t s = T_ - 1; s >= -1; --s) {                                \
        if (fl_cancelled(a->cancel, thread))                                  \
            return;                                                           \
        ptrdiff_t t = a->backwards ? T_ - 1 - s : s;                          \
        ptrdiff_t tn = a->backwards ? t - 1 : t + 1;   /* step s + 1 */       \
        ptrdiff_t cell = s >= 0 ? fl_rows_at(a->active, t, r0, rows) : 0;     \
        ptrdiff_t prod = s + 1 < T_ ? fl_rows_at(a->active, tn, r0, rows) : 0; \
        ptrdiff_t ntiles = (prod + a->MR - 1) / a->MR;                        \
        hb.K = G4;                                                            \
        for (ptrdiff_t p0 = 0; p0 < NBh && prod > 0; p0 += 4) {               \
            ptrdiff_t b = r0;                                                 \
            hb.rt = a->rt + (p0 / 4) * G4 * W4;                               \
            hb.nblk = (int)(NBh - p0 < 4 ? NBh - p0 : 4);                     \
            for (ptrdiff_t q = 0; q < ntiles; ++q) {                          \
                int mr = fl_tile_rows(prod, ntiles, q);                       \
                hb.dzn = a->dz + (tn * B + b) * W4;                           \
                hb.dh = a->dh + b * a->ldd + p0 * W;                          \
                a->ops->back(mr, &hb);                                        \
                b += mr;                                                      \
            }                                                                 \
        }                                                                     \
        if (s < 0)                                                            \
            break;                                                            \
        ntiles = (cell + a->MR - 1) / a->MR;                                  \
        for (ptrdiff_t b = r0; b < r0 + cell; ++b) {                          \
            T *g = a->dh + b * a->ldd;                                        \
            const T *ext = a->dseq != NULL ? a->dseq + (b * T_ + s) * P : NULL; \
            int keep = a->mask == NULL || a->mask[b * T_ + t];                \
            if (a->mask != NULL) {  /* as the tile's dy: see fl_back */      \
                T *dy = a->dy + b * a->ldd;                                   \
                for (ptrdiff_t j = 0; ext != NULL && j < P; ++j)              \
                    dy[j] += ext[j];                                          \
                for (ptrdiff_t j = 0; keep && j < P; ++j) {                   \
                    g[j] += dy[j];                                            \
                    dy[j] = 0;                                                \
                }                                                             \
            } else {                                                          \
                for (ptrdiff_t j = 0; ext != NULL && j < P; ++j)              \
                    g[j] += ext[j];                                           \
            }                                                                 \
            for (ptrdiff_t j0 = 0; j0 < P; j0 += W4) {                        \
                T *row = a->dhs + (j0 / W4) * BT * W4 + (t * B + b) * W4;    \
                ptrdiff_t n = P - j0 < W4 ? P - j0 : W4;                      \
                if (keep)                                                     \
                    memcpy(row, g + j0, n * sizeof(T));                       \
                else                                                          \
                    memset(row, 0, n * sizeof(T));                            \
            }                                                                 \
            if (keep)   /* the next dh comes whole from the product */        \
                memset(g, 0, P * sizeof(T));                                  \
            memset(a->dm + b * Up, 0, Up * sizeof(T));                        \
        }                                                                     \
        for (ptrdiff_t p0 = 0; p0 < a->NB; p0 += 4) {                         \
            ptrdiff_t b = r0;                                                 \
            mb.rt = a->pt + (p0 / 4) * Pq * W4;                               \
            mb.nblk = cb.nblk = (int)(a->NB - p0 < 4 ? a->NB - p0 : 4);       \
            ptrdiff_t last = (p0 + cb.nblk - 1) * W;                          \
            cb.nlast = (int)(a->U - last < W ? a->U - last : W);              \
            for (ptrdiff_t q = 0; q < ntiles; ++q) {                          \
                int mr = fl_tile_rows(cell, ntiles, q);                       \
                mb.dzn = a->dhs + (t * B + b) * W4;                           \
                mb.dh = cb.dh = a->dm + b * Up + p0 * W;                      \
                a->ops->back(mr, &mb);                                        \
                cb.dc = a->dc + b * Up + p0 * W;                              \
                cb.dy = a->dym != NULL ? a->dym + b * Up + p0 * W : NULL;     \
                cb.rec = a->rec + (s + 1) * slot + b * G6 + p0 * W6;          \
                cb.cprev = cb.rec - slot;                                     \
                cb.mask = a->mask != NULL ? a->mask + b * T_ + t : NULL;      \
                cb.dz = a->dz + p0 * cb.zstride + (t * B + b) * W4;           \
                a->ops->back(mr, &cb);                                        \
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
 * stay in L2 for every block.  With a projection, blocks NB .. NB+NPB-1 are \
 * its panels: dproj = m^T dhs. */                                            \
static void fl_train_weights_##SUF(const fl_train_##SUF *a, int thread,       \
                                   ptrdiff_t p0, ptrdiff_t p1)                \
{                                                                             \
    const ptrdiff_t BT = a->B * a->T_, I = a->n_in, U = a->U;                 \
    const ptrdiff_t ldx = a->ldx, ldh = a->ldh, W4 = 4 * a->W, G4 = 4 * a->Up; \
    const ptrdiff_t kc = (16384 / (ptrdiff_t)sizeof(T)) / W4;   /* 16 KiB */  \
    /* with dropout, per gate: x and h times the gate's masks */             \
    const T *hin = (a->hm != NULL ? a->hm : a->hs) + (a->backwards ? a->B * ldh : 0); \
    const ptrdiff_t hg = a->hm != NULL ? (a->T_ + 1) * a->B * ldh : 0;        \
    const ptrdiff_t ti = (I + a->MR - 1) / a->MR, tu = (U + a->MR - 1) / a->MR; \
    const ptrdiff_t th = (a->H + a->MR - 1) / a->MR;                          \
    const ptrdiff_t Pq = fl_projected_columns(a->P, a->W);                    \
    fl_proj_##SUF xt;    /* out[r] (+)= sum_k x[k * ldk + r] * dz[k] */       \
    xt.ldx = 1;                                                               \
    xt.ldo = xt.ldb = G4;                                                     \
    /* The rows (t * B + b) that have a step: all, or with lengths each      \
     * step's leading rows; the sums skip the others (their dz is not        \
     * written). */                                                           \
    int started = 0;                                                          \
    for (ptrdiff_t t = 0; t < (a->active != NULL ? a->T_ : 1); ++t)           \
    for (ptrdiff_t k0 = a->active != NULL ? t * a->B : 0,                     \
             k1 = a->active != NULL ? k0 + a->active[t] : BT;                 \
         k0 < k1; k0 += kc, started = 1) {                                    \
        if (fl_cancelled(a->cancel, thread))                                  \
            return;                                                           \
        xt.n_in = k1 - k0 < kc ? k1 - k0 : kc;                                \
        for (ptrdiff_t p = p0; p < p1; ++p) {                                 \
            ptrdiff_t i0 = 0, u0 = 0;                                         \
            if (p >= a->NB) {           /* a projection panel */              \
                ptrdiff_t pb = p - a->NB;                                     \
                xt.kp = a->dhs + (pb * BT + k0) * W4;                         \
                xt.ldk = ldh;                                                 \
                xt.ldg = 0;                                                   \
                xt.ldo = xt.ldb = Pq;                                         \
                for (ptrdiff_t q = 0; q < tu; ++q) {                          \
                    int mr = fl_tile_rows(U, tu, q);                          \
                    xt.x = a->ms + k0 * ldh + u0;                             \
                    xt.out = a->dproj + u0 * Pq + pb * W4;                    \
                    xt.bias = started ? xt.out : NULL;                        \
                    a->ops->proj(mr, &xt);                                    \
                    u0 += mr;                                                 \
                }                                                             \
                continue;                                                     \
            }                                                                 \
            xt.ldo = xt.ldb = G4;                                             \
            xt.kp = a->dz + (p * BT + k0) * W4;                               \
            xt.ldk = ldx;                                                     \
            xt.ldg = a->xg;                                                   \
            for (ptrdiff_t q = 0; q < ti; ++q) {                              \
                int mr = fl_tile_rows(I, ti, q);                              \
                xt.x = a->x + k0 * ldx + i0;                                  \
                xt.out = a->dkernel + i0 * G4 + p * W4;                       \
                xt.bias = started ? xt.out : NULL;     /* accumulate */       \
                a->ops->proj(mr, &xt);                                        \
                i0 += mr;                                                     \
            }                                                                 \
            xt.ldk = ldh;                                                     \
            xt.ldg = hg;                                                      \
            for (ptrdiff_t q = 0; q < th; ++q) {                              \
                int mr = fl_tile_rows(a->H, th, q);                           \
                xt.x = hin + k0 * ldh + u0;                                   \
                xt.out = a->drk + u0 * G4 + p * W4;                           \
                xt.bias = started ? xt.out : NULL;                            \
                a->ops->proj(mr, &xt);                                        \
                u0 += mr;                                                     \
            }                                                                 \
        }                                                                     \
    }                                                                         \
    for (ptrdiff_t p = p0; p < p1 && p < a->NB; ++p) {                        \
        const T *pan = a->dz + p * BT * W4;                                   \
        T *db = a->dbias + p * W4;                                            \
        memset(db, 0, W4 * sizeof(T));                                        \
        if (!started) {              /* no row has a step: no gradient */     \
            for (ptrdiff_t i = 0; i < I; ++i)                                 \
                memset(a->dkernel + i * G4 + p * W4, 0, W4 * sizeof(T));      \
            for (ptrdiff_t u = 0; u < U; ++u)                                 \
                memset(a->drk + u * G4 + p * W4, 0, W4 * sizeof(T));          \
        }                                                                     \
        for (ptrdiff_t n = 0; n < BT; ++n)                                    \
            if (a->active == NULL || n % a->B < a->active[n / a->B])          \
                for (ptrdiff_t j = 0; j < W4; ++j)                            \
                    db[j] += pan[n * W4 + j];                                 \
    }                                                                         \
}                                                                             \
                                                                              \
/* dL/dx of rows [r0, r1) (row t * B + b) = dz @ kernel^T: the product half  \
 * of the backward tile, over groups of 4 blocks of W features.  With input \
 * dropout masks (per batch row) the tiles stop at each step's last row. */  \
static void fl_train_dx_span_##SUF(const fl_train_##SUF *a, int thread,       \
                                   ptrdiff_t r0, ptrdiff_t r1)                \
{                                                                             \
    const ptrdiff_t B = a->B, BT = B * a->T_, W4 = 4 * a->W, G4 = 4 * a->Up;  \
    const ptrdiff_t nbx = (a->n_in + a->W - 1) / a->W, ldo = nbx * a->W;      \
    fl_back_##SUF bk;                                                         \
    memset(&bk, 0, sizeof bk);                                                \
    bk.K = G4; bk.ldz = W4; bk.zstride = BT * W4; bk.lds = ldo; bk.rec = NULL; \
    bk.ldgm = ldo; bk.gmstride = B * ldo;                                     \
    for (ptrdiff_t p0 = 0; p0 < nbx; p0 += 4) {                               \
        bk.rt = a->kt + (p0 / 4) * G4 * W4;                                   \
        bk.nblk = (int)(nbx - p0 < 4 ? nbx - p0 : 4);                         \
        for (ptrdiff_t n0 = r0; n0 < r1; ) {                                  \
            ptrdiff_t n1 = a->xmask != NULL && (n0 / B + 1) * B < r1          \
                ? (n0 / B + 1) * B : r1;                                      \
            ptrdiff_t rows = n1 - n0, ntiles = (rows + a->MR - 1) / a->MR;    \
            ptrdiff_t b = n0;                                                 \
            for (ptrdiff_t q = 0; q < ntiles; ++q) {                          \
                if (fl_cancelled(a->cancel, thread))                          \
                    return;                                                   \
                int mr = fl_tile_rows(rows, ntiles, q);                       \
                bk.dzn = a->dz + b * W4;                                      \
                bk.dh = a->dx + b * ldo + p0 * a->W;                          \
                bk.gmask = a->xmask != NULL                                   \
                    ? a->xmask + (b % B) * ldo + p0 * a->W : NULL;            \
                a->ops->back(mr, &bk);                                        \
                b += mr;                                                      \
            }                                                                 \
            n0 = n1;                                                          \
        }                                                                     \
    }                                                                         \
}                                                                             \
                                                                              \
/* dL/dx of rows [i0, i1), or with lengths of the rows that have steps     \
 * [i0, i1) (the others' dL/dx stays zero). */                                \
static void fl_train_dx_rows_##SUF(const fl_train_##SUF *a, int thread,       \
                                   ptrdiff_t i0, ptrdiff_t i1)                \
{                                                                             \
    if (a->active == NULL)                                                    \
        fl_train_dx_span_##SUF(a, thread, i0, i1);                            \
    else                                                                      \
        for (ptrdiff_t t = i0; t < i1; ++t)                                   \
            fl_train_dx_span_##SUF(a, thread, t * a->B, t * a->B + a->active[t]); \
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
    const ptrdiff_t *first;   /* [parts + 1] the groups' first rows, or NULL: \
                                 total * g / parts */                         \
    ptrdiff_t next;           /* groups claimed so far */                     \
} fl_train_job_##SUF;                                                         \
                                                                              \
static void fl_train_job_fn_##SUF(void *ctx, int slot)                        \
{                                                                             \
    fl_train_job_##SUF *j = (fl_train_job_##SUF *)ctx;                        \
    ptrdiff_t g;                                                              \
    while ((g = FL_ADD(&j->next, 1) - 1) < j->parts) {                        \
        ptrdiff_t i0 = j->first ? j->first[g] : j->total * g / j->parts;      \
        ptrdiff_t i1 = j->first ? j->first[g + 1] : j->total * (g + 1) / j->parts; \
        switch (j->pass) {                                                    \
        case FL_TRAIN_FORWARD: fl_train_forward_rows_##SUF(j->a, slot, i0, i1); break; \
        case FL_TRAIN_BACKWARD:                                               \
            if (j->a->P)                                                      \
                fl_train_backward_lstmp_rows_##SUF(j->a, slot, i0, i1);       \
            else                                                              \
                fl_train_backward_rows_##SUF(j->a, slot, i0, i1);             \
            break;                                                            \
        case FL_TRAIN_WEIGHTS: fl_train_weights_##SUF(j->a, slot, i0, i1); break; \
        default: fl_train_dx_rows_##SUF(j->a, slot, i0, i1); break;           \
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
    job.total = pass == FL_TRAIN_WEIGHTS                                      \
                  ? a->NB + fl_projected_columns(a->P, a->W) / (4 * a->W)     \
              : pass != FL_TRAIN_DX ? a->B                                    \
              : a->active != NULL ? a->T_ : a->B * a->T_;                     \
    job.parts = nt;                                                           \
    job.first = NULL;                                                         \
    if (a->first != NULL && pass != FL_TRAIN_WEIGHTS && pass != FL_TRAIN_DX)  \
        job.first = a->first;      /* row groups of near-equal steps */       \
    else if (a->active != NULL && pass == FL_TRAIN_DX)                        \
        job.parts = 4 * nt < a->T_ ? 4 * nt : a->T_;   /* steps: later ones \
                                                          have fewer rows */  \
    job.next = 0;                                                             \
    fl_pool_run(fl_train_job_fn_##SUF, &job, nt);                             \
}

enum { FL_TRAIN_FORWARD, FL_TRAIN_BACKWARD, FL_TRAIN_WEIGHTS, FL_TRAIN_DX };

FL_DEFINE_TRAIN_LAYER(float, f32)
FL_DEFINE_TRAIN_LAYER(double, f64)
#undef FL_DEFINE_TRAIN_LAYER

/* [B][U] rows into [B][Up] rows (the padding is left alone), and back. */
#define FL_DEFINE_PAD(T, SUF)                                                 \
static void fl_pad_rows_##SUF(T *dst, const T *src, ptrdiff_t B, ptrdiff_t U, \
                              ptrdiff_t Up)                                   \
{                                                                             \
    for (ptrdiff_t b = 0; b < B; ++b)                                         \
        memcpy(dst + b * Up, src + b * U, U * sizeof(T));                     \
}                                                                             \
                                                                              \
static void fl_unpad_rows_##SUF(T *dst, const T *src, ptrdiff_t B,            \
                                ptrdiff_t U, ptrdiff_t Up)                    \
{                                                                             \
    for (ptrdiff_t b = 0; b < B; ++b)                                         \
        memcpy(dst + b * U, src + b * Up, U * sizeof(T));                     \
}

FL_DEFINE_PAD(float, f32)
FL_DEFINE_PAD(double, f64)
#undef FL_DEFINE_PAD

/* The entries of one dtype (train.h). */
#define FL_DEFINE_TRAIN_ENTRIES(T, SUF)                                       \
int fl_train_forward_##SUF(const T *x, ptrdiff_t ldx, int x_gates,           \
                           const T *kernel, const T *bias, const T *recurrent, \
                           const T *projection, ptrdiff_t P,                  \
                           T *h, T *c, T *y, const unsigned char *mask,       \
                           const ptrdiff_t *lengths,                          \
                           const T *hmask, T *seq, T *rec, T *hs, T *hm,      \
                           T *ms, ptrdiff_t ldh, ptrdiff_t B, ptrdiff_t T_,   \
                           ptrdiff_t n_in, ptrdiff_t U, int isa, int backwards, \
                           int act, int rec_act, int threads,                 \
                           int (*poll)(void *), void *poll_ctx)               \
{                                                                             \
    const fl_ops_##SUF *ops = fl_ops_##SUF##_of(isa);                         \
    const ptrdiff_t W = ops->width, NB = (U + W - 1) / W, H = P ? P : U;      \
    int split_units;                                                          \
    int nt = fl_plan(FL_PLAN_TRAIN, B, T_, n_in, U, NB, threads, &split_units); \
    /* Padding lanes are computed (and discarded) too: start them at zero. */ \
    /* c, the tile's last output (mask), h's last output (mask and P) */     \
    ptrdiff_t nbuf = 1 + (mask != NULL) * (1 + (P != 0));                     \
    T *cbuf = (T *)calloc(nbuf * B * ldh, sizeof(T));                         \
    ptrdiff_t *counts = NULL;                                                 \
    if (lengths != NULL)                                                      \
        counts = (ptrdiff_t *)malloc((T_ + nt + 1) * sizeof(ptrdiff_t));      \
    if (cbuf == NULL || (lengths != NULL && counts == NULL)) {                \
        free(cbuf);                                                           \
        return -1;                                                            \
    }                                                                         \
    T *ybuf = mask != NULL ? cbuf + B * ldh : NULL;                           \
    T *ypbuf = mask != NULL && P ? cbuf + 2 * B * ldh : NULL;                 \
    T *h0 = hs + (backwards ? T_ : 0) * B * ldh;                              \
    memset(h0, 0, B * ldh * sizeof(T));                                       \
    fl_pad_rows_##SUF(h0, h, B, H, ldh);                                      \
    fl_pad_rows_##SUF(cbuf, c, B, U, ldh);                                    \
    if (ypbuf != NULL)                                                        \
        fl_pad_rows_##SUF(ypbuf, y, B, P, ldh);                               \
    if (lengths != NULL) {                                                    \
        fl_active_rows(lengths, B, T_, counts);                               \
        fl_row_groups(lengths, B, nt, counts + T_);                           \
        /* Backwards, a row's first step t = lengths[b] - 1 reads h0 from   \
         * slot lengths[b]. */                                                \
        for (ptrdiff_t b = 0; backwards && b < B; ++b)                        \
            if (lengths[b] < T_)                                              \
                memcpy(hs + (lengths[b] * B + b) * ldh, h0 + b * ldh,         \
                       ldh * sizeof(T));                                      \
    }                                                                         \
    fl_train_##SUF a;                                                         \
    memset(&a, 0, sizeof a);                                                  \
    a.B = B; a.T_ = T_; a.n_in = n_in; a.U = U; a.Up = NB * W; a.NB = NB;     \
    a.W = W; a.MR = ops->rows; a.ldx = ldx; a.ldh = ldh; a.P = P; a.H = H;    \
    a.backwards = backwards; a.act = act; a.rec_act = rec_act; a.ops = ops;   \
    a.x = x; a.kp = kernel; a.bias = bias; a.r = recurrent; a.pk = projection; \
    a.xg = x_gates > 1 ? T_ * B * ldx : 0; a.hmask = hmask; a.hm = hm;        \
    a.rec = rec; a.hs = hs; a.ms = ms; a.c = cbuf; a.y = ybuf; a.yp = ypbuf;  \
    a.mask = mask; a.seq = seq;                                               \
    a.lengths = lengths;                                                      \
    a.active = counts;                                                        \
    a.first = counts != NULL ? counts + T_ : NULL;                            \
    fl_cancel cancel = fl_cancel_start(poll, poll_ctx);                       \
    a.cancel = &cancel;                                                       \
    fl_train_run_##SUF(&a, FL_TRAIN_FORWARD, nt);                             \
    free(counts);                                                             \
    if (cancel.stop) {     /* the caller's state stays as it was */           \
        free(cbuf);                                                           \
        return FL_CANCELLED;                                                  \
    }                                                                         \
    for (ptrdiff_t b = 0; b < B; ++b) {   /* h after each row's last step */  \
        ptrdiff_t last = backwards ? 0 : lengths != NULL ? lengths[b] : T_;   \
        memcpy(h + b * H, hs + (last * B + b) * ldh, H * sizeof(T));          \
    }                                                                         \
    fl_unpad_rows_##SUF(c, cbuf, B, U, ldh);                                  \
    if (ybuf != NULL)                                                         \
        fl_unpad_rows_##SUF(y, P ? ypbuf : ybuf, B, H, ldh);                  \
    free(cbuf);                                                               \
    return 0;                                                                 \
}                                                                             \
                                                                              \
int fl_train_backward_##SUF(const T *x, ptrdiff_t ldx, int x_gates,          \
                            const T *xmask, const T *kernel_t,                \
                            const T *recurrent_t, const T *projection_t,      \
                            ptrdiff_t P, const T *rec, const T *hs,           \
                            const T *hmask, const T *hm, const T *ms,         \
                            ptrdiff_t ldh, T *dz, T *dhs,                     \
                            const unsigned char *mask,                        \
                            const ptrdiff_t *lengths,                         \
                            const T *dseq, T *dh, T *dc, const T *dy, T *dx,  \
                            T *dkernel, T *drk, T *dproj, T *dbias,           \
                            ptrdiff_t B, ptrdiff_t T_, ptrdiff_t n_in,        \
                            ptrdiff_t U, int isa,                             \
                            int backwards, int act, int rec_act, int threads, \
                            int (*poll)(void *), void *poll_ctx)              \
{                                                                             \
    const fl_ops_##SUF *ops = fl_ops_##SUF##_of(isa);                         \
    const ptrdiff_t W = ops->width, NB = (U + W - 1) / W, Up = NB * W;        \
    const ptrdiff_t H = P ? P : U, ldd = (H + W - 1) / W * W;                 \
    int split_units;                                                          \
    int nt = fl_plan(FL_PLAN_TRAIN, B, T_, n_in, U, NB, threads, &split_units); \
    /* dh, dy [B][ldd], dc [B][Up]; with P dm, dym [B][Up] */                \
    T *buf = (T *)calloc(B * (2 * ldd + Up + (P != 0) * 2 * Up), sizeof(T));  \
    ptrdiff_t *counts = NULL;                                                 \
    if (lengths != NULL)                                                      \
        counts = (ptrdiff_t *)malloc((T_ + nt + 1) * sizeof(ptrdiff_t));      \
    if (buf == NULL || (lengths != NULL && counts == NULL)) {                 \
        free(buf);                                                            \
        return -1;                                                            \
    }                                                                         \
    if (lengths != NULL) {                                                    \
        fl_active_rows(lengths, B, T_, counts);                               \
        fl_row_groups(lengths, B, nt, counts + T_);                           \
    }                                                                         \
    T *dhp = buf, *dcp = buf + B * ldd;                                       \
    T *dyp = mask != NULL ? dcp + B * Up : NULL;                              \
    fl_pad_rows_##SUF(dhp, dh, B, H, ldd);                                    \
    fl_pad_rows_##SUF(dcp, dc, B, U, Up);                                     \
    if (dyp != NULL) {                                                        \
        fl_pad_rows_##SUF(dyp, dy, B, H, ldd);                                \
    } else {        /* without a mask the last output is the final h */      \
        for (ptrdiff_t b = 0; b < B; ++b)                                     \
            for (ptrdiff_t j = 0; j < H; ++j)                                 \
                dhp[b * ldd + j] += dy[b * H + j];                            \
    }                                                                         \
    if (P)    /* its padding columns stay zero */                             \
        memset(dhs, 0, fl_projected_columns(P, W) * B * T_ * sizeof(T));     \
    fl_train_##SUF a;                                                         \
    memset(&a, 0, sizeof a);                                                  \
    a.B = B; a.T_ = T_; a.n_in = n_in; a.U = U; a.Up = Up; a.NB = NB;         \
    a.W = W; a.MR = ops->rows; a.ldx = ldx; a.ldh = ldh; a.ldd = ldd;         \
    a.P = P; a.H = H;                                                         \
    a.backwards = backwards; a.act = act; a.rec_act = rec_act; a.ops = ops;   \
    a.x = x; a.rt = recurrent_t; a.rec = (T *)rec; a.hs = (T *)hs; a.dz = dz; \
    a.pt = projection_t; a.ms = (T *)ms; a.dhs = dhs; a.dproj = dproj;        \
    a.dm = P ? dcp + B * Up + B * ldd : NULL;                                 \
    a.dym = P && mask != NULL ? a.dm + B * Up : NULL;                         \
    a.xg = x_gates > 1 ? T_ * B * ldx : 0; a.xmask = xmask;                   \
    a.hmask = hmask; a.hm = (T *)hm;                                          \
    a.mask = mask; a.dh = dhp; a.dc = dcp; a.dy = dyp; a.dseq = dseq;         \
    a.dkernel = dkernel; a.drk = drk; a.dbias = dbias; a.kt = kernel_t;       \
    a.dx = dx;                                                                \
    a.lengths = lengths;                                                      \
    a.active = counts;                                                        \
    a.first = counts != NULL ? counts + T_ : NULL;                            \
    fl_cancel cancel = fl_cancel_start(poll, poll_ctx);                       \
    a.cancel = &cancel;                                                       \
    fl_train_run_##SUF(&a, FL_TRAIN_BACKWARD, nt);                            \
    if (!cancel.stop)                                                         \
        fl_train_run_##SUF(&a, FL_TRAIN_WEIGHTS, nt);                         \
    if (!cancel.stop && dx != NULL)                                           \
        fl_train_run_##SUF(&a, FL_TRAIN_DX, nt);                              \
    free(counts);                                                             \
    if (cancel.stop) {     /* dh and dc stay as they were */                  \
        free(buf);                                                            \
        return FL_CANCELLED;                                                  \
    }                                                                         \
    fl_unpad_rows_##SUF(dh, dhp, B, H, ldd);                                  \
    fl_unpad_rows_##SUF(dc, dcp, B, U, Up);                                   \
    free(buf);                                                                \
    return 0;                                                                 \
}

FL_DEFINE_TRAIN_ENTRIES(float, f32)
FL_DEFINE_TRAIN_ENTRIES(double, f64)
#undef FL_DEFINE_TRAIN_ENTRIES
