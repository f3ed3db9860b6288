/* The vector tiles (tiles.h): the cell step, the product and the backward
 * step, written once over vector.h's type and instantiated per instruction
 * set and dtype by isa.c, inside the instruction set's target region:
 *
 *   #define FL_SUF avx512     name suffix of everything defined here
 *   #define FL_W 16           lanes per vector
 *   #define FL_MR 6           most batch rows per tile
 *   #define FL_F64 0          element type: 0 FL_T, 1 double
 *
 * A tile owns `mr` batch rows and one block of W units.  Its 4*mr gate
 * vectors (i, f, c, o for each row) stay in registers from the input
 * projection through `h_prev @ U` to the cell update, and h is stored once.
 *
 * Lane arithmetic is identical for every tile shape: lane j of row r sums
 * x_proj + h[r, 0] * U[0, j] + h[r, 1] * U[1, j] + ... in that order, so a
 * result never depends on how rows or blocks are split between threads.
 *
 * Training (train.c) runs the same tile with a record of each step (`rec`),
 * the `proj` tile for the weight gradients x^T @ dZ too (x read down its
 * columns), and `back` (dh_prev = dZ @ R^T fused with the cell's backward
 * step), which keeps the fixed per-lane summation order.
 */
#include "vector.h"
#include "activations_vector.h"

/* The cell update of mr rows from their gate pre-activations z: the float
 * tile's, and the int8 tiles' (tiles_int8_vector.h).  Three passes over the
 * rows: each row's gates and new c (sigmoid and tanh, the usual case: the
 * row's four exps in lockstep), the rows' tanh(c) (their exps in lockstep
 * across the rows), then each row's h and stores.  Lockstep overlaps the
 * exps' long dependency chains (activations_vector.h); the passes go row by
 * row through the arrays below (memory), since unrolled over all rows their
 * temporaries would spill anyway, and the code would bloat. */
FL_INLINE void
FN(cell_rows)(const int mr, V z[][4], const FL_CAT(fl_tile, FL_TS) *a)
{
    const int fast = a->act == FL_ACT_TANH && a->rec_act == FL_ACT_SIGMOID;
    V gate[FL_MR][4], cn[FL_MR], ac[FL_MR];
#pragma GCC unroll 1
    for (int r = 0; r < mr; ++r) {
        if (fast) {
#pragma GCC unroll 4
            for (int g = 0; g < 4; ++g)
                gate[r][g] = z[r][g];
            FN(lstm_gates)(gate[r]);
        } else {
            gate[r][0] = FN(act)(a->rec_act, z[r][0]);
            gate[r][1] = FN(act)(a->rec_act, z[r][1]);
            gate[r][2] = FN(act)(a->act, z[r][2]);
            gate[r][3] = FN(act)(a->rec_act, z[r][3]);
        }
        cn[r] = gate[r][1] * FN(load)(a->c + r * a->ldc) + gate[r][0] * gate[r][2];
    }
    if (fast) {
        FN(tanh_each)(mr, cn, ac);
    } else {
#pragma GCC unroll 1
        for (int r = 0; r < mr; ++r)
            ac[r] = FN(act)(a->act, cn[r]);
    }
#pragma GCC unroll 1
    for (int r = 0; r < mr; ++r) {
        FL_T *c = a->c + r * a->ldc, *hn = a->hn + r * a->ldc;
        V h = gate[r][3] * ac[r], out = h, cnew = cn[r];
        if (a->mask != NULL) {
            FL_T *y = a->y + r * a->ldc;
            if (a->mask[r * a->ldm]) {
                FN(store)(y, h);
            } else {    /* skipped step: carry h and c, repeat the output */
                h = FN(load)(a->h + r * a->ldh + a->col);
                cnew = FN(load)(c);
                out = FN(load)(y);
            }
        }
        FN(store)(c, cnew);
        FN(store)(hn, h);
        if (a->rec != NULL) {   /* gates as activations.h's records say */
            FL_T *rc = a->rec + r * a->ldr;
            const int in_rec = fl_act_records_input(a->rec_act);
            FN(store)(rc, in_rec ? z[r][0] : gate[r][0]);
            FN(store)(rc + FL_W, in_rec ? z[r][1] : gate[r][1]);
            FN(store)(rc + 2 * FL_W, fl_act_records_input(a->act) ? z[r][2] : gate[r][2]);
            FN(store)(rc + 3 * FL_W, in_rec ? z[r][3] : gate[r][3]);
            FN(store)(rc + 4 * FL_W, cnew);
            FN(store)(rc + 5 * FL_W, ac[r]);
        }
        if (a->seq != NULL) {
            if (a->nvalid == FL_W) {
                FN(store)(a->seq + r * a->lds, out);
            } else {
                FL_T tmp[FL_W];
                FN(store)(tmp, out);
                memcpy(a->seq + r * a->lds, tmp, a->nvalid * sizeof(FL_T));
            }
        }
    }
}

