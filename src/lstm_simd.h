/* One float32 SIMD tile of the fused LSTM step, written once with GCC
 * vector extensions and instantiated per instruction set by lstm_layer.h:
 *
 *   #define FL_SUF avx512     name suffix of everything defined here
 *   #define FL_W 16           lanes (floats) per vector
 *   #define FL_MR 6           most batch rows per tile
 *   a target region (GCC or clang) set by the includer around the #include
 *
 * A tile owns `mr` batch rows and one block of W units.  Its 4*mr gate
 * vectors (i, f, c, o for each row) stay in registers from the input
 * projection through `h_prev @ U` to the cell update, and h is stored once.
 *
 * Lane arithmetic is identical for every tile shape: lane j of row r sums
 * x_proj + h[r, 0] * U[0, j] + h[r, 1] * U[1, j] + ... in that order, so a
 * result never depends on how rows or blocks are split between threads.
 *
 * The activations are vectorised Cephes-style approximations, accurate to a
 * few float32 ulps (tests/test_simd.py measures them against NumPy).
 *
 * Training (lstm_train.h) runs the same tile with a record of each step
 * (`rec`), the `proj` tile for the weight gradients x^T @ dZ too (x read
 * down its columns), and one more tile of the same shape: `back`
 * (dh_prev = dZ @ R^T fused with the cell's backward step), which keeps
 * the fixed per-lane summation order.
 */
#define FL_CAT_(a, b) a##_##b
#define FL_CAT(a, b) FL_CAT_(a, b)
#define FN(name) FL_CAT(fl_##name, FL_SUF)
#define V FN(vf)
#define VI FN(vi)

#ifndef FL_INLINE
/* Vectors cross no call boundary: a call would pass them through memory. */
#define FL_INLINE static inline __attribute__((always_inline))
#endif

typedef float V __attribute__((vector_size(FL_W * 4)));
typedef int VI __attribute__((vector_size(FL_W * 4)));

FL_INLINE V FN(load)(const float *p) { V v; memcpy(&v, p, sizeof v); return v; }
FL_INLINE void FN(store)(float *p, V v) { memcpy(p, &v, sizeof v); }
/* Broadcast through the integer bits: 0.0f + s cannot be folded (it turns
 * -0.0 into +0.0), so a float splat would cost an add per broadcast. */
FL_INLINE V FN(splat)(float s)
{
    int bits;
    memcpy(&bits, &s, sizeof bits);
    return (V)((VI){0} + bits);
}
/* mask ? a : b, lane by lane (mask lanes are 0 or -1, as comparisons give). */
FL_INLINE V FN(select)(VI mask, V a, V b)
{
    return (V)((mask & (VI)a) | (~mask & (VI)b));
}
FL_INLINE V FN(abs)(V x) { return (V)((VI)x & 0x7fffffff); }

/* exp(x) for x <= 0 (or NaN, which propagates); results below FLT_MIN
 * flush to 0, where NumPy's float32 values are subnormal or 0. */
FL_INLINE V FN(exp_neg)(V x)
{
    const V lo = FN(splat)(-87.33654475f);      /* log(FLT_MIN) */
    const V magic = FN(splat)(12582912.0f);     /* 1.5 * 2**23: rounds to int */
    VI under = x < lo;
    V xc = FN(select)(under, lo, x);
    V t = xc * 1.44269504088896341f + magic;
    V n = t - magic;                             /* round(x / ln 2) */
    VI ni = (VI)t - (VI)magic;
    V r = xc - n * 0.693359375f;                 /* Cody-Waite: ln 2 = hi + lo */
    r = r - n * -2.12194440e-4f;
    V p = 1.9875691500e-4f * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    V y = p * (r * r) + r + 1.0f;
    y = y * (V)((ni + 127) << 23);               /* * 2**n, n in [-126, 0] */
    return FN(select)(under, FN(splat)(0.0f), y);
}

/* 1 / (1 + exp(-x)) from exp(-|x|) <= 1, so nothing overflows. */
FL_INLINE V FN(sigmoid)(V x)
{
    V e = FN(exp_neg)(-FN(abs)(x));
    V s = 1.0f / (1.0f + e);
    return FN(select)(x < 0.0f, e * s, s);
}

/* Cephes tanhf: odd polynomial below 0.625, (1 - e) / (1 + e) with
 * e = exp(-2|x|) above (no cancellation there since e < 0.29). */
FL_INLINE V FN(tanh)(V x)
{
    V ax = FN(abs)(x);
    V z = x * x;
    V p = -5.70498872745e-3f * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    V small = p * z * x + x;
    V e = FN(exp_neg)(-2.0f * ax);
    V big = (1.0f - e) / (1.0f + e);
    big = (V)((VI)big | ((VI)x & (int)0x80000000));   /* sign of x */
    return FN(select)(ax < 0.625f, small, big);
}

