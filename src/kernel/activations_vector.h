/* The vector activations and their derivatives (activations.h has the
 * scalar ones, with the same semantics), for the vector type of vector.h;
 * included by tiles_vector.h once per instantiation.
 *
 * Vectorised Cephes-style approximations (expf/tanhf for float, exp/tanh
 * for double), accurate to a few ulps of their type: tests/test_simd.py
 * measures them against the correctly rounded values and NumPy's (at most
 * 2-3 ulps, float32 and float64).
 */
#if FL_F64
/* exp(x) for x <= 0 (or NaN, which propagates); results below DBL_MIN
 * flush to 0, where NumPy's values are subnormal or 0.  x = n ln2 + r,
 * |r| <= ln2 / 2 (Cephes's reduction), and exp(r) by its Taylor polynomial
 * of degree 13 (truncation under 0.03 ulp): no division, unlike Cephes's
 * Pade form, since a double division occupies the divider 8-16 cycles a
 * vector (the AVX-512 cell's 8 units made 12 of them, about a third of
 * the FMA time of their H = 256 product). */
FL_INLINE V FN(exp_neg)(V x)
{
    const V lo = FN(splat)(-708.39641853226410622);    /* log(DBL_MIN) */
    const V magic = FN(splat)(6755399441055744.0);     /* 1.5 * 2**52: rounds to int */
    VI under = x < lo;
    V xc = FN(select)(under, lo, x);
    V t = xc * 1.4426950408889634073599 + magic;
    V n = t - magic;                                    /* round(x / ln 2) */
    VI ni = (VI)t - (VI)magic;
    V r = xc - n * 6.93145751953125E-1;                 /* Cody-Waite: ln 2 = hi + lo */
    r = r - n * 1.42860682030941723212E-6;
    V p = 1.6059043836821613e-10 * r + 2.08767569878681e-09;      /* 1/13!, 1/12! */
    p = p * r + 2.505210838544172e-08;
    p = p * r + 2.755731922398589e-07;
    p = p * r + 2.7557319223985893e-06;
    p = p * r + 2.48015873015873e-05;
    p = p * r + 1.984126984126984e-04;
    p = p * r + 1.388888888888889e-03;
    p = p * r + 8.333333333333333e-03;
    p = p * r + 4.1666666666666664e-02;
    p = p * r + 1.6666666666666666e-01;
    p = p * r + 0.5;
    p = p * r + 1.0;
    V y = p * r + 1.0;
    y = y * (V)((ni + 1023) << 52);                     /* * 2**n, n in [-1022, 0] */
    return FN(select)(under, FN(splat)(0.0), y);
}
#else
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
#endif

/* 1 / (1 + exp(-x)) from exp(-|x|) <= 1, so nothing overflows. */
FL_INLINE V FN(sigmoid)(V x)
{
    V e = FN(exp_neg)(-FN(abs)(x));
    V s = 1.0f / (1.0f + e);
    return FN(select)(x < 0.0f, e * s, s);
}

/* Cephes tanhf / tanh: below 0.625 an odd polynomial (float) or x + x z
 * P(z) / Q(z), z = x^2 (double); above, (1 - e) / (1 + e) with
 * e = exp(-2|x|) (no cancellation there since e < 0.29). */
FL_INLINE V FN(tanh)(V x)
{
    V ax = FN(abs)(x);
    V z = x * x;
#if FL_F64
    V p = -9.64399179425052238628E-1 * z - 9.92877231001918586564E1;
    p = p * z - 1.61468768441708447952E3;
    V q = z + 1.12811678491632931402E2;
    q = q * z + 2.23548839060100448583E3;
    q = q * z + 4.84406305325125486048E3;
    V e = FN(exp_neg)(-2.0 * ax);
    /* One division for both forms, lane by lane: z P / Q below 0.625,
     * (1 - e) / (1 + e) above. */
    VI is_small = ax < 0.625;
    V ratio = FN(select)(is_small, z * p, 1.0 - e) / FN(select)(is_small, q, 1.0 + e);
    V small = x + x * ratio;
    V big = (V)((VI)ratio | ((VI)x & FL_SIGN_BITS));  /* sign of x */
    return FN(select)(is_small, small, big);
#else
    V p = -5.70498872745e-3f * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    V small = p * z * x + x;
    V e = FN(exp_neg)(-2.0f * ax);
    V big = (1.0f - e) / (1.0f + e);
    big = (V)((VI)big | ((VI)x & FL_SIGN_BITS));      /* sign of x */
    return FN(select)(ax < 0.625f, small, big);
#endif
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
        return FN(select)((y > 0.0f) & (y < 1.0f), FN(splat)((FL_T)1 / 6), zero);
    case FL_ACT_RELU: return FN(select)(y > 0.0f, one, zero);
    default: return one;
    }
}