#ifndef FL_KEEP_PANEL
/* Tiles of fewer than FL_MR rows have registers to spare, yet gcc 12 reads
 * the panel vectors from memory at every row's FMA there (the AVX2 2-row
 * tile: 10 loads for 8 FMAs, 1.6x the time a row of the 3-row tile takes).
 * An empty asm that "changes" a vector pins it to a register.  Not in the
 * 1-row tile, which is latency bound and measured 13% slower pinned. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FL_KEEP(v) __asm__("" : "+v"(v))
#else
#define FL_KEEP(v) ((void)0)
#endif
#define FL_KEEP_PANEL(mr, b0, b1, b2, b3)                                     \
    do {                                                                      \
        if ((mr) > 1 && (mr) < FL_MR) {                                       \
            FL_KEEP(b0); FL_KEEP(b1); FL_KEEP(b2); FL_KEEP(b3);               \
        }                                                                     \
    } while (0)
#endif

/* One step k of a row's four gate accumulators: acc[g] += v * b_g, where
 * v is *x for every gate, or with pg (a constant) gate g's own value
 * x[g * ldg] (dropout's per-gate copies of x or h). */
FL_INLINE void
FN(gates_fma)(const int pg, V acc[4], const FL_T *x, const ptrdiff_t ldg,
              const V b0, const V b1, const V b2, const V b3)
{
    if (pg) {
        acc[0] += FN(splat)(x[0]) * b0;
        acc[1] += FN(splat)(x[ldg]) * b1;
        acc[2] += FN(splat)(x[2 * ldg]) * b2;
        acc[3] += FN(splat)(x[3 * ldg]) * b3;
    } else {
        V v = FN(splat)(x[0]);
        acc[0] += v * b0;
        acc[1] += v * b1;
        acc[2] += v * b2;
        acc[3] += v * b3;
    }
}

/* pg (a constant): the product reads a copy of h_prev per gate (a->hg,
 * recurrent dropout); else one h_prev for all four gates. */
FL_INLINE void
FN(tile_rows)(const int mr, const int pg, const FL_CAT(fl_tile, FL_TS) *a)
{
    V acc[FL_MR][4];
    const FL_T *rp = a->r;
    const FL_T *h = pg ? a->hg : a->h;
    const ptrdiff_t ldg = a->ldg;
    ptrdiff_t k;
#pragma GCC unroll 16
    for (int r = 0; r < mr; ++r)
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g)
            acc[r][g] = FN(load)(a->x + r * a->ldx + g * FL_W);
    for (k = 0; k < a->U; ++k, rp += 4 * FL_W) {
        V b0 = FN(load)(rp), b1 = FN(load)(rp + FL_W);
        V b2 = FN(load)(rp + 2 * FL_W), b3 = FN(load)(rp + 3 * FL_W);
        FL_KEEP_PANEL(mr, b0, b1, b2, b3);
#pragma GCC unroll 16
        for (int r = 0; r < mr; ++r) {
            FN(gates_fma)(pg, acc[r], h + r * a->ldh + k, ldg, b0, b1, b2, b3);
        }
    }
    /* The cell update goes row by row through memory: unrolled over all
     * rows, its temporaries would spill anyway, and the code would bloat. */
    V z[FL_MR][4];
#pragma GCC unroll 16
    for (int r = 0; r < mr; ++r)
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g)
            z[r][g] = acc[r][g];
    FN(cell_rows)(mr, z, a);
}

