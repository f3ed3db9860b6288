/* The inference time loop, run by each thread of a team, and its work
 * sharing; the entries of forward.h.  Plain C: _kernel.pyx owns the memory,
 * pool.c the threads, isa.c the tiles (the packed layout is tiles.h's).
 *
 * Threads share either the batch rows (no synchronisation: rows are
 * independent) or the unit blocks (every block reads all of h_prev, so a
 * step starts when the previous one is done); see fl_layer_job.  Each
 * output value is computed by exactly one tile with a fixed summation
 * order, so results are bitwise identical for any number of threads.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "cancel.h"
#include "forward.h"
#include "isa.h"
#include "lengths.h"
#include "plan.h"
#include "pool.h"
#include "projection.h"

/* Upper bound on the input-projection workspace [B, chunk, 4Up]: it is
 * computed for `chunk` time steps at once, so memory stays bounded for any
 * T, and small enough to stay in L2 between its writes and reads. */
#define FL_WORKSPACE_BYTES (1024 * 1024)

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

/* Work sharing (pool.h: threads join when they can, so work is claimed,
 * never assigned):
 *   rows:  the batch is cut into `parts` row groups; a thread claims a whole
 *          group (every step of it) from the counter `next`.  With lengths
 *          the groups hold near-equal numbers of steps (lengths.h).
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
 * the others leave at their next step).  It judges every FL_ADAPT_WINDOW
 * steps afresh, since the cores may get busy later in a long call (B=1,
 * T=20000, U=256 on a loaded 2-core machine: 7.7 s with two threads,
 * 0.8 s alone); a window that long outlasts one preemption. */
#define FL_ADAPT_STEPS 8
#define FL_ADAPT_WINDOW 256
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

/* An int8 layer (fl_forward_i8): its weights, tiles and the workspace of
 * quantized rows, NULL in float layers.  int8 layers are float32 layers;
 * the layer macro below is instantiated for double too, where FL_F32's
 * casts are never reached. */
typedef struct {
    const fl_weights_i8 *w;
    const fl_ops_i8 *ops;
    ptrdiff_t K4x, K4h;     /* groups of 4 inputs, of 4 units */
    /* Quantized rows: one buffer per unit range when threads share the
     * units (each range reads every row), else one the rows share. */
    unsigned char *xq;      /* x rows   [buffers][B][chunk][4 * K4x] */
    float *xs;              /* scales   [buffers][B][chunk] */
    unsigned char *hq;      /* h_prev   [buffers][B][4 * K4h] */
    float *hs;              /* scales   [buffers][B] */
} fl_layer_i8;
#define FL_F32(p) ((float *)(void *)(p))

/* The input projection of a chunk (forward.h). */
#define FL_DEFINE_CHUNK(T, SUF)                                               \
void fl_project_chunk_##SUF(const fl_chunk_##SUF *c, ptrdiff_t p0, ptrdiff_t p1) \
{                                                                             \
    const ptrdiff_t W4 = 4 * c->ops->width, MR = c->ops->rows;                \
    int along_time = c->steps >= MR || c->rows < c->steps;                    \
    ptrdiff_t outer = along_time ? c->rows : c->steps;                        \
    fl_proj_##SUF pj;                                                         \
    pj.n_in = c->n_in;                                                        \
    pj.ldk = 1;                                                               \
    pj.ldb = 0;                                                               \
    pj.ldg = c->xg;                                                           \
    pj.ldx = along_time ? c->xs : c->xb;                                      \
    pj.ldo = along_time ? c->os : c->ob;                                      \
    for (ptrdiff_t p = p0; p < p1; ++p) {                                     \
        pj.kp = c->kp + p * c->n_in * W4;                                     \
        pj.bias = c->bias + p * W4;                                           \
        for (ptrdiff_t o = 0; o < outer; ++o) {                               \
            ptrdiff_t i0 = 0, i1 = along_time ? c->steps : c->rows;           \
            if (c->lengths != NULL)     /* only the steps rows have */        \
                fl_chunk_span(c->lengths, c->rows, c->steps, c->t0,           \
                              c->backwards, along_time, o, &i0, &i1);         \
            ptrdiff_t inner = i1 - i0, ptiles = (inner + MR - 1) / MR;        \
            for (ptrdiff_t t = 0; t < ptiles; ++t) {                          \
                int mr = fl_tile_rows(inner, ptiles, t);                      \
                ptrdiff_t b = along_time ? o : i0;                            \
                ptrdiff_t s = along_time ? i0 : o;                            \
                pj.x = c->x + b * c->xb + s * c->xs;                          \
                pj.out = c->out + b * c->ob + s * c->os + p * c->op;          \
                if (c->i8 != NULL) {                                          \
                    fl_proj_i8 p8;                                            \
                    p8.p.q = c->q + b * c->qb + s * c->qs;                    \
                    p8.p.ldq = along_time ? c->qs : c->qb;                    \
                    p8.p.qs = c->qscale + b * c->sb + s * c->ss;              \
                    p8.p.ldqs = along_time ? c->ss : c->sb;                   \
                    p8.p.w = c->w8->kernel_panels + p * c->K4x * 4 * W4;      \
                    p8.p.comp = c->w8->kernel_comp + p * W4;                  \
                    p8.p.ws = c->w8->kernel_scale + p * W4;                   \
                    p8.p.K4 = c->K4x;                                         \
                    p8.bias = FL_F32(pj.bias);                                \
                    p8.out = FL_F32(pj.out);                                  \
                    p8.ldo = pj.ldo;                                          \
                    c->i8->proj(mr, &p8);                                     \
                } else {                                                      \
                    c->ops->proj(mr, &pj);                                    \
                }                                                             \
                i0 += mr;                                                     \
            }                                                                 \
        }                                                                     \
    }                                                                         \
}

