/* The LSTM cell's pointwise half for training: a forward step that keeps
 * what the backward step needs, and that backward step.
 *
 * Plain C over float and double (one macro), built on the activation table
 * of lstm_cell.h.  Every activation's derivative is written in terms of the
 * activation's *output*, so the forward pass stores activated values only:
 *   tanh' = 1 - y^2, sigmoid' = y (1 - y), hard_sigmoid' = 1/6 inside
 *   (0, 1) else 0, relu' = [y > 0], linear' = 1
 * (at the kinks this picks PyTorch's choices: relu'(0) = 0 and
 * hard_sigmoid' = 0 at x = +-3).
 */
#ifndef FASTLSTM_LSTM_TRAIN_H
#define FASTLSTM_LSTM_TRAIN_H

#include "lstm_cell.h"

#define FL_DEFINE_TRAIN(T, SUF, EXP, TANH)                                    \
static inline T fl_dact_##SUF(int kind, T y)                                  \
{                                                                             \
    switch (kind) {                                                           \
    case FL_ACT_TANH: return (T)1 - y * y;                                    \
    case FL_ACT_SIGMOID: return y * ((T)1 - y);                               \
    case FL_ACT_HARD_SIGMOID: return (y > (T)0 && y < (T)1) ? (T)1 / (T)6 : (T)0; \
    case FL_ACT_RELU: return y > (T)0 ? (T)1 : (T)0;                          \
    default: return (T)1; /* FL_ACT_LINEAR */                                 \
    }                                                                         \
}                                                                             \
                                                                              \
/* z: [4U] in: pre-activations i, f, c, o; out: the activated gates.         \
 * c: [U] in: c_prev, out: c.  h: [U] out.  a: [U] out: act(c). */            \
static inline void fl_train_cell_row_##SUF(T *z, T *c, T *h, T *a, long U,   \
                                           int act, int rec_act)              \
{                                                                             \
    T *zi = z, *zf = z + U, *zg = z + 2 * U, *zo = z + 3 * U;                 \
    long j;                                                                   \
    if (act == FL_ACT_TANH && rec_act == FL_ACT_SIGMOID) {                    \
        for (j = 0; j < U; ++j) {                                             \
            T i = (T)1 / ((T)1 + EXP(-zi[j]));                                \
            T f = (T)1 / ((T)1 + EXP(-zf[j]));                                \
            T g = TANH(zg[j]);                                                \
            T o = (T)1 / ((T)1 + EXP(-zo[j]));                                \
            T cj = f * c[j] + i * g;                                          \
            T aj = TANH(cj);                                                  \
            zi[j] = i; zf[j] = f; zg[j] = g; zo[j] = o;                       \
            c[j] = cj; a[j] = aj; h[j] = o * aj;                              \
        }                                                                     \
        return;                                                               \
    }                                                                         \
    for (j = 0; j < U; ++j) {                                                 \
        T i = fl_act_##SUF(rec_act, zi[j]);                                   \
        T f = fl_act_##SUF(rec_act, zf[j]);                                   \
        T g = fl_act_##SUF(act, zg[j]);                                       \
        T o = fl_act_##SUF(rec_act, zo[j]);                                   \
        T cj = f * c[j] + i * g;                                              \
        T aj = fl_act_##SUF(act, cj);                                         \
        zi[j] = i; zf[j] = f; zg[j] = g; zo[j] = o;                           \
        c[j] = cj; a[j] = aj; h[j] = o * aj;                                  \
    }                                                                         \
}                                                                             \
                                                                              \
/* z: [4U] activated gates of the step.  dz: [4U] out: dL/d(pre-activations). \
 * c_prev: [U] the step's incoming c.  a: [U] act(c) of the step.            \
 * dh: [U] dL/dh of the step's output h.                                     \
 * dc: [U] in: dL/dc of the step's c; out: dL/dc_prev. */                     \
static inline void fl_train_cell_back_row_##SUF(const T *z, T *dz,           \
                                                const T *c_prev, const T *a,  \
                                                const T *dh, T *dc, long U,   \
                                                int act, int rec_act)         \
{                                                                             \
    const T *zi = z, *zf = z + U, *zg = z + 2 * U, *zo = z + 3 * U;           \
    T *di = dz, *df = dz + U, *dg = dz + 2 * U, *dout = dz + 3 * U;           \
    long j;                                                                   \
    if (act == FL_ACT_TANH && rec_act == FL_ACT_SIGMOID) {                    \
        for (j = 0; j < U; ++j) {                                             \
            T i = zi[j], f = zf[j], g = zg[j], o = zo[j], aj = a[j];          \
            T dct = dc[j] + dh[j] * o * ((T)1 - aj * aj);                     \
            di[j] = dct * g * i * ((T)1 - i);                                 \
            df[j] = dct * c_prev[j] * f * ((T)1 - f);                         \
            dg[j] = dct * i * ((T)1 - g * g);                                 \
            dout[j] = dh[j] * aj * o * ((T)1 - o);                              \
            dc[j] = dct * f;                                                  \
        }                                                                     \
        return;                                                               \
    }                                                                         \
    for (j = 0; j < U; ++j) {                                                 \
        T i = zi[j], f = zf[j], g = zg[j], o = zo[j], aj = a[j];              \
        T dct = dc[j] + dh[j] * o * fl_dact_##SUF(act, aj);                   \
        di[j] = dct * g * fl_dact_##SUF(rec_act, i);                          \
        df[j] = dct * c_prev[j] * fl_dact_##SUF(rec_act, f);                  \
        dg[j] = dct * i * fl_dact_##SUF(act, g);                              \
        dout[j] = dh[j] * aj * fl_dact_##SUF(rec_act, o);                       \
        dc[j] = dct * f;                                                      \
    }                                                                         \
}

FL_DEFINE_TRAIN(float, f32, expf, tanhf)
FL_DEFINE_TRAIN(double, f64, exp, tanh)

#undef FL_DEFINE_TRAIN

#endif /* FASTLSTM_LSTM_TRAIN_H */
