/* The vector activations and their derivatives (activations.h has the
 * scalar ones, with the same semantics), for the vector type of vector.h;
 * included by tiles_vector.h once per instantiation.
 *
 * Vectorised Cephes-style approximations, accurate to a few float32 ulps
 * (tests/test_simd.py measures them against NumPy).
 */
#if FL_F64
#error "no float64 vector activations yet: isa.c's float64 rows use the portable tiles"
#endif

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
    big = (V)((VI)big | ((VI)x & FL_SIGN_BITS));      /* sign of x */
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

/* Derivative of an activation from its output y (see activations.h). */
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