FL_INLINE V FN(act)(int kind, V x)
{
    switch (kind) {
    case FL_ACT_TANH: return FN(tanh)(x);
    case FL_ACT_SIGMOID: return FN(sigmoid)(x);
    case FL_ACT_HARD_SIGMOID: {
        V y = x + 3.0f;
        y = FN(select)(y <= 0.0f, FN(splat)(0.0f), y);
        y = FN(select)(y >= 6.0f, FN(splat)(6.0f), y);
        return y / 6.0f;
    }
    case FL_ACT_RELU: return FN(select)(x < 0.0f, FN(splat)(0.0f), x);
    default: return x;
    }
}

FL_INLINE void
FN(tile_rows)(const int mr, const fl_tile_f32 *a)
{
    V acc[FL_MR][4];
    const float *rp = a->r;
    ptrdiff_t k;
#pragma GCC unroll 16
    for (int r = 0; r < mr; ++r)
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g)
            acc[r][g] = FN(load)(a->x + r * a->ldx + g * FL_W);
    for (k = 0; k < a->U; ++k, rp += 4 * FL_W) {
        V b0 = FN(load)(rp), b1 = FN(load)(rp + FL_W);
        V b2 = FN(load)(rp + 2 * FL_W), b3 = FN(load)(rp + 3 * FL_W);
#pragma GCC unroll 16
        for (int r = 0; r < mr; ++r) {
            V hv = FN(splat)(a->h[r * a->ldh + k]);
            acc[r][0] += hv * b0;
            acc[r][1] += hv * b1;
            acc[r][2] += hv * b2;
            acc[r][3] += hv * b3;
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
    const int fast = a->act == FL_ACT_TANH && a->rec_act == FL_ACT_SIGMOID;
#pragma GCC unroll 1
    for (int r = 0; r < mr; ++r) {
        float *c = a->c + r * a->ldc, *hn = a->hn + r * a->ldc;
        V i, f, g, o, cn, ac, h, out;
        V cold = FN(load)(c);
        if (fast) {
            i = FN(sigmoid)(z[r][0]);
            f = FN(sigmoid)(z[r][1]);
            g = FN(tanh)(z[r][2]);
            o = FN(sigmoid)(z[r][3]);
            cn = f * cold + i * g;
            ac = FN(tanh)(cn);
        } else {
            i = FN(act)(a->rec_act, z[r][0]);
            f = FN(act)(a->rec_act, z[r][1]);
            g = FN(act)(a->act, z[r][2]);
            o = FN(act)(a->rec_act, z[r][3]);
            cn = f * cold + i * g;
            ac = FN(act)(a->act, cn);
        }
        h = o * ac;
        out = h;
        if (a->mask != NULL) {
            float *y = a->y + r * a->ldc;
            if (a->mask[r * a->ldm]) {
                FN(store)(y, h);
            } else {    /* skipped step: carry h and c, repeat the output */
                h = FN(load)(a->h + r * a->ldh + a->col);
                cn = cold;
                out = FN(load)(y);
            }
        }
        FN(store)(c, cn);
        FN(store)(hn, h);
        if (a->rec != NULL) {
            float *rc = a->rec + r * a->ldr;
            FN(store)(rc, i);
            FN(store)(rc + FL_W, f);
            FN(store)(rc + 2 * FL_W, g);
            FN(store)(rc + 3 * FL_W, o);
            FN(store)(rc + 4 * FL_W, cn);
            FN(store)(rc + 5 * FL_W, ac);
        }
        if (a->seq != NULL) {
            if (a->nvalid == FL_W) {
                FN(store)(a->seq + r * a->lds, out);
            } else {
                float tmp[FL_W];
                FN(store)(tmp, out);
                memcpy(a->seq + r * a->lds, tmp, a->nvalid * sizeof(float));
            }
        }
    }
}

/* Product rows (fl_proj in lstm_layer.h): out[r] = init[r] + the sum over k
 * of x[r * ldx + k * ldk] * panel[k], for mr rows and one block. */
FL_INLINE void
FN(proj_rows)(const int mr, const fl_proj_f32 *a)
{
    V acc[FL_MR][4];
    const float *kp = a->kp;
#pragma GCC unroll 16
    for (int r = 0; r < mr; ++r)
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g)
            acc[r][g] = a->bias != NULL ? FN(load)(a->bias + r * a->ldb + g * FL_W)
                                        : FN(splat)(0.0f);
    for (ptrdiff_t k = 0; k < a->n_in; ++k, kp += 4 * FL_W) {
        V b0 = FN(load)(kp), b1 = FN(load)(kp + FL_W);
        V b2 = FN(load)(kp + 2 * FL_W), b3 = FN(load)(kp + 3 * FL_W);
        const float *xk = a->x + k * a->ldk;
#pragma GCC unroll 16
        for (int r = 0; r < mr; ++r) {
            V xv = FN(splat)(xk[r * a->ldx]);
            acc[r][0] += xv * b0;
            acc[r][1] += xv * b1;
            acc[r][2] += xv * b2;
            acc[r][3] += xv * b3;
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < mr; ++r)
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g)
            FN(store)(a->out + r * a->ldo + g * FL_W, acc[r][g]);
}

