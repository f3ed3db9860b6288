/* The vector activations and their derivatives (activations.h has the
 * scalar ones, with the same semantics), for the vector type of vector.h;
 * included by tiles_vector.h once per instantiation.
 *
 * Vectorised Cephes-style approximations (expf/tanhf for float, exp/tanh
 * for double), accurate to a few ulps of their type: tests/test_simd.py
 * measures them against the correctly rounded values and NumPy's (at most
 * 2-3 ulps, float32 and float64).
 */
/* Every statement of a lockstep function runs over its n vectors (n a
 * constant where it is inlined): the n dependency chains then sit side by
 * side in the instruction stream, where the out-of-order core overlaps
 * them.  One exp_neg is a chain of about 18 dependent instructions (about
 * 70 cycles on Zen 3); the cell's five of them one after another left the
 * FMA units idle most of the time (issue 11: the cell step of 8 units took
 * about 100 cycles; with its exps in lockstep, a quarter less). */
#define FL_EACH(k, n) _Pragma("GCC unroll 16") for (int k = 0; k < (n); ++k)
/* The most vectors one lockstep call takes: a tile's rows or a row's gates. */
#define FL_EACH_MAX (FL_MR > 4 ? FL_MR : 4)

#if FL_F64
/* exp(x) for x <= 0 (or NaN, which propagates), n vectors in place;
 * results below DBL_MIN flush to 0, where NumPy's values are subnormal or
 * 0.  x = n ln2 + r, |r| <= ln2 / 2 (Cephes's reduction), and exp(r) by
 * its Taylor polynomial of degree 13 (truncation under 0.03 ulp): no
 * division, unlike Cephes's Pade form, since a double division occupies
 * the divider 8-16 cycles a vector (the AVX-512 cell's 8 units made 12 of
 * them, about a third of the FMA time of their H = 256 product). */
FL_INLINE void FN(exp_neg_each)(const int n, V x[])
{
    const V lo = FN(splat)(-708.39641853226410622);    /* log(DBL_MIN) */
    const V magic = FN(splat)(6755399441055744.0);     /* 1.5 * 2**52: rounds to int */
    VI under[FL_EACH_MAX];
    V t[FL_EACH_MAX], r[FL_EACH_MAX], p[FL_EACH_MAX];
    FL_EACH(k, n) under[k] = x[k] < lo;
    FL_EACH(k, n) x[k] = FN(select)(under[k], lo, x[k]);
    FL_EACH(k, n) t[k] = x[k] * 1.4426950408889634073599 + magic;
    FL_EACH(k, n) {
        V m = t[k] - magic;                             /* round(x / ln 2) */
        r[k] = x[k] - m * 6.93145751953125E-1;          /* Cody-Waite: ln 2 = hi + lo */
    }
    FL_EACH(k, n) r[k] = r[k] - (t[k] - magic) * 1.42860682030941723212E-6;
    FL_EACH(k, n) p[k] = 1.6059043836821613e-10 * r[k] + 2.08767569878681e-09;  /* 1/13!, 1/12! */
    FL_EACH(k, n) p[k] = p[k] * r[k] + 2.505210838544172e-08;
    FL_EACH(k, n) p[k] = p[k] * r[k] + 2.755731922398589e-07;
    FL_EACH(k, n) p[k] = p[k] * r[k] + 2.7557319223985893e-06;
    FL_EACH(k, n) p[k] = p[k] * r[k] + 2.48015873015873e-05;
    FL_EACH(k, n) p[k] = p[k] * r[k] + 1.984126984126984e-04;
    FL_EACH(k, n) p[k] = p[k] * r[k] + 1.388888888888889e-03;
    FL_EACH(k, n) p[k] = p[k] * r[k] + 8.333333333333333e-03;
    FL_EACH(k, n) p[k] = p[k] * r[k] + 4.1666666666666664e-02;
    FL_EACH(k, n) p[k] = p[k] * r[k] + 1.6666666666666666e-01;
    FL_EACH(k, n) p[k] = p[k] * r[k] + 0.5;
    FL_EACH(k, n) p[k] = p[k] * r[k] + 1.0;
    FL_EACH(k, n) p[k] = p[k] * r[k] + 1.0;
    FL_EACH(k, n) {                                     /* * 2**n, n in [-1022, 0] */
        VI ni = (VI)t[k] - (VI)magic;
        x[k] = FN(select)(under[k], FN(splat)(0.0), p[k] * (V)((ni + 1023) << 52));
    }
}
#else
/* exp(x) for x <= 0 (or NaN, which propagates), n vectors in place;
 * results below FLT_MIN flush to 0, where NumPy's float32 values are
 * subnormal or 0. */