/* Product rows (fl_proj in tiles.h): out[r] = init[r] + the sum over k
 * of x[r * ldx + k * ldk] * panel[k], for mr rows and one block; pg (a
 * constant): gate g reads its own x at x + g * ldg. */
FL_INLINE void
FN(proj_rows)(const int mr, const int pg, const FL_CAT(fl_proj, FL_TS) *a)
{
    const ptrdiff_t ldg = a->ldg;
    V acc[FL_MR][4];
    const FL_T *kp = a->kp;
#pragma GCC unroll 16
    for (int r = 0; r < mr; ++r)
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g)
            acc[r][g] = a->bias != NULL ? FN(load)(a->bias + r * a->ldb + g * FL_W)
                                        : FN(splat)(0.0f);
    for (ptrdiff_t k = 0; k < a->n_in; ++k, kp += 4 * FL_W) {
        V b0 = FN(load)(kp), b1 = FN(load)(kp + FL_W);
        V b2 = FN(load)(kp + 2 * FL_W), b3 = FN(load)(kp + 3 * FL_W);
        FL_KEEP_PANEL(mr, b0, b1, b2, b3);
        const FL_T *xk = a->x + k * a->ldk;
#pragma GCC unroll 16
        for (int r = 0; r < mr; ++r) {
            FN(gates_fma)(pg, acc[r], xk + r * a->ldx, ldg, b0, b1, b2, b3);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < mr; ++r)
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g)
            FN(store)(a->out + r * a->ldo + g * FL_W, acc[r][g]);
}

/* Training's backward step (fl_back in tiles.h).  The product keeps
 * the tile's fixed summation order: lane j of row r sums dh[r, j] +
 * dzn[r, 0] * rt[0, j] + dzn[r, 1] * rt[1, j] + ... */
/* acc[r][j] += the sum over the gate columns k in [k0, k0 + kn) of each
 * block q of dzn of dzn[r, q, k] * rt[q, k, j] (the backward product, or
 * one gate's part of it). */
FL_INLINE void
FN(back_product)(const int mr, const int nb, const FL_CAT(fl_back, FL_TS) *a,
                 const int k0, const int kn, V acc[][4])
{
    for (ptrdiff_t q = 0; q < a->K / (4 * FL_W); ++q) {
        const FL_T *zp = a->dzn + q * a->zstride;
        const FL_T *rp = a->rt + (q * 4 * FL_W + k0) * 4 * FL_W;
        for (int k = k0; k < k0 + kn; ++k, rp += 4 * FL_W) {
            V bv[4];
#pragma GCC unroll 4
            for (int j = 0; j < nb; ++j) {
                bv[j] = FN(load)(rp + j * FL_W);
                if (mr > 1 && mr < FL_MR)
                    FL_KEEP(bv[j]);
            }
#pragma GCC unroll 16
            for (int r = 0; r < mr; ++r) {
                V dv = FN(splat)(zp[r * a->ldz + k]);
#pragma GCC unroll 4
                for (int j = 0; j < nb; ++j)
                    acc[r][j] += dv * bv[j];
            }
        }
    }
}

