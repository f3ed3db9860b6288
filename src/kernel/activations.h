/* Activation codes and the scalar activations and their derivatives, in
 * plain C, float and double.
 *
 * The portable tiles (tiles_portable.h) call these per element; the vector
 * tiles use activations_vector.h, which has the same semantics.
 *
 * NaN must propagate as it does in NumPy/PyTorch, so the piecewise
 * activations are written with comparisons that are false for NaN rather
 * than with fmin/fmax (which would silently drop a NaN).
 *
 * Every derivative is written in terms of the activation's *output* y, so
 * the forward pass of training stores activated values only:
 *   tanh' = 1 - y^2, sigmoid' = y (1 - y), hard_sigmoid' = 1/6 inside
 *   (0, 1) else 0, relu' = [y > 0], linear' = 1
 * (at the kinks this picks PyTorch's choices: relu'(0) = 0 and
 * hard_sigmoid' = 0 at x = +-3), and likewise
 *   elu' = 1 if y > 0 else y + 1, selu' = scale if y > 0 else y + scale alpha,
 *   softplus' = sigmoid(x) = -expm1(-y), softsign' = (1 - |y|)^2,
 *   exponential' = y, relu6' = [0 < y < 6], leaky_relu' = 1 if y > 0 else 0.2.
 * gelu, silu, hard_silu and mish are not monotonic: y does not determine
 * x, so training records their *input* instead (fl_act_records_input) and
 * fl_dact_in_* differentiates from it:
 *   gelu' = Phi(x) + x phi(x), silu' = s (1 + x (1 - s)) with s = sigmoid(x),
 *   hard_silu' = (2x + 3) / 6 inside (-3, 3), 0 below, 1 above,
 *   mish' = t + x (1 - t^2) sigmoid(x) with t = tanh(softplus(x)).
 *
 * Keras 3's definitions and default arguments: elu alpha = 1; selu's
 * constants; gelu approximate=False (the erf form, written with erfc so that
 * it keeps its relative accuracy for x << 0); leaky_relu negative_slope =
 * 0.2; swish = silu and hard_swish = hard_silu (fastlstm/activations.py maps
 * the aliases).
 */
#ifndef FASTLSTM_ACTIVATIONS_H
#define FASTLSTM_ACTIVATIONS_H

#include <math.h>

/* Activation codes; fastlstm/activations.py holds the same table. */
enum {
    FL_ACT_TANH = 0,
    FL_ACT_SIGMOID = 1,
    FL_ACT_HARD_SIGMOID = 2, /* Keras 3: relu6(x + 3) / 6 */
    FL_ACT_RELU = 3,
    FL_ACT_LINEAR = 4,
    FL_ACT_ELU = 5,
    FL_ACT_SELU = 6,
    FL_ACT_GELU = 7,
    FL_ACT_SILU = 8,
    FL_ACT_SOFTPLUS = 9,
    FL_ACT_SOFTSIGN = 10,
    FL_ACT_EXPONENTIAL = 11,
    FL_ACT_RELU6 = 12,
    FL_ACT_LEAKY_RELU = 13,
    FL_ACT_HARD_SILU = 14,
    FL_ACT_MISH = 15
};

/* keras.activations.selu's constants and leaky_relu's default slope. */
#define FL_SELU_ALPHA 1.6732632423543772848170429916717
#define FL_SELU_SCALE 1.0507009873554804934193349852946
#define FL_LEAKY_SLOPE 0.2

/* Whether training records the activation's input rather than its output
 * (its derivative is not a function of the output). */
static inline int fl_act_records_input(int kind)
{
    return kind == FL_ACT_GELU || kind == FL_ACT_SILU || kind == FL_ACT_HARD_SILU
        || kind == FL_ACT_MISH;
}

/* gelu(x) = x Phi(x) = x erfc(-x / sqrt 2) / 2, in double.  erfc(t)
 * multiplies the rounding error of t = -x / sqrt 2 by about 2 t^2 (1000
 * ulps at x = -32), so erfc is taken at the rounded t and corrected to first
 * order by erfc' = -2 / sqrt(pi) exp(-t^2) times t's rounding error d, which
 * fma recovers (1 / sqrt 2 = HI + LO). */
static inline double fl_gelu_f64_exact(double x)
{
    const double hi = 0.70710678118654757, lo = -4.8336466567264567e-17;
    double t = -x * hi;
    double d = fabs(x) <= 1e300 ? fma(-x, hi, -t) - x * lo : 0.0;   /* inf, NaN */
    return 0.5 * x * (erfc(t) - d * 1.1283791670955126 * exp(-t * t));
}