FL_INLINE void FN(exp_neg_each)(const int n, V x[])
{
    const V lo = FN(splat)(-87.33654475f);      /* log(FLT_MIN) */
    const V magic = FN(splat)(12582912.0f);     /* 1.5 * 2**23: rounds to int */
    VI under[FL_EACH_MAX];
    V t[FL_EACH_MAX], r[FL_EACH_MAX], p[FL_EACH_MAX];
    FL_EACH(k, n) under[k] = x[k] < lo;
    FL_EACH(k, n) x[k] = FN(select)(under[k], lo, x[k]);
    FL_EACH(k, n) t[k] = x[k] * 1.44269504088896341f + magic;
    FL_EACH(k, n) {
        V m = t[k] - magic;                      /* round(x / ln 2) */
        r[k] = x[k] - m * 0.693359375f;          /* Cody-Waite: ln 2 = hi + lo */
    }
    FL_EACH(k, n) r[k] = r[k] - (t[k] - magic) * -2.12194440e-4f;
    FL_EACH(k, n) p[k] = 1.9875691500e-4f * r[k] + 1.3981999507e-3f;
    FL_EACH(k, n) p[k] = p[k] * r[k] + 8.3334519073e-3f;
    FL_EACH(k, n) p[k] = p[k] * r[k] + 4.1665795894e-2f;
    FL_EACH(k, n) p[k] = p[k] * r[k] + 1.6666665459e-1f;
    FL_EACH(k, n) p[k] = p[k] * r[k] + 5.0000001201e-1f;
    FL_EACH(k, n) p[k] = p[k] * (r[k] * r[k]) + r[k] + 1.0f;
    FL_EACH(k, n) {                              /* * 2**n, n in [-126, 0] */
        VI ni = (VI)t[k] - (VI)magic;
        x[k] = FN(select)(under[k], FN(splat)(0.0f), p[k] * (V)((ni + 127) << 23));
    }
}
#endif

FL_INLINE V FN(exp_neg)(V x)
{
    FN(exp_neg_each)(1, &x);
    return x;
}

/* 1 / (1 + exp(-x)) from e = exp(-|x|) <= 1, so nothing overflows. */
FL_INLINE V FN(sigmoid_of)(V x, V e)
{
    V s = 1.0f / (1.0f + e);
    return FN(select)(x < 0.0f, e * s, s);
}

FL_INLINE V FN(sigmoid)(V x) { return FN(sigmoid_of)(x, FN(exp_neg)(-FN(abs)(x))); }

/* Cephes tanhf / tanh from e = exp(-2|x|): below 0.625 an odd polynomial
 * (float) or x + x z P(z) / Q(z), z = x^2 (double); above, (1 - e) / (1 + e)
 * (no cancellation there since e < 0.29). */
FL_INLINE V FN(tanh_of)(V x, V e)
{
    V ax = FN(abs)(x);
    V z = x * x;
#if FL_F64
    V p = -9.64399179425052238628E-1 * z - 9.92877231001918586564E1;
    p = p * z - 1.61468768441708447952E3;
    V q = z + 1.12811678491632931402E2;
    q = q * z + 2.23548839060100448583E3;
    q = q * z + 4.84406305325125486048E3;
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
    V big = (1.0f - e) / (1.0f + e);
    big = (V)((VI)big | ((VI)x & FL_SIGN_BITS));      /* sign of x */
    return FN(select)(ax < 0.625f, small, big);
#endif
}

FL_INLINE V FN(tanh)(V x) { return FN(tanh_of)(x, FN(exp_neg)(-2.0f * FN(abs)(x))); }

/* tanh of n vectors, their exps in lockstep. */
FL_INLINE void FN(tanh_each)(const int n, const V x[], V out[])
{
    FL_EACH(k, n) out[k] = -2.0f * FN(abs)(x[k]);
    FN(exp_neg_each)(n, out);
    FL_EACH(k, n) out[k] = FN(tanh_of)(x[k], out[k]);
}

/* An LSTM cell's gates in place, sigmoid, sigmoid, tanh, sigmoid (i, f, g,
 * o), their four exps in lockstep. */
