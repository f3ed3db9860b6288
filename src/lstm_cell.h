/* The LSTM cell's pointwise half: gate activations, cell update, output.
 *
 * Plain C with no Python in it, written once over float and double by a
 * macro.  The kernel (_kernel.pyx) calls one function per batch row and step
 * after the recurrent product has been added into that row's gates.
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

#define FL_DEFINE_CELL(T, SUF, EXP, TANH)                                     \
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
/* z: [4U] pre-activations in gate order i, f, c, o (overwritten);           \
 * c, h: [U] cell and hidden state of one row, updated in place. */           \
static inline void fl_cell_row_##SUF(T *z, T *c, T *h, long U,                \
                                     int act, int rec_act)                    \
{                                                                             \
    const T *zi = z, *zf = z + U, *zg = z + 2 * U, *zo = z + 3 * U;           \
    long j;                                                                   \
    if (act == FL_ACT_TANH && rec_act == FL_ACT_SIGMOID) {                    \
        /* Keras's default: no per-element dispatch. */                       \
        for (j = 0; j < U; ++j) {                                             \
            T i = (T)1 / ((T)1 + EXP(-zi[j]));                                \
            T f = (T)1 / ((T)1 + EXP(-zf[j]));                                \
            T g = TANH(zg[j]);                                                \
            T o = (T)1 / ((T)1 + EXP(-zo[j]));                                \
            T cj = f * c[j] + i * g;                                          \
            c[j] = cj;                                                        \
            h[j] = o * TANH(cj);                                              \
        }                                                                     \
        return;                                                               \
    }                                                                         \
    for (j = 0; j < U; ++j) {                                                 \
        T i = fl_act_##SUF(rec_act, zi[j]);                                   \
        T f = fl_act_##SUF(rec_act, zf[j]);                                   \
        T g = fl_act_##SUF(act, zg[j]);                                       \
        T o = fl_act_##SUF(rec_act, zo[j]);                                   \
        T cj = f * c[j] + i * g;                                              \
        c[j] = cj;                                                            \
        h[j] = o * fl_act_##SUF(act, cj);                                     \
    }                                                                         \
}

FL_DEFINE_CELL(float, f32, expf, tanhf)
FL_DEFINE_CELL(double, f64, exp, tanh)

#undef FL_DEFINE_CELL

#endif /* FASTLSTM_LSTM_CELL_H */