#define FL_DEFINE_ACT(T, SUF, EXP, TANH, EXPM1, LOG1P, ERFC)                  \
static inline T fl_act_##SUF(int kind, T x)                                   \
{                                                                             \
    switch (kind) {                                                           \
    case FL_ACT_TANH: return TANH(x);                                         \
    case FL_ACT_SIGMOID: return (T)1 / ((T)1 + EXP(-x));                      \
    case FL_ACT_HARD_SIGMOID: {                                               \
        T y = x + (T)3;                                                       \
        if (y <= (T)0) return (T)0;                                           \
        if (y >= (T)6) return (T)1;                                           \
        return y / (T)6;                                                      \
    }                                                                         \
    case FL_ACT_RELU: return x < (T)0 ? (T)0 : x;                             \
    case FL_ACT_ELU: return x > (T)0 ? x : EXPM1(x);                          \
    case FL_ACT_SELU:                                                         \
        return (T)FL_SELU_SCALE * (x > (T)0 ? x : (T)FL_SELU_ALPHA * EXPM1(x)); \
    case FL_ACT_GELU: return (T)fl_gelu_f64_exact(x);                         \
    case FL_ACT_SILU: return x / ((T)1 + EXP(-x));                            \
    case FL_ACT_SOFTPLUS: return (x > (T)0 ? x : (T)0) + LOG1P(EXP(-(T)fabs(x))); \
    case FL_ACT_SOFTSIGN: return x / ((T)1 + (T)fabs(x));                     \
    case FL_ACT_EXPONENTIAL: return EXP(x);                                   \
    case FL_ACT_RELU6: return x < (T)0 ? (T)0 : (x > (T)6 ? (T)6 : x);        \
    case FL_ACT_LEAKY_RELU: return x > (T)0 ? x : (T)FL_LEAKY_SLOPE * x;      \
    case FL_ACT_HARD_SILU: return x * fl_act_##SUF(FL_ACT_HARD_SIGMOID, x);   \
    case FL_ACT_MISH:                                                         \
        return x * TANH((x > (T)0 ? x : (T)0) + LOG1P(EXP(-(T)fabs(x))));     \
    default: return x; /* FL_ACT_LINEAR */                                    \
    }                                                                         \
}                                                                             \
                                                                              \
static inline T fl_dact_##SUF(int kind, T y)                                  \
{                                                                             \
    switch (kind) {                                                           \
    case FL_ACT_TANH: return (T)1 - y * y;                                    \
    case FL_ACT_SIGMOID: return y * ((T)1 - y);                               \
    case FL_ACT_HARD_SIGMOID: return (y > (T)0 && y < (T)1) ? (T)1 / (T)6 : (T)0; \
    case FL_ACT_RELU: return y > (T)0 ? (T)1 : (T)0;                          \
    case FL_ACT_ELU: return y > (T)0 ? (T)1 : y + (T)1;                       \
    case FL_ACT_SELU:                                                         \
        return y > (T)0 ? (T)FL_SELU_SCALE : y + (T)(FL_SELU_SCALE * FL_SELU_ALPHA); \
    case FL_ACT_SOFTPLUS: return -EXPM1(-y);                                  \
    case FL_ACT_SOFTSIGN: return ((T)1 - (T)fabs(y)) * ((T)1 - (T)fabs(y));   \
    case FL_ACT_EXPONENTIAL: return y;                                        \
    case FL_ACT_RELU6: return (y > (T)0 && y < (T)6) ? (T)1 : (T)0;           \
    case FL_ACT_LEAKY_RELU: return y > (T)0 ? (T)1 : (T)FL_LEAKY_SLOPE;       \
    default: return (T)1; /* FL_ACT_LINEAR */                                 \
    }                                                                         \
}                                                                             \
                                                                              \
/* The derivative from the input x, for fl_act_records_input's kinds. */      \
static inline T fl_dact_in_##SUF(int kind, T x)                               \
{                                                                             \
    switch (kind) {                                                           \
    case FL_ACT_GELU:                                                         \
        return (T)0.5 * ERFC(-x * (T)0.70710678118654752440)                  \
            + x * EXP((T)-0.5 * x * x) * (T)0.39894228040143267794;           \
    case FL_ACT_SILU: {                                                       \
        T s = (T)1 / ((T)1 + EXP(-x));                                        \
        return s * ((T)1 + x * ((T)1 - s));                                   \
    }                                                                         \
    case FL_ACT_HARD_SILU:                                                    \
        if (x > (T)-3 && x < (T)3) return (x + x + (T)3) / (T)6;              \
        return x >= (T)3 ? (T)1 : (T)0;                                       \
    default: { /* FL_ACT_MISH */                                              \
        T t = TANH((x > (T)0 ? x : (T)0) + LOG1P(EXP(-(T)fabs(x))));          \
        return t + x * ((T)1 - t * t) / ((T)1 + EXP(-x));                     \
    }                                                                         \
    }                                                                         \
}                                                                             \
                                                                              \
/* The value and the derivative from what training recorded: the output, or   \
 * the input for fl_act_records_input's kinds. */                             \
static inline T fl_dact_recorded_##SUF(int kind, T rec, T *value)             \
{                                                                             \
    if (fl_act_records_input(kind)) {                                         \
        *value = fl_act_##SUF(kind, rec);                                     \
        return fl_dact_in_##SUF(kind, rec);                                   \
    }                                                                         \
    *value = rec;                                                             \
    return fl_dact_##SUF(kind, rec);                                          \
}

FL_DEFINE_ACT(float, f32, expf, tanhf, expm1f, log1pf, erfcf)
FL_DEFINE_ACT(double, f64, exp, tanh, expm1, log1p, erfc)

#undef FL_DEFINE_ACT

#endif /* FASTLSTM_ACTIVATIONS_H */