FL_DEFINE_CHUNK(float, f32)
FL_DEFINE_CHUNK(double, f64)
#undef FL_DEFINE_CHUNK

/* The whole layer: one job for fl_pool_run.  Time is cut into chunks of
 * `chunk` steps; at a chunk's first step, whoever runs rows r0..r1 of
 * blocks p0..p1 first computes their input projection for the chunk. */
#define FL_DEFINE_LAYER(T, SUF)                                               \
typedef struct {                                                              \
    ptrdiff_t B, T_, n_in, U, Up, NB, W, MR, chunk;                           \
    ptrdiff_t P;       /* projected features (projection.h), 0: none */       \
    ptrdiff_t H, Hs;   /* features of h (P or U), row stride of h and y */    \
    int backwards, act, rec_act;                                              \
    const fl_ops_##SUF *ops;  /* the tiles (isa.h) */                         \
    int split_units;   /* 1: parts are unit ranges; 0: row groups */          \
    int parts;         /* row groups or unit ranges (<= threads asked for) */ \
    fl_sync *sync;     /* shared counters, zeroed */                          \
    fl_owner *owner;   /* [parts] claims of the unit ranges, zeroed */        \
    ptrdiff_t *present; /* [parts] range k's thread has joined, zeroed */     \
    const T *x;        /* inputs                    [B][T_][I] */             \
    const T *kp;       /* packed kernel             [NB][I][4][W] */          \
    const T *bias;     /* packed bias               [NB][4][W] */             \
    const T *r;        /* packed recurrent kernel   [NB][H][4][W] */          \
    const T *pk;       /* projection panels         [NPB][U][4W], or NULL */  \
    T *proj;           /* input projection          [B][chunk][NB*4*W] */     \
                       /* (row stride `chunk` even in a shorter last chunk,   \
                          so one thread's rows never overlap another's) */    \
    T *h;              /* h double buffer           [2][B][Hs] */             \
    T *c;              /* cell                      [B][Up] */                \
    T *y;              /* last output               [B][Hs], NULL: no mask */ \
    T *m;              /* with P: the cell's output [B][Up], and the tile's */ \
    T *ym;             /* last output (unused)      [B][Up], NULL: no mask */ \
    const unsigned char *mask;  /*                  [B][T_] or NULL */        \
    const ptrdiff_t *lengths;   /* sorted           [B] or NULL (lengths.h) */ \
    const ptrdiff_t *active;    /* rows with step t [T_], with lengths */     \
    const ptrdiff_t *first;     /* first row of each row group [parts + 1], \
                                   with lengths; else B * g / parts */        \
    T *seq;            /* outputs                   [B][T_][H] or NULL */     \
    fl_cancel *cancel; /* polled at every step */                             \
    const fl_layer_i8 *i8;     /* int8 weights, or NULL */                    \
} fl_layer_##SUF;                                                             \
                                                                              \
/* Step s (processing order) of rows r0..r1 and blocks p0..p1; an int8      \
 * layer quantizes its rows in buffer `buf` (see fl_layer_i8). */            \