FL_INLINE void FN(lstm_gates)(V gate[4])
{
    V e[4] = {-FN(abs)(gate[0]), -FN(abs)(gate[1]), -2.0f * FN(abs)(gate[2]),
              -FN(abs)(gate[3])};
    FN(exp_neg_each)(4, e);
    gate[0] = FN(sigmoid_of)(gate[0], e[0]);
    gate[1] = FN(sigmoid_of)(gate[1], e[1]);
    gate[2] = FN(tanh_of)(gate[2], e[2]);
    gate[3] = FN(sigmoid_of)(gate[3], e[3]);
}

/* expm1(x) for x <= 0 (or NaN, which propagates): the Taylor series to
 * |x| = 1 (degree 11 float, 18 double: the first term left out is below a
 * tenth of an ulp), below that exp(x) - 1, which cancels nothing there
 * (|result| >= 0.63). */
FL_INLINE V FN(expm1_neg)(V x)
{
    static const double inv_factorial[19] = {      /* 1 / k! */
        1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040,
        1.0 / 40320, 1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600,
        1.0 / 6227020800.0, 1.0 / 87178291200.0, 1.0 / 1307674368000.0,
        1.0 / 20922789888000.0, 1.0 / 355687428096000.0, 1.0 / 6402373705728000.0};
#if FL_F64
    enum { N = 18 };
#else
    enum { N = 11 };
#endif
    V p = FN(splat)((FL_T)inv_factorial[N]);
#pragma GCC unroll 18
    for (int k = N - 1; k >= 1; --k)
        p = p * x + (FL_T)inv_factorial[k];
    return FN(select)(x >= -1.0f, x * p, FN(exp_neg)(x) - 1.0f);
}

/* log1p(u) for u in [0, 1] (or NaN): 2 atanh(s), s = u / (2 + u) <= 1/3,
 * by its odd series to s^17 (float) / s^35 (double): the rest is below a
 * tenth of an ulp. */
FL_INLINE V FN(log1p_unit)(V u)
{
#if FL_F64
    enum { K = 17 };
#else
    enum { K = 8 };
#endif
    V s = u / (2.0f + u), s2 = s * s;
    V p = FN(splat)((FL_T)(1.0 / (2 * K + 1)));
#pragma GCC unroll 17
    for (int k = K - 1; k >= 0; --k)
        p = p * s2 + (FL_T)(1.0 / (2 * k + 1));
    return 2.0f * s * p;
}

/* exp(x) over the whole line: exp_neg below 0, 1 / exp(-x/2) squared above
 * (overflows to inf past log(FLT_MAX) / log(DBL_MAX) as it should). */
FL_INLINE V FN(exp)(V x)
{
    V q = 1.0f / FN(exp_neg)(-0.5f * FN(abs)(x));
    return FN(select)(x > 0.0f, q * q, FN(exp_neg)(x));
}

/* Phi(x) (the normal CDF) and, in *gauss, exp(-x^2 / 2), for gelu.  With
 * t = |x| / sqrt 2 and u = 2 / (2 + t), erfc(t) = u exp(r(u) - t^2), where
 * r = log(erfc(t) exp(t^2) / u) is a Chebyshev series on u in [2/29, 1]
 * (t <= 27, beyond which erfc underflows in double; fitted by interpolation
 * at Chebyshev nodes against mpmath: |error| 2.2e-9 with 13 terms, 2.7e-17
 * with 27).  t^2 = x^2 / 2 is taken exactly, as hi^2 / 2 + hi lo + lo^2 / 2
 * where hi is |x| with the low half of its mantissa cleared (so hi^2 is
 * exact, with or without FMA contraction): rounding t^2 would cost 2 t^2
 * ulps. */