FL_INLINE void
FN(back_rows)(const int mr, const int nb, const FL_CAT(fl_back, FL_TS) *a)
{
    V acc[FL_MR][4];
#pragma GCC unroll 16
    for (int r = 0; r < mr; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < nb; ++j)
            acc[r][j] = FN(load)(a->dh + r * a->lds + j * FL_W);
    if (a->gmask == NULL) {
        FN(back_product)(mr, nb, a, 0, 4 * FL_W, acc);
    } else if (a->K > 0) {      /* dropout: per gate block, times its mask */
        for (int g = 0; g < 4; ++g) {
            V part[FL_MR][4];
            const FL_T *m = a->gmask + g * a->gmstride;
#pragma GCC unroll 16
            for (int r = 0; r < mr; ++r)
#pragma GCC unroll 4
                for (int j = 0; j < nb; ++j)
                    part[r][j] = FN(splat)(0.0f);
            FN(back_product)(mr, nb, a, g * FL_W, FL_W, part);
#pragma GCC unroll 16
            for (int r = 0; r < mr; ++r)
#pragma GCC unroll 4
                for (int j = 0; j < nb; ++j)
                    acc[r][j] += part[r][j] * FN(load)(m + r * a->ldgm + j * FL_W);
        }
    }
    V d[FL_MR][4];
#pragma GCC unroll 16
    for (int r = 0; r < mr; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < nb; ++j)
            d[r][j] = acc[r][j];
    const V zero = FN(splat)(0.0f);
    if (a->rec == NULL) {       /* the gradient of the initial h */
        for (int r = 0; r < mr; ++r)
            for (int j = 0; j < nb; ++j)
                FN(store)(a->dh + r * a->lds + j * FL_W, d[r][j]);
        return;
    }
    const int fast = a->act == FL_ACT_TANH && a->rec_act == FL_ACT_SIGMOID;
    VI lanes;                   /* lane < nlast: zero dZ's padding lanes */
    for (int w = 0; w < FL_W; ++w)
        lanes[w] = w < a->nlast ? -1 : 0;
#pragma GCC unroll 1
    for (int r = 0; r < mr; ++r) {
#pragma GCC unroll 1
        for (int j = 0; j < nb; ++j) {
            const int n = j == nb - 1 ? a->nlast : FL_W;
            FL_T *dhp = a->dh + r * a->lds + j * FL_W;
            FL_T *dcp = a->dc + r * a->lds + j * FL_W;
            FL_T *dz = a->dz + j * a->zstride + r * a->ldz;
            V dh = d[r][j];
            V ext = a->dseq != NULL
                ? FN(load_part)(a->dseq + r * a->ldq + j * FL_W, n) : zero;
            if (a->mask != NULL) {
                /* The output is carried over masked steps and replaced by
                 * h at processed ones: its gradient waits in dy until then. */
                FL_T *dyp = a->dy + r * a->lds + j * FL_W;
                V dy = FN(load)(dyp) + ext;
                if (!a->mask[r * a->ldm]) {     /* skipped: carry dh, dc */
                    FN(store)(dyp, dy);
                    FN(store)(dhp, dh);
                    for (int g = 0; g < 4; ++g)
                        FN(store)(dz + g * FL_W, zero);
                    continue;
                }
                dh += dy;
                FN(store)(dyp, zero);
            } else {
                dh += ext;
            }
            const FL_T *rc = a->rec + r * a->ldr + j * 6 * FL_W;
            V i = FN(load)(rc), f = FN(load)(rc + FL_W);
            V g = FN(load)(rc + 2 * FL_W), o = FN(load)(rc + 3 * FL_W);
            V ac = FN(load)(rc + 5 * FL_W);
            V cp = FN(load)(a->cprev + r * a->ldr + j * 6 * FL_W + 4 * FL_W);
            V dc = FN(load)(dcp), di, df, dg, dout;
            if (fast) {
                dc += dh * o * (1.0f - ac * ac);
                di = dc * g * (i * (1.0f - i));
                df = dc * cp * (f * (1.0f - f));
                dg = dc * i * (1.0f - g * g);
                dout = dh * ac * (o * (1.0f - o));
            } else {
                V dact_i = FN(dact_recorded)(a->rec_act, i, &i);
                V dact_f = FN(dact_recorded)(a->rec_act, f, &f);
                V dact_g = FN(dact_recorded)(a->act, g, &g);
                V dact_o = FN(dact_recorded)(a->rec_act, o, &o);
                V dact_c = fl_act_records_input(a->act)
                    ? FN(dact_in)(a->act, FN(load)(rc + 4 * FL_W)) : FN(dact)(a->act, ac);
                dc += dh * o * dact_c;
                di = dc * g * dact_i;
                df = dc * cp * dact_f;
                dg = dc * i * dact_g;
                dout = dh * ac * dact_o;
            }
            if (n < FL_W) {     /* padding lanes may hold inf * 0 = NaN */
                di = FN(select)(lanes, di, zero);
                df = FN(select)(lanes, df, zero);
                dg = FN(select)(lanes, dg, zero);
                dout = FN(select)(lanes, dout, zero);
            }
            FN(store)(dz, di);
            FN(store)(dz + FL_W, df);
            FN(store)(dz + 2 * FL_W, dg);
            FN(store)(dz + 3 * FL_W, dout);
            FN(store)(dcp, dc * f);
            /* The next dh comes whole from the product with this dZ. */
            FN(store)(dhp, zero);
        }
    }
}