static void fl_layer_step_##SUF(const fl_layer_##SUF *a, ptrdiff_t s,         \
                                ptrdiff_t r0, ptrdiff_t r1,                   \
                                ptrdiff_t p0, ptrdiff_t p1, ptrdiff_t buf)    \
{                                                                             \
    fl_tile_fn_##SUF tile = a->ops->tile;                                     \
    const fl_layer_i8 *i8 = a->i8;                                            \
    ptrdiff_t rows = r1 - r0, G = a->NB * 4 * a->W, W4 = 4 * a->W;            \
    ptrdiff_t X4 = 0, H4 = 0;      /* bytes of a quantized row of x, of h */   \
    unsigned char *xq = NULL, *hq = NULL;                                     \
    float *xs = NULL, *hs = NULL;                                             \
    if (i8 != NULL) {                                                         \
        X4 = 4 * i8->K4x;                                                     \
        H4 = 4 * i8->K4h;                                                     \
        xq = i8->xq + buf * a->B * a->chunk * X4;                             \
        xs = i8->xs + buf * a->B * a->chunk;                                  \
        hq = i8->hq + buf * a->B * H4;                                        \
        hs = i8->hs + buf * a->B;                                             \
    }                                                                         \
    ptrdiff_t t0, tc, pos;                                                    \
    fl_chunk_of(a->T_, a->chunk, a->backwards, s, &t0, &tc, &pos);            \
    if (pos == 0) {                                                           \
        if (i8 != NULL)                                                       \
            for (ptrdiff_t b = r0; b < r1; ++b)                               \
                for (ptrdiff_t st = 0; st < fl_steps_of(a->lengths, b, t0, tc); ++st) \
                    i8->ops->quantize(                                        \
                        FL_F32(a->x + (b * a->T_ + t0 + st) * a->n_in),       \
                        a->n_in, xq + (b * a->chunk + st) * X4,               \
                        xs + b * a->chunk + st);                              \
        fl_chunk_##SUF ch;                                                    \
        memset(&ch, 0, sizeof ch);                                            \
        ch.ops = a->ops;                                                      \
        ch.rows = rows; ch.steps = tc; ch.n_in = a->n_in;                     \
        ch.kp = a->kp; ch.bias = a->bias;                                     \
        ch.x = a->x + (r0 * a->T_ + t0) * a->n_in;                            \
        ch.xb = a->T_ * a->n_in; ch.xs = a->n_in;                             \
        ch.out = a->proj + r0 * a->chunk * G;                                 \
        ch.ob = a->chunk * G; ch.os = G; ch.op = W4;                          \
        ch.lengths = a->lengths != NULL ? a->lengths + r0 : NULL;             \
        ch.t0 = t0;                                                           \
        if (i8 != NULL) {                                                     \
            ch.i8 = i8->ops; ch.w8 = i8->w; ch.K4x = i8->K4x;                 \
            ch.q = xq + r0 * a->chunk * X4; ch.qb = a->chunk * X4; ch.qs = X4; \
            ch.qscale = xs + r0 * a->chunk; ch.sb = a->chunk; ch.ss = 1;      \
        }                                                                     \
        fl_project_chunk_##SUF(&ch, p0, p1);                                  \
    }                                                                         \
    ptrdiff_t t = a->backwards ? t0 + tc - 1 - pos : t0 + pos;                \
    ptrdiff_t k = a->backwards ? a->T_ - 1 - t : t;    /* output index */     \
    T *hprev = a->h + (s & 1) * a->B * a->Hs;                                 \
    T *hnext = a->h + (1 - (s & 1)) * a->B * a->Hs;                           \
    /* With a projection the tile writes m; projection.h makes h of it. */    \
    T *cell_out = a->P ? a->m : hnext, *tile_y = a->P ? a->ym : a->y;         \
    rows = fl_rows_at(a->active, t, r0, rows);   /* those that have step t */ \
    r1 = r0 + rows;                                                           \
    if (i8 != NULL)                                                           \
        for (ptrdiff_t b = r0; b < r1; ++b)                                   \
            i8->ops->quantize(FL_F32(hprev + b * a->Hs), a->U, hq + b * H4,   \
                              hs + b);                                        \
    ptrdiff_t ntiles = (rows + a->MR - 1) / a->MR;                            \
    fl_tile_##SUF tl;                                                         \
    tl.U = a->H; tl.ldh = a->Hs; tl.ldc = a->Up;                              \
    tl.ldm = a->T_; tl.lds = a->T_ * a->U;                                    \
    tl.act = a->act; tl.rec_act = a->rec_act;                                 \
    tl.rec = NULL;                                                            \
    tl.hg = NULL;                                                             \
    tl.ldg = 0;                                                               \
    tl.ldx = a->chunk * G;  /* the same for every chunk: see proj above */    \
    for (ptrdiff_t p = p0; p < p1; ++p) {                                     \
        ptrdiff_t col = p * a->W, b = r0;                                     \
        tl.col = col;                                                         \
        tl.r = a->r + p * a->H * W4;                                          \
        tl.nvalid = (int)(a->U - col < a->W ? a->U - col : a->W);             \
        for (ptrdiff_t q = 0; q < ntiles; ++q) {                              \
            int mr = fl_tile_rows(rows, ntiles, q);                           \
            tl.h = hprev + b * a->Hs;                                         \
            tl.x = a->proj + (b * a->chunk + t - t0) * G + p * W4;            \
            tl.c = a->c + b * a->Up + col;                                    \
            tl.hn = cell_out + b * a->Up + col;                               \
            tl.y = tile_y != NULL ? tile_y + b * a->Up + col : NULL;          \
            tl.mask = a->mask != NULL ? a->mask + b * a->T_ + t : NULL;       \
            tl.seq = a->seq != NULL && !a->P                                  \
                ? a->seq + (b * a->T_ + k) * a->U + col : NULL;               \
            if (i8 != NULL) {                                                 \
                fl_tile_i8 t8;                                                \
                memcpy(&t8.f, &tl, sizeof t8.f);    /* float's, same layout */ \
                t8.p.q = hq + b * H4;                                         \
                t8.p.ldq = H4;                                                \
                t8.p.qs = hs + b;                                             \
                t8.p.ldqs = 1;                                                \
                t8.p.w = i8->w->recurrent_panels + p * i8->K4h * 4 * W4;      \
                t8.p.comp = i8->w->recurrent_comp + p * W4;                   \
                t8.p.ws = i8->w->recurrent_scale + p * W4;                    \
                t8.p.K4 = i8->K4h;                                            \
                i8->ops->tile(mr, &t8);                                       \
            } else {                                                          \
                tile(mr, &tl);                                                \
            }                                                                 \
            b += mr;                                                          \
        }                                                                     \
    }                                                                         \
    if (a->P)        /* rows mode: every block of these rows is done */       \
        fl_project_##SUF(a->ops, rows, a->U, a->P, a->pk, a->m + r0 * a->Up,  \
                         a->Up, hprev + r0 * a->Hs, hnext + r0 * a->Hs, a->Hs, \
                         a->mask != NULL ? a->mask + r0 * a->T_ + t : NULL,   \
                         a->T_, a->y != NULL ? a->y + r0 * a->Hs : NULL,      \
                         a->seq != NULL ? a->seq + (r0 * a->T_ + k) * a->P    \
                                        : NULL,                               \
                         a->T_ * a->P);                                       \
}                                                                             \
                                                                              \