FL_INLINE V FN(phi_cdf)(V x, V *gauss)
{
#if FL_F64
    static const double c[] = {
        -0.61074015236656232, 0.6053584463434446, 0.013897604733136882,
        -0.0082649700815738587, -0.00054197078318436655, 0.00028857329895641369,
        1.5644867979424932e-05, -1.3803272977493721e-05, -4.2015533365509557e-09,
        7.1609791473728232e-07, -5.7738871328098782e-08, -3.4360012150176435e-08,
        6.7583734608912257e-09, 1.2157203904822408e-09, -5.3478307333198061e-10,
        -2.1216282970847344e-12, 3.1155475585942968e-11, -4.3065328406881583e-12,
        -1.1301154020866792e-12, 4.1786520630010832e-13, -5.7042813306121381e-15,
        -2.1553651948630374e-14, 4.1287416312323157e-15, 3.2147206840538463e-16,
        -2.6513859652364896e-16, 4.1797928642500852e-17, 1.4964608948198043e-18};
    const FL_LANE high_bits = (FL_LANE)0xFFFFFFFFF8000000ULL;  /* 26 of 53 */
#else
    static const float c[] = {
        -0.61074015236656232f, 0.60535844634344449f, 0.013897604733137147f,
        -0.0082649700815741797f, -0.00054197078318849519f, 0.00028857329897796731f,
        1.5644867985129214e-05f, -1.3803273395358927e-05f, -4.200423221149308e-09f,
        7.1610222127012317e-07f, -5.7770026803684728e-08f, -3.435789052187936e-08f,
        7.2931565342232096e-09f};
    const FL_LANE high_bits = (FL_LANE)0xFFFFF000;               /* 12 of 24 */
#endif
    enum { DEG = sizeof c / sizeof c[0] - 1 };
    const FL_T lim = (FL_T)38.183766184073569;         /* 27 sqrt 2 */
    V ax = FN(abs)(x);
    ax = FN(select)(ax > lim, FN(splat)(lim), ax);      /* NaN stays */
    V u = 2.0f / (2.0f + ax * (FL_T)0.70710678118654752440);
    V s = (u - (FL_T)0.068965517241379309) * (FL_T)(2 / (1 - 2.0 / 29)) - 1.0f;
    V b1 = FN(splat)(0.0f), b2 = b1;
#pragma GCC unroll 27
    for (int j = DEG; j >= 1; --j) {
        V b0 = 2.0f * s * b1 - b2 + c[j];
        b2 = b1;
        b1 = b0;
    }
    V r = s * b1 - b2 + c[0];
    V hi = (V)((VI)ax & high_bits), lo = ax - hi;
    V head = FN(exp_neg)(-0.5f * (hi * hi));
    V tail = -(hi * lo + 0.5f * (lo * lo));
    if (gauss != NULL)
        *gauss = head * FN(exp_neg)(tail);
    V half_erfc = 0.5f * u * head * FN(exp_neg)(r + tail);
    return FN(select)(x > 0.0f, 1.0f - half_erfc, half_erfc);
}

/* tanh(softplus(x)) from e = exp(-|x|) without cancellation:
 * (1 + 2e) / (1 + 2e + 2e^2) for x > 0, w / (w + 2), w = e (e + 2), below.
 * *dmish gets mish'(x) = t + x (1 - t^2) sigmoid(x) when asked. */
FL_INLINE V FN(tanh_softplus)(V x, V *dmish)
{
    V e = FN(exp_neg)(-FN(abs)(x));
    V n = 1.0f + 2.0f * e, d = n + 2.0f * e * e;
    V w = e * (e + 2.0f);
    VI pos = x > 0.0f;
    V t = FN(select)(pos, n / d, w / (w + 2.0f));
    if (dmish != NULL) {
        /* (1 - t^2) sigmoid(x): 4 e^2 (1 + e) / d^2 above 0,
         * 4 e (1 + e) / (w + 2)^2 below. */
        V den = FN(select)(pos, d, w + 2.0f);
        V num = 4.0f * e * (1.0f + e) * FN(select)(pos, e, FN(splat)(1.0f));
        *dmish = t + x * (num / (den * den));
    }
    return t;
}

/* Keras 3's hard_sigmoid: relu6(x + 3) / 6, NaN kept. */
FL_INLINE V FN(hard_sigmoid)(V x)
{
    V y = x + 3.0f;
    y = FN(select)(y <= 0.0f, FN(splat)(0.0f), y);
    y = FN(select)(y >= 6.0f, FN(splat)(6.0f), y);
    return y / 6.0f;
}

/* The activations past the first five, out of line: inlined into every
 * tile (the cell step, the backward step, the int8 step) they would
 * multiply the code of every instantiation for kinds rarely used.
 * Measured against float64 (for float) and long double / mpmath (for
 * double) on every ISA, with and without FMA, most ulps float / double
 * (tests/test_kernel_activations.py): elu 1/1, selu 2/3, gelu 6/5, silu
 * 3/3, softplus 3/3, softsign 1/1, exponential 4/5, relu6 0/0, leaky_relu
 * 1/1, hard_silu 2/2, mish 3/4.  Like exp_neg, results below 2^10 times
 * the smallest normal may flush to 0 (x e^x in silu and mish's tails). */
