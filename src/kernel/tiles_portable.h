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
            const T *xr = a->x + r * a->ldx + k * a->ldk;                     \
            if (a->ldg == 0)                                                  \
                for (j = 0; j < 4 * FL_PW; ++j)                               \
                    acc[r][j] += xr[0] * kp[j];                               \
            else        /* gate g reads its own x */                          \
                for (j = 0; j < 4 * FL_PW; ++j)                               \
                    acc[r][j] += xr[j / FL_PW * a->ldg] * kp[j];              \
        }                                                                     \
    for (r = 0; r < mr; ++r)                                                  \
        memcpy(a->out + r * a->ldo, acc[r], sizeof acc[r]);                   \
}                                                                             \
                                                                              \
/* The cell update of mr rows from their gate pre-activations z (the float    \
 * tile's, and the int8 tile's). */                                           \
static void fl_cell_portable_##SUF(int mr, T z[][4 * FL_PW],                  \
                                   const fl_tile_##SUF *a)                    \
{                                                                             \
    int r, j;                                                                 \
    for (r = 0; r < mr; ++r) {                                                \
        T *c = a->c + r * a->ldc, *hn = a->hn + r * a->ldc;                   \
        T *y = a->mask != NULL ? a->y + r * a->ldc : NULL;                    \
        int keep = a->mask == NULL || a->mask[r * a->ldm];                    \
        const T *zr = z[r];                                                   \
        for (j = 0; j < FL_PW; ++j) {                                         \
            T i = fl_act_##SUF(a->rec_act, zr[j]);                            \
            T f = fl_act_##SUF(a->rec_act, zr[FL_PW + j]);                    \
            T g = fl_act_##SUF(a->act, zr[2 * FL_PW + j]);                    \
            T o = fl_act_##SUF(a->rec_act, zr[3 * FL_PW + j]);                \
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
                /* gates as activations.h's records say */                 \
                int in_rec = fl_act_records_input(a->rec_act);                \
                rc[0] = in_rec ? zr[j] : i;                                   \
                rc[FL_PW] = in_rec ? zr[FL_PW + j] : f;                       \
                rc[2 * FL_PW] = fl_act_records_input(a->act) ? zr[2 * FL_PW + j] : g; \
                rc[3 * FL_PW] = in_rec ? zr[3 * FL_PW + j] : o;               \
                rc[4 * FL_PW] = c[j];                                         \
                rc[5 * FL_PW] = ac;                                           \
            }                                                                 \
        }                                                                     \
        if (a->seq != NULL)                                                   \
            memcpy(a->seq + r * a->lds, y != NULL ? y : hn,                   \
                   a->nvalid * sizeof(T));                                    \
    }                                                                         \
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
            if (a->hg == NULL) {                                              \
                T hv = a->h[r * a->ldh + k];                                  \
                for (j = 0; j < 4 * FL_PW; ++j)                               \
                    acc[r][j] += hv * rp[j];                                  \
            } else {    /* gate g reads its own h_prev (dropout) */           \
                const T *hk = a->hg + r * a->ldh + k;                         \
                for (j = 0; j < 4 * FL_PW; ++j)                               \
                    acc[r][j] += hk[j / FL_PW * a->ldg] * rp[j];              \
            }                                                                 \
        }                                                                     \
    fl_cell_portable_##SUF(mr, acc, a);                                       \
}