/* Step s of unit range k (all rows), then count it done. */                  \
static void fl_layer_range_##SUF(const fl_layer_##SUF *a, ptrdiff_t s,        \
                                 ptrdiff_t k)                                 \
{                                                                             \
    ptrdiff_t n = a->parts;                                                   \
    fl_layer_step_##SUF(a, s, 0, a->B, a->NB * k / n, a->NB * (k + 1) / n, k); \
    FL_ADD(&a->sync->done, 1);                                                \
}                                                                             \
                                                                              \
static void fl_layer_work_##SUF(const fl_layer_##SUF *a, int slot)           \
{                                                                             \
    ptrdiff_t n = a->parts, s, g;                                             \
    if (!a->split_units) {                                                    \
        while ((g = FL_ADD(&a->sync->next, 1) - 1) < n) {                     \
            ptrdiff_t r0 = a->first ? a->first[g] : a->B * g / n;             \
            ptrdiff_t r1 = a->first ? a->first[g + 1] : a->B * (g + 1) / n;   \
            for (s = 0; s < a->T_; ++s) {                                     \
                if (fl_cancelled(a->cancel, slot))                            \
                    return;                                                   \
                fl_layer_step_##SUF(a, s, r0, r1, 0, a->NB, 0);               \
            }                                                                 \
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
        if ((solo && slot != 0) || fl_cancelled(a->cancel, slot))             \
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
            ptrdiff_t ran = s - first;                                        \
            computed += t1 - t0;                                              \
            waited += fl_ticks() - t1;                                        \
            if ((ran == FL_ADAPT_STEPS || ran % FL_ADAPT_WINDOW == 0)         \
                && waited > computed)                                         \
                FL_ADD(&a->sync->solo, 1);                                    \
            if (ran % FL_ADAPT_WINDOW == 0)                                   \
                computed = waited = 0;                                        \
        }                                                                     \
    }                                                                         \
}                                                                             \
                                                                              \