#if FL_MR >= 8
#define FL_MR_CASES_8(f) case 8: f(8, a); break; case 7: f(7, a); break;
#else
#define FL_MR_CASES_8(f)
#endif
#if FL_MR >= 6
#define FL_MR_CASES_6(f) case 6: f(6, a); break; case 5: f(5, a); break;
#else
#define FL_MR_CASES_6(f)
#endif
#if FL_MR >= 4
#define FL_MR_CASES_4(f) case 4: f(4, a); break;
#else
#define FL_MR_CASES_4(f)
#endif
#if FL_MR >= 3
#define FL_MR_CASES_3(f) case 3: f(3, a); break;
#else
#define FL_MR_CASES_3(f)
#endif
/* mr as a compile-time constant, so the row loops unroll into registers. */
#define FL_MR_SWITCH(f)                                                       \
    switch (mr) {                                                             \
    FL_MR_CASES_8(f) FL_MR_CASES_6(f) FL_MR_CASES_4(f) FL_MR_CASES_3(f)       \
    case 2: f(2, a); break;                                                   \
    default: f(1, a); break;                                                  \
    }

/* One operand for all gates, or one per gate (dropout), as a constant. */
#define FL_PROJ_SHARED(m, a) FN(proj_rows)(m, 0, a)
#define FL_PROJ_PER_GATE(m, a) FN(proj_rows)(m, 1, a)
#define FL_TILE_SHARED(m, a) FN(tile_rows)(m, 0, a)
#define FL_TILE_PER_GATE(m, a) FN(tile_rows)(m, 1, a)

static void FN(proj)(int mr, const FL_CAT(fl_proj, FL_TS) *a)
{
    if (a->ldg == 0) {
        FL_MR_SWITCH(FL_PROJ_SHARED)
    } else {
        FL_MR_SWITCH(FL_PROJ_PER_GATE)
    }
}

static void FN(tile)(int mr, const FL_CAT(fl_tile, FL_TS) *a)
{
    if (a->hg == NULL) {
        FL_MR_SWITCH(FL_TILE_SHARED)
    } else {
        FL_MR_SWITCH(FL_TILE_PER_GATE)
    }
}
#undef FL_PROJ_SHARED
#undef FL_PROJ_PER_GATE
#undef FL_TILE_SHARED
#undef FL_TILE_PER_GATE

/* The group's blocks as a compile-time constant too: no product is
 * computed for blocks past the last unit. */
#define FL_BACK_BLOCKS(m, a)                                                  \
    switch ((a)->nblk) {                                                      \
    case 1: FN(back_rows)(m, 1, a); break;                                    \
    case 2: FN(back_rows)(m, 2, a); break;                                    \
    case 3: FN(back_rows)(m, 3, a); break;                                    \
    default: FN(back_rows)(m, 4, a); break;                                   \
    }

static void FN(back)(int mr, const FL_CAT(fl_back, FL_TS) *a)
{
    FL_MR_SWITCH(FL_BACK_BLOCKS)
}
#undef FL_BACK_BLOCKS

/* Vector activations over n values (n a multiple of FL_W): the accuracy
 * test's window onto the code the tiles use. */
static void FN(activate)(int kind, const FL_T *x, FL_T *y, ptrdiff_t n)
{
    for (ptrdiff_t j = 0; j < n; j += FL_W)
        FN(store)(y + j, FN(act)(kind, FN(load)(x + j)));
}

/* The table row's width and rows (isa.c). */
enum { FN(width) = FL_W, FN(rows) = FL_MR };

#undef FL_MR_SWITCH
#undef FL_MR_CASES_8
#undef FL_MR_CASES_6
#undef FL_MR_CASES_4
#undef FL_MR_CASES_3
#undef V
#undef VI
#undef FN
#undef FL_CAT
#undef FL_CAT_
#undef FL_T
#undef FL_TS
#undef FL_LANE
#undef FL_ABS_BITS
#undef FL_SIGN_BITS