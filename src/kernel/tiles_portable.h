/* The portable tiles (tiles.h): plain C, float and double.
 *
 * Same contract and packed layout as the vector tiles (tiles_vector.h),
 * with FL_PW lanes per block; the lane loops are simple enough for any
 * compiler to vectorise, and the activations are libm's (activations.h).
 * isa.c puts them in the table for every instruction set that has no
 * vector tiles of a dtype.  For float32 they are the default only where the
 * compiler has no vector extensions (MSVC): gcc and clang builds run sse2
 * on any x86-64 CPU and neon on any aarch64 one, and keep these as a
 * reference path (FASTLSTM_ISA=portable).
 */
#ifndef FASTLSTM_TILES_PORTABLE_H
#define FASTLSTM_TILES_PORTABLE_H

#include <string.h>
#include "activations.h"
#include "tiles.h"

#define FL_PW 4     /* lanes per block */
#define FL_PMR 4    /* most rows per tile */

#define FL_DEFINE_PORTABLE(T, SUF)                                            \
static void fl_proj_portable_##SUF(int mr, const fl_proj_##SUF *a)            \
{                                                                             \
    T acc[FL_PMR][4 * FL_PW];                                                 \
    const T *kp = a->kp;                                                      \
    ptrdiff_t k;                                                              \
    int r, j;                                                                 \
    for (r = 0; r < mr; ++r)                                                  \
        for (j = 0; j < 4 * FL_PW; ++j)                                       \
            acc[r][j] = a->bias != NULL ? a->bias[r * a->ldb + j] : (T)0;     \
    for (k = 0; k < a->n_in; ++k, kp += 4 * FL_PW)                            \
        for (r = 0; r < mr; ++r) {                                            \
            T xv = a->x[r * a->ldx + k * a->ldk];                             \
            for (j = 0; j < 4 * FL_PW; ++j)                                   \
                acc[r][j] += xv * kp[j];                                      \
        }                                                                     \
    for (r = 0; r < mr; ++r)                                                  \
        memcpy(a->out + r * a->ldo, acc[r], sizeof acc[r]);                   \
}                                                                             \
                                                                              \
static void fl_tile_portable_##SUF(int mr, const fl_tile_##SUF *a)            \
{                                                                             \
    T acc[FL_PMR][4 * FL_PW];                                                 \
    const T *rp = a->r;                                                       \
    ptrdiff_t k;                                                              \
    int r, j;                                                                 \
    for (r = 0; r < mr; ++r)                                                  \
        for (j = 0; j < 4 * FL_PW; ++j)                                       \
            acc[r][j] = a->x[r * a->ldx + j];                                 \
    for (k = 0; k < a->U; ++k, rp += 4 * FL_PW)                               \
        for (r = 0; r < mr; ++r) {                                            \
            T hv = a->h[r * a->ldh + k];                                      \
            for (j = 0; j < 4 * FL_PW; ++j)                                   \
                acc[r][j] += hv * rp[j];                                      \
        }                                                                     \
    for (r = 0; r < mr; ++r) {                                                \
        T *c = a->c + r * a->ldc, *hn = a->hn + r * a->ldc;                   \
        T *y = a->mask != NULL ? a->y + r * a->ldc : NULL;                    \
        int keep = a->mask == NULL || a->mask[r * a->ldm];                    \
        const T *z = acc[r];                                                  \
        for (j = 0; j < FL_PW; ++j) {                                         \
            T i = fl_act_##SUF(a->rec_act, z[j]);                             \
            T f = fl_act_##SUF(a->rec_act, z[FL_PW + j]);                     \
            T g = fl_act_##SUF(a->act, z[2 * FL_PW + j]);                     \
            T o = fl_act_##SUF(a->rec_act, z[3 * FL_PW + j]);                 \
            T cn = f * c[j] + i * g;                                          \
            T ac = fl_act_##SUF(a->act, cn);                                  \
            T h = o * ac;                                                     \
            if (keep) {                                                       \
                c[j] = cn;                                                    \
                hn[j] = h;                                                    \
                if (y != NULL)                                                \
                    y[j] = h;                                                 \
            } else {  /* skipped step: carry h and c, repeat the output */    \
                hn[j] = a->h[r * a->ldh + a->col + j];                        \
            }                                                                 \
            if (a->rec != NULL) {                                             \
                T *rc = a->rec + r * a->ldr + j;                              \
                rc[0] = i;                                                    \
                rc[FL_PW] = f;                                                \
                rc[2 * FL_PW] = g;                                            \
                rc[3 * FL_PW] = o;                                            \
                rc[4 * FL_PW] = c[j];                                         \
                rc[5 * FL_PW] = ac;                                           \
            }                                                                 \
        }                                                                     \
        if (a->seq != NULL)                                                   \
            memcpy(a->seq + r * a->lds, y != NULL ? y : hn,                   \
                   a->nvalid * sizeof(T));                                    \
    }                                                                         \
}