/* The job of each thread: its share of the work, then the int8 kernel's    \
 * release (AMX: the thread's tile state). */                               \
static void fl_layer_job_##SUF(void *ctx, int slot)                           \
{                                                                             \
    const fl_layer_##SUF *a = (const fl_layer_##SUF *)ctx;                    \
    fl_layer_work_##SUF(a, slot);                                             \
    if (a->i8 != NULL && a->i8->ops->release != NULL)                         \
        a->i8->ops->release();                                                \
}

FL_DEFINE_LAYER(float, f32)
FL_DEFINE_LAYER(double, f64)
#undef FL_DEFINE_LAYER

/* A call of one dtype (forward.h): the workspace, the plan, the padded
 * state in and out, and the job on the pool; with int8 weights `w8`
 * (float only) instead of kernel and recurrent. */
#define FL_DEFINE_FORWARD(T, SUF)                                             \
static int fl_run_##SUF(const T *x, const T *kernel, const T *bias,           \
                        const T *recurrent, const T *projection, ptrdiff_t P, \
                        T *h, T *c, T *y,                                     \
                        const unsigned char *mask, const ptrdiff_t *lengths,  \
                        T *seq, ptrdiff_t B,                                  \
                        ptrdiff_t T_, ptrdiff_t n_in, ptrdiff_t U, int isa,   \
                        int backwards, int act, int rec_act, int threads,     \
                        const fl_weights_i8 *w8,                              \
                        int (*poll)(void *), void *poll_ctx)                  \
{                                                                             \
    const fl_ops_##SUF *ops = fl_ops_##SUF##_of(isa);                         \
    const fl_ops_i8 *ops8 = w8 == NULL ? NULL : fl_ops_i8_of(w8->kernel);     \
    const ptrdiff_t W = ops->width, MR = ops8 != NULL ? ops8->rows : ops->rows; \
    const ptrdiff_t NB = (U + W - 1) / W, Up = NB * W, G = 4 * Up;            \
    ptrdiff_t chunk = FL_WORKSPACE_BYTES / (B * G * (ptrdiff_t)sizeof(T));    \
    chunk = chunk < 1 ? 1 : chunk > T_ ? T_ : chunk;                          \
    /* Whole tiles of steps along time in fl_project_chunk */                \
    if (chunk > MR && chunk < T_)                                             \
        chunk -= chunk % MR;                                                  \
    int split_units;                                                          \
    int nt = fl_plan(FL_PLAN_FORWARD, B, T_, n_in, U, NB, threads, &split_units); \
    if (P && split_units) {   /* h needs all of m: rows only (projection.h) */ \
        split_units = 0;                                                      \
        nt = B < nt ? (int)B : nt;                                            \
    }                                                                         \
    const ptrdiff_t H = P ? P : U;                                            \
    const ptrdiff_t Pq = P ? fl_projected_columns(P, W) : 0;                  \
    const ptrdiff_t Hs = Pq > Up ? Pq : Up;                                   \
    /* Row groups: up to 4 per thread, so that when one thread runs slowly  \
     * (its core shared with another process) the others take over more of  \
     * its groups (measured with a busy core at (64, 50, 256, 512) on a      \
     * Xeon: 93 ms with one group per thread, 75 with 4), but each of at     \
     * least 4 tiles of rows: every group streams all of h_prev @ U's        \
     * weights each step, from L3 once they outgrow L2 (U = 256: 1 MB; Zen 3 \
     * has 512 KB of L2), and a group of g rows does g / 2 FLOPs a byte of   \
     * them.  Measured quiet at 2 threads on a Zen 3 EPYC (AVX2, MR = 3):    \
     * (32, 100, 64, 256) 17.7 ms with 4 groups of 4 rows per thread, 14.8   \
     * with 1 of 16; (64, 50, 256, 512) 68.0 ms with 4 groups of 8 rows,     \
     * 63.9 with 2 of 16, 69.2 with 1 of 32.  One thread runs one group. */  \
    ptrdiff_t groups = B / (nt * 4 * MR);                                     \
    int parts = split_units || nt == 1 ? nt                                   \
        : nt * (int)(groups < 1 ? 1 : groups > 4 ? 4 : groups);               \
    /* h [2][B][Hs], c [B][Up], y [B][Hs]; with P, m and ym [B][Up] */       \
    ptrdiff_t n_state = 2 * B * Hs + B * Up + (mask != NULL) * B * Hs         \
                        + (P != 0) * (1 + (mask != NULL)) * B * Up;           \
    ptrdiff_t n_proj = B * chunk * G;                                         \
    /* The shared counters: one cache line, one line per unit range, then    \
     * the flags of the threads present (read-mostly: a line of their own). */ \
    size_t sync_bytes = 64 * (1 + nt)                                         \
        + 64 * ((nt * sizeof(ptrdiff_t) + 63) / 64);                          \
    /* int8: the quantized rows and their scales (see fl_layer_i8). */        \
    ptrdiff_t n_buf = w8 == NULL ? 0 : split_units ? nt : 1;                  \
    ptrdiff_t align = ops8 == NULL ? 1 : ops8->k4_align;                      \
    ptrdiff_t K4x = ((n_in + 3) / 4 + align - 1) / align * align;             \
    ptrdiff_t K4h = ((U + 3) / 4 + align - 1) / align * align;                \
    size_t i8_bytes = n_buf * B * ((chunk + 1) * sizeof(float)                \
                                   + chunk * 4 * K4x + 4 * K4h);              \
    /* lengths: the rows with each step, the row groups (lengths.h) */        \
    size_t rows_bytes = lengths == NULL ? 0                                   \
        : 64 * (((T_ + parts + 1) * sizeof(ptrdiff_t) + 63) / 64);            \
    void *raw = malloc((n_state + n_proj) * sizeof(T) + sync_bytes + 64       \
                       + rows_bytes + i8_bytes);                              \
    if (raw == NULL)                                                          \
        return -1;                                                            \
    /* 64-byte alignment keeps each block of a row on its own cache lines. */ \
    char *base = (char *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);            \
    memset(base, 0, sync_bytes);                                              \
    T *hbuf = (T *)(base + sync_bytes + rows_bytes);                          \
    T *cbuf = hbuf + 2 * B * Hs;                                              \
    T *ybuf = mask != NULL ? cbuf + B * Up : NULL;                            \
    T *mbuf = P ? cbuf + B * Up + (mask != NULL) * B * Hs : NULL;             \
    size_t row = U * sizeof(T), hrow = H * sizeof(T);                         \
    /* Padding lanes are computed (and discarded) too: keep them finite. */   \
    memset(hbuf, 0, n_state * sizeof(T));                                     \
    for (ptrdiff_t b = 0; b < B; ++b) {                                       \
        memcpy(hbuf + b * Hs, h + b * H, hrow);                               \
        /* with lengths a row's first step may read either h buffer */        \
        if (lengths != NULL)                                                  \
            memcpy(hbuf + (B + b) * Hs, h + b * H, hrow);                     \
        memcpy(cbuf + b * Up, c + b * U, row);                                \
        if (ybuf != NULL)                                                     \
            memcpy(ybuf + b * Hs, y + b * H, hrow);                           \
    }                                                                         \
    fl_layer_##SUF a;                                                         \
    a.B = B; a.T_ = T_; a.n_in = n_in; a.U = U; a.Up = Up; a.NB = NB;         \
    a.W = W; a.MR = MR; a.chunk = chunk; a.backwards = backwards;             \
    a.P = P; a.H = H; a.Hs = Hs; a.pk = projection;                           \
    a.m = mbuf; a.ym = P && mask != NULL ? mbuf + B * Up : NULL;              \
    a.act = act; a.rec_act = rec_act; a.ops = ops;                            \
    a.split_units = split_units; a.parts = parts;                             \
    a.sync = (fl_sync *)base; a.owner = (fl_owner *)(base + 64);              \
    a.present = (ptrdiff_t *)(base + 64 * (1 + nt));                          \
    a.x = x; a.kp = kernel; a.bias = bias; a.r = recurrent;                   \
    a.proj = hbuf + n_state; a.h = hbuf; a.c = cbuf; a.y = ybuf;              \
    a.mask = mask; a.seq = seq; a.lengths = lengths;                          \
    a.active = a.first = NULL;                                                \
    if (lengths != NULL) {  /* between the sync lines and the state */        \
        ptrdiff_t *counts = (ptrdiff_t *)(base + sync_bytes);                 \
        fl_active_rows(lengths, B, T_, counts);                               \
        fl_row_groups(lengths, B, parts, counts + T_);                        \
        a.active = counts;                                                    \
        a.first = split_units ? NULL : counts + T_;                           \
    }                                                                         \
    fl_cancel cancel = fl_cancel_start(poll, poll_ctx);                       \
    a.cancel = &cancel;                                                       \
    fl_layer_i8 i8;                                                           \
    a.i8 = NULL;                                                              \
    if (w8 != NULL) {     /* after the float workspace, scales first */       \
        i8.w = w8;                                                            \
        i8.ops = ops8;                                                        \
        i8.K4x = K4x;                                                         \
        i8.K4h = K4h;                                                         \
        i8.xs = FL_F32(hbuf + n_state + n_proj);                              \
        i8.hs = i8.xs + n_buf * B * chunk;                                    \
        i8.xq = (unsigned char *)(i8.hs + n_buf * B);                         \
        i8.hq = i8.xq + n_buf * B * chunk * 4 * K4x;                          \
        /* A row's bytes past 4 * ceil(n / 4) (k4_align's padding), which   \
         * the quantizer does not write: zeros (128) once. */                 \
        memset(i8.xq, 128, n_buf * B * (chunk * 4 * K4x + 4 * K4h));          \
        a.i8 = &i8;                                                           \
    }                                                                         \
    fl_pool_run(fl_layer_job_##SUF, &a, nt);                                  \
    if (cancel.stop) {     /* the caller's state stays as it was */           \
        free(raw);                                                            \
        return FL_CANCELLED;                                                  \
    }                                                                         \
    for (ptrdiff_t b = 0; b < B; ++b) {                                       \
        /* the buffer of the row's last step: after n steps, buffer n & 1 */  \
        ptrdiff_t last = lengths != NULL && !backwards ? lengths[b] : T_;     \
        memcpy(h + b * H, hbuf + ((last & 1) * B + b) * Hs, hrow);            \
        memcpy(c + b * U, cbuf + b * Up, row);                                \
        if (ybuf != NULL)                                                     \
            memcpy(y + b * H, ybuf + b * Hs, hrow);                           \
    }                                                                         \
    free(raw);                                                                \
    return 0;                                                                 \
}                                                                             \
                                                                              \
int fl_forward_##SUF(const T *x, const T *kernel, const T *bias,              \
                     const T *recurrent, const T *projection, ptrdiff_t P,    \
                     T *h, T *c, T *y,                                        \
                     const unsigned char *mask, const ptrdiff_t *lengths,     \
                     T *seq, ptrdiff_t B,                                     \
                     ptrdiff_t T_, ptrdiff_t n_in, ptrdiff_t U, int isa,      \
                     int backwards, int act, int rec_act, int threads,        \
                     int (*poll)(void *), void *poll_ctx)                     \
{                                                                             \
    return fl_run_##SUF(x, kernel, bias, recurrent, projection, P, h, c, y,   \
                        mask, lengths, seq, B, T_,                            \
                        n_in, U, isa, backwards, act, rec_act, threads, NULL, \
                        poll, poll_ctx);                                      \
}

FL_DEFINE_FORWARD(float, f32)
FL_DEFINE_FORWARD(double, f64)
#undef FL_DEFINE_FORWARD

int fl_forward_i8(const float *x, const fl_weights_i8 *weights, float *h, float *c,
                  float *y, const unsigned char *mask, float *seq, ptrdiff_t B,
                  ptrdiff_t T_, ptrdiff_t n_in, ptrdiff_t U, int backwards, int act,
                  int rec_act, int threads, int (*poll)(void *), void *poll_ctx)
{
    /* The float32 row of the kernel's instruction set: its width, rows and
     * (unused here) float tiles. */
    return fl_run_f32(x, NULL, weights->bias, NULL, NULL, 0, h, c, y, mask, NULL, seq, B, T_,
                      n_in, U,
                      fl_ops_i8_of(weights->kernel)->isa, backwards, act, rec_act, threads,
                      weights, poll, poll_ctx);
}