/* Derivative of an activation from its output y (see lstm_train.h). */
FL_INLINE V FN(dact)(int kind, V y)
{
    const V zero = FN(splat)(0.0f), one = FN(splat)(1.0f);
    switch (kind) {
    case FL_ACT_TANH: return 1.0f - y * y;
    case FL_ACT_SIGMOID: return y * (1.0f - y);
    case FL_ACT_HARD_SIGMOID:
        return FN(select)((y > 0.0f) & (y < 1.0f), FN(splat)(1.0f / 6.0f), zero);
    case FL_ACT_RELU: return FN(select)(y > 0.0f, one, zero);
    default: return one;
    }
}

/* n <= W floats, the rest of the vector zero. */
FL_INLINE V FN(load_part)(const float *p, int n)
{
    if (n == FL_W)
        return FN(load)(p);
    float tmp[FL_W] = {0};
    memcpy(tmp, p, n * sizeof(float));
    return FN(load)(tmp);
}

/* Training's backward step (fl_back in lstm_layer.h).  The product keeps
 * the tile's fixed summation order: lane j of row r sums dh[r, j] +
 * dzn[r, 0] * rt[0, j] + dzn[r, 1] * rt[1, j] + ... */
FL_INLINE void
FN(back_rows)(const int mr, const int nb, const fl_back_f32 *a)
{
    V acc[FL_MR][4];
    const float *rp = a->rt;
#pragma GCC unroll 16
    for (int r = 0; r < mr; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < nb; ++j)
            acc[r][j] = FN(load)(a->dh + r * a->lds + j * FL_W);
    for (ptrdiff_t q = 0; q < a->K / (4 * FL_W); ++q) {
        const float *zp = a->dzn + q * a->zstride;
        for (int k = 0; k < 4 * FL_W; ++k, rp += 4 * FL_W) {
            V bv[4];
#pragma GCC unroll 4
            for (int j = 0; j < nb; ++j)
                bv[j] = FN(load)(rp + j * FL_W);
#pragma GCC unroll 16
            for (int r = 0; r < mr; ++r) {
                V dv = FN(splat)(zp[r * a->ldz + k]);
#pragma GCC unroll 4
                for (int j = 0; j < nb; ++j)
                    acc[r][j] += dv * bv[j];
            }
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
            float *dhp = a->dh + r * a->lds + j * FL_W;
            float *dcp = a->dc + r * a->lds + j * FL_W;
            float *dz = a->dz + j * a->zstride + r * a->ldz;
            V dh = d[r][j];
            V ext = a->dseq != NULL
                ? FN(load_part)(a->dseq + r * a->ldq + j * FL_W, n) : zero;
            if (a->mask != NULL) {
                /* The output is carried over masked steps and replaced by
                 * h at processed ones: its gradient waits in dy until then. */
                float *dyp = a->dy + r * a->lds + j * FL_W;
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
            const float *rc = a->rec + r * a->ldr + j * 6 * FL_W;
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
                dc += dh * o * FN(dact)(a->act, ac);
                di = dc * g * FN(dact)(a->rec_act, i);
                df = dc * cp * FN(dact)(a->rec_act, f);
                dg = dc * i * FN(dact)(a->act, g);
                dout = dh * ac * FN(dact)(a->rec_act, o);
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
/* mr as a compile-time constant, so the row loops unroll into registers. */
#define FL_MR_SWITCH(f)                                                       \
    switch (mr) {                                                             \
    FL_MR_CASES_8(f) FL_MR_CASES_6(f) FL_MR_CASES_4(f)                        \
    case 3: f(3, a); break;                                                   \
    case 2: f(2, a); break;                                                   \
    default: f(1, a); break;                                                  \
    }

static void FN(proj)(int mr, const fl_proj_f32 *a)
{
    FL_MR_SWITCH(FN(proj_rows))
}

static void FN(tile)(int mr, const fl_tile_f32 *a)
{
    FL_MR_SWITCH(FN(tile_rows))
}

/* The group's blocks as a compile-time constant too: no product is
 * computed for blocks past the last unit. */
#define FL_BACK_BLOCKS(m, a)                                                  \
    switch ((a)->nblk) {                                                      \
    case 1: FN(back_rows)(m, 1, a); break;                                    \
    case 2: FN(back_rows)(m, 2, a); break;                                    \
    case 3: FN(back_rows)(m, 3, a); break;                                    \
    default: FN(back_rows)(m, 4, a); break;                                   \
    }

FL_UNUSED static void FN(back)(int mr, const fl_back_f32 *a)
{
    FL_MR_SWITCH(FL_BACK_BLOCKS)
}
#undef FL_BACK_BLOCKS

/* Vector activations over n floats (n a multiple of FL_W): the accuracy
 * test's window onto the code the tiles use. */
static void FN(activate)(int kind, const float *x, float *y, ptrdiff_t n)
{
    for (ptrdiff_t j = 0; j < n; j += FL_W)
        FN(store)(y + j, FN(act)(kind, FN(load)(x + j)));
}

#undef FL_MR_SWITCH
#undef FL_MR_CASES_8
#undef FL_MR_CASES_6
#undef FL_MR_CASES_4
#undef V
#undef VI
#undef FN
#undef FL_CAT
#undef FL_CAT_
