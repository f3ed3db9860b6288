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
 * hard_sigmoid' = 0 at x = +-3).
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
    FL_ACT_LINEAR = 4
};

#define FL_DEFINE_ACT(T, SUF, EXP, TANH)                                      \
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
    default: return (T)1; /* FL_ACT_LINEAR */                                 \
    }                                                                         \
}

FL_DEFINE_ACT(float, f32, expf, tanhf)
FL_DEFINE_ACT(double, f64, exp, tanh)

#undef FL_DEFINE_ACT

#endif /* FASTLSTM_ACTIVATIONS_H */