/* The backward tile (fl_back in tiles.h). */
#define FL_DEFINE_PORTABLE_BACK(T, SUF)                                       \
static void fl_back_portable_##SUF(int mr, const fl_back_##SUF *a)            \
{                                                                             \
    T acc[FL_PMR][4 * FL_PW];                                                 \
    const T *rp = a->rt;                                                      \
    ptrdiff_t k;                                                              \
    int r, j, w, nu = a->nblk * FL_PW;                                        \
    for (r = 0; r < mr; ++r)                                                  \
        for (j = 0; j < nu; ++j)                                              \
            acc[r][j] = a->dh[r * a->lds + j];                                \
    if (a->gmask == NULL) {                                                   \
        for (k = 0; k < a->K; ++k, rp += 4 * FL_PW)                           \
            for (r = 0; r < mr; ++r) {                                        \
                T dv = a->dzn[k / (4 * FL_PW) * a->zstride + r * a->ldz       \
                              + k % (4 * FL_PW)];                             \
                for (j = 0; j < nu; ++j)                                      \
                    acc[r][j] += dv * rp[j];                                  \
            }                                                                 \
    } else if (a->K > 0) {  /* dropout: per gate block, times its mask */    \
        for (int g = 0; g < 4; ++g) {                                         \
            T part[FL_PMR][4 * FL_PW] = {{0}};                                \
            for (k = 0; k < a->K; ++k) {                                      \
                if (k % (4 * FL_PW) / FL_PW != g)                             \
                    continue;                                                 \
                for (r = 0; r < mr; ++r) {                                    \
                    T dv = a->dzn[k / (4 * FL_PW) * a->zstride + r * a->ldz   \
                                  + k % (4 * FL_PW)];                         \
                    for (j = 0; j < nu; ++j)                                  \
                        part[r][j] += dv * rp[k * 4 * FL_PW + j];             \
                }                                                             \
            }                                                                 \
            const T *m = a->gmask + g * a->gmstride;                          \
            for (r = 0; r < mr; ++r)                                          \
                for (j = 0; j < nu; ++j)                                      \
                    acc[r][j] += part[r][j] * m[r * a->ldgm + j];             \
        }                                                                     \
    }                                                                         \
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
                T i, f, g, o, ac = rc[5 * FL_PW + w];                         \
                T di = fl_dact_recorded_##SUF(a->rec_act, rc[w], &i);         \
                T df = fl_dact_recorded_##SUF(a->rec_act, rc[FL_PW + w], &f); \
                T dg = fl_dact_recorded_##SUF(a->act, rc[2 * FL_PW + w], &g); \
                T dout = fl_dact_recorded_##SUF(a->rec_act, rc[3 * FL_PW + w], &o); \
                T dac = fl_act_records_input(a->act)                          \
                    ? fl_dact_in_##SUF(a->act, rc[4 * FL_PW + w])             \
                    : fl_dact_##SUF(a->act, ac);                              \
                T dc = a->dc[r * a->lds + u] + dh * o * dac;                  \
                int real = w < n;   /* padding lanes may hold inf * 0 */      \
                dz[w] = real ? dc * g * di : (T)0;                            \
                dz[FL_PW + w] = real ? dc * cp[w] * df : (T)0;                \
                dz[2 * FL_PW + w] = real ? dc * i * dg : (T)0;                \
                dz[3 * FL_PW + w] = real ? dh * ac * dout : (T)0;             \
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

/* The int8 tiles in plain C (tiles.h states their contract): the same
 * integers and the same float32 roundings as the vector ones. */

/* x rounded to float32 on its own: a product followed by an add must not
 * become one fused multiply-add, which rounds once (the NumPy reference,
 * quantization.py, rounds twice), as compilers do on CPUs that have it. */
static inline float fl_rounded(float x)
{
    volatile float v = x;
    return v;
}

static void fl_quantize_portable(const float *v, ptrdiff_t n, unsigned char *q, float *scale)
{
    unsigned top = 0, bits;
    ptrdiff_t k, n4 = (n + 3) & ~(ptrdiff_t)3;
    for (k = 0; k < n; ++k) {       /* max |v| on the bits: NaN > inf > finite */
        memcpy(&bits, v + k, sizeof bits);
        bits &= 0x7fffffffu;
        top = bits > top ? bits : top;
    }
    if (top >= 0x7f800000u) {       /* NaN or infinity in the row */
        *scale = (float)NAN;
        memset(q, 128, n4);
        return;
    }
    float amax, magic = 12582912.0f;   /* 1.5 * 2**23: + rounds half to even */
    int magic_bits;
    memcpy(&amax, &top, sizeof amax);
    memcpy(&magic_bits, &magic, sizeof magic_bits);
    *scale = amax / 127.0f;
    float inverse = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (k = 0; k < n; ++k) {       /* |t| <= 127: no clamp */
        float t = fl_rounded(fl_rounded(v[k] * inverse) + magic);
        int rounded;
        memcpy(&rounded, &t, sizeof rounded);
        q[k] = (unsigned char)(rounded - magic_bits + 128);
    }
    for (; k < n4; ++k)
        q[k] = 128;
}

/* acc[r][j] = comp[j] + the sum over the panel [K4][4][FL_PW][4]. */
static void fl_product_portable_i8(int mr, const fl_operand_i8 *p, int acc[][4 * FL_PW])
{
    const signed char *w = p->w;
    int r, j, b;
    for (r = 0; r < mr; ++r)
        for (j = 0; j < 4 * FL_PW; ++j)
            acc[r][j] = p->comp[j];
    for (ptrdiff_t k = 0; k < p->K4; ++k, w += 16 * FL_PW)
        for (r = 0; r < mr; ++r) {
            const unsigned char *q = p->q + r * p->ldq + 4 * k;
            for (j = 0; j < 4 * FL_PW; ++j)
                for (b = 0; b < 4; ++b)
                    acc[r][j] += q[b] * w[4 * j + b];
        }
}

/* acc * (row scale * column scale), rounded as the vector tiles do. */
static inline float fl_dequantized(int acc, float row_scale, float column_scale)
{
    return fl_rounded((float)acc * fl_rounded(row_scale * column_scale));
}

static void fl_proj_portable_i8(int mr, const fl_proj_i8 *a)
{
    int acc[FL_PMR][4 * FL_PW];
    fl_product_portable_i8(mr, &a->p, acc);
    for (int r = 0; r < mr; ++r)
        for (int j = 0; j < 4 * FL_PW; ++j)
            a->out[r * a->ldo + j] = a->bias[j] + fl_dequantized(
                acc[r][j], a->p.qs[r * a->p.ldqs], a->p.ws[j]);
}

static void fl_tile_portable_i8(int mr, const fl_tile_i8 *a)
{
    int acc[FL_PMR][4 * FL_PW];
    float z[FL_PMR][4 * FL_PW];
    fl_product_portable_i8(mr, &a->p, acc);
    for (int r = 0; r < mr; ++r)
        for (int j = 0; j < 4 * FL_PW; ++j)
            z[r][j] = a->f.x[r * a->f.ldx + j] + fl_dequantized(
                acc[r][j], a->p.qs[r * a->p.ldqs], a->p.ws[j]);
    fl_cell_portable_f32(mr, z, &a->f);
}

#undef FL_DEFINE_PORTABLE
#undef FL_DEFINE_PORTABLE_BACK
#undef FL_DEFINE_PORTABLE_ACTIVATE

#endif /* FASTLSTM_TILES_PORTABLE_H */