static __attribute__((noinline, unused)) V FN(act_more)(int kind, V x)
{
    switch (kind) {
    case FL_ACT_ELU:
        return FN(select)(x > 0.0f, x,
                          FN(expm1_neg)(FN(select)(x > 0.0f, FN(splat)(0.0f), x)));
    case FL_ACT_SELU: {
        V neg = (FL_T)FL_SELU_ALPHA
            * FN(expm1_neg)(FN(select)(x > 0.0f, FN(splat)(0.0f), x));
        return (FL_T)FL_SELU_SCALE * FN(select)(x > 0.0f, x, neg);
    }
    case FL_ACT_GELU: return x * FN(phi_cdf)(x, NULL);
    case FL_ACT_SILU: return x * FN(sigmoid)(x);
    case FL_ACT_SOFTPLUS:
        return FN(select)(x > 0.0f, x, FN(splat)(0.0f))
            + FN(log1p_unit)(FN(exp_neg)(-FN(abs)(x)));
    case FL_ACT_SOFTSIGN: return x / (1.0f + FN(abs)(x));
    case FL_ACT_EXPONENTIAL: return FN(exp)(x);
    case FL_ACT_RELU6: {
        V y = FN(select)(x < 0.0f, FN(splat)(0.0f), x);
        return FN(select)(y > 6.0f, FN(splat)(6.0f), y);
    }
    case FL_ACT_LEAKY_RELU: return FN(select)(x > 0.0f, x, (FL_T)FL_LEAKY_SLOPE * x);
    case FL_ACT_HARD_SILU: return x * FN(hard_sigmoid)(x);
    default: return x * FN(tanh_softplus)(x, NULL);   /* FL_ACT_MISH */
    }
}

FL_INLINE V FN(act)(int kind, V x)
{
    switch (kind) {
    case FL_ACT_TANH: return FN(tanh)(x);
    case FL_ACT_SIGMOID: return FN(sigmoid)(x);
    case FL_ACT_HARD_SIGMOID: return FN(hard_sigmoid)(x);
    case FL_ACT_RELU: return FN(select)(x < 0.0f, FN(splat)(0.0f), x);
    case FL_ACT_LINEAR: return x;
    default: return FN(act_more)(kind, x);
    }
}

/* dact past the first five (out of line, as act_more). */
static __attribute__((noinline, unused)) V FN(dact_more)(int kind, V y)
{
    const V zero = FN(splat)(0.0f), one = FN(splat)(1.0f);
    switch (kind) {
    case FL_ACT_ELU: return FN(select)(y > 0.0f, one, y + 1.0f);
    case FL_ACT_SELU:
        return FN(select)(y > 0.0f, FN(splat)((FL_T)FL_SELU_SCALE),
                          y + (FL_T)(FL_SELU_SCALE * FL_SELU_ALPHA));
    case FL_ACT_SOFTPLUS: return -FN(expm1_neg)(-y);
    case FL_ACT_SOFTSIGN: return (1.0f - FN(abs)(y)) * (1.0f - FN(abs)(y));
    case FL_ACT_EXPONENTIAL: return y;
    case FL_ACT_RELU6: return FN(select)((y > 0.0f) & (y < 6.0f), one, zero);
    default:  /* FL_ACT_LEAKY_RELU */
        return FN(select)(y > 0.0f, one, FN(splat)((FL_T)FL_LEAKY_SLOPE));
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
    case FL_ACT_LINEAR: return one;
    default: return FN(dact_more)(kind, y);
    }
}

/* Derivative from the input x, for fl_act_records_input's kinds. */
static __attribute__((noinline, unused)) V FN(dact_in)(int kind, V x)
{
    switch (kind) {
    case FL_ACT_GELU: {
        V gauss, phi = FN(phi_cdf)(x, &gauss);
        return phi + x * gauss * (FL_T)0.39894228040143267794;   /* 1 / sqrt(2 pi) */
    }
    case FL_ACT_SILU: {
        V s = FN(sigmoid)(x);
        return s * (1.0f + x * (1.0f - s));
    }
    case FL_ACT_HARD_SILU: {
        V inside = (x + x + 3.0f) * (FL_T)(1.0 / 6);
        V outside = FN(select)(x >= 3.0f, FN(splat)(1.0f), FN(splat)(0.0f));
        return FN(select)((x > -3.0f) & (x < 3.0f), inside, outside);
    }
    default: {  /* FL_ACT_MISH */
        V d;
        FN(tanh_softplus)(x, &d);
        return d;
    }
    }
}

/* The value and the derivative of an activation from what training
 * recorded: its output, or its input for fl_act_records_input's kinds. */
FL_INLINE V FN(dact_recorded)(int kind, V rec, V *value)
{
    if (fl_act_records_input(kind)) {
        *value = FN(act)(kind, rec);
        return FN(dact_in)(kind, rec);
    }
    *value = rec;
    return FN(dact)(kind, rec);
}