/* The backward tile (fl_back in tiles.h). */
#define FL_DEFINE_PORTABLE_BACK(T, SUF)                                       \
static void fl_back_portable_##SUF(int mr, const fl_back_##SUF *a)  \
{                                                                             \
    T acc[FL_PMR][4 * FL_PW];                                                 \
    const T *rp = a->rt;                                                      \
    ptrdiff_t k;                                                              \
    int r, j, w, nu = a->nblk * FL_PW;                                        \
    for (r = 0; r < mr; ++r)                                                  \
        for (j = 0; j < nu; ++j)                                              \
            acc[r][j] = a->dh[r * a->lds + j];                                \
    for (k = 0; k < a->K; ++k, rp += 4 * FL_PW)                               \
        for (r = 0; r < mr; ++r) {                                            \
            T dv = a->dzn[k / (4 * FL_PW) * a->zstride + r * a->ldz           \
                          + k % (4 * FL_PW)];                                 \
            for (j = 0; j < nu; ++j)                                          \
                acc[r][j] += dv * rp[j];                                      \
        }                                                                     \
    for (r = 0; r < mr; ++r) {                                                \
        T *dhr = a->dh + r * a->lds;                                          \
        if (a->rec == NULL) {      /* the gradient of the initial h */        \
            memcpy(dhr, acc[r], nu * sizeof(T));                              \
            continue;                                                         \
        }                                                                     \
        int keep = a->mask == NULL || a->mask[r * a->ldm];                    \
        for (j = 0; j < a->nblk; ++j) {                                       \
            const T *rc = a->rec + r * a->ldr + j * 6 * FL_PW;                \
            const T *cp = a->cprev + r * a->ldr + j * 6 * FL_PW + 4 * FL_PW;  \
            T *dz = a->dz + j * a->zstride + r * a->ldz;                      \
            int n = j == a->nblk - 1 ? a->nlast : FL_PW;                      \
            for (w = 0; w < FL_PW; ++w) {                                     \
                int u = j * FL_PW + w;                                        \
                T dh = acc[r][u];                                             \
                T ext = a->dseq != NULL && w < n ? a->dseq[r * a->ldq + u] : (T)0; \
                if (a->mask != NULL) {                                        \
                    T dy = a->dy[r * a->lds + u] + ext;                       \
                    if (!keep) {       /* skipped: carry dh, dc */            \
                        a->dy[r * a->lds + u] = dy;                           \
                        dhr[u] = dh;                                          \
                        dz[w] = dz[FL_PW + w] = (T)0;                         \
                        dz[2 * FL_PW + w] = dz[3 * FL_PW + w] = (T)0;         \
                        continue;                                             \
                    }                                                         \
                    dh += dy;                                                 \
                    a->dy[r * a->lds + u] = (T)0;                             \
                } else {                                                      \
                    dh += ext;                                                \
                }                                                             \
                T i = rc[w], f = rc[FL_PW + w], g = rc[2 * FL_PW + w];        \
                T o = rc[3 * FL_PW + w], ac = rc[5 * FL_PW + w];              \
                T dc = a->dc[r * a->lds + u] + dh * o * fl_dact_##SUF(a->act, ac); \
                int real = w < n;   /* padding lanes may hold inf * 0 */      \
                dz[w] = real ? dc * g * fl_dact_##SUF(a->rec_act, i) : (T)0;  \
                dz[FL_PW + w] = real                                          \
                    ? dc * cp[w] * fl_dact_##SUF(a->rec_act, f) : (T)0;       \
                dz[2 * FL_PW + w] = real ? dc * i * fl_dact_##SUF(a->act, g) : (T)0; \
                dz[3 * FL_PW + w] = real                                      \
                    ? dh * ac * fl_dact_##SUF(a->rec_act, o) : (T)0;          \
                a->dc[r * a->lds + u] = dc * f;                               \
                dhr[u] = (T)0;                                                \
            }                                                                 \
        }                                                                     \
    }                                                                         \
}

/* Activations over n values (the table's `activate`). */
#define FL_DEFINE_PORTABLE_ACTIVATE(T, SUF)                                   \
static void fl_activate_portable_##SUF(int kind, const T *x, T *y, ptrdiff_t n) \
{                                                                             \
    for (ptrdiff_t j = 0; j < n; ++j)                                         \
        y[j] = fl_act_##SUF(kind, x[j]);                                      \
}

FL_DEFINE_PORTABLE(float, f32)
FL_DEFINE_PORTABLE(double, f64)
FL_DEFINE_PORTABLE_BACK(float, f32)
FL_DEFINE_PORTABLE_BACK(double, f64)
FL_DEFINE_PORTABLE_ACTIVATE(float, f32)
FL_DEFINE_PORTABLE_ACTIVATE(double, f64)

#undef FL_DEFINE_PORTABLE
#undef FL_DEFINE_PORTABLE_BACK
#undef FL_DEFINE_PORTABLE_ACTIVATE

#endif /* FASTLSTM_TILES_PORTABLE_H */
