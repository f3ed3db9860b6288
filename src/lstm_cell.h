/* Activation codes and the scalar activations, in plain C.
 *
 * The portable tile (lstm_portable.h) calls these per element; the SIMD
 * tiles (lstm_simd.h) have vector versions with the same semantics.
 *
 * NaN must propagate as it does in NumPy/PyTorch, so the piecewise
 * activations are written with comparisons that are false for NaN rather
 * than with fmin/fmax (which would silently drop a NaN).
 */
#ifndef FASTLSTM_LSTM_CELL_H
#define FASTLSTM_LSTM_CELL_H

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
}

FL_DEFINE_ACT(float, f32, expf, tanhf)
FL_DEFINE_ACT(double, f64, exp, tanh)

#undef FL_DEFINE_ACT

#endif /* FASTLSTM_LSTM_CELL_H */
