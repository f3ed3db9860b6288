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

#include <stdint.h>
#include <string.h>

#include "lstm_cell.h"

/* The row loops are compiled for the baseline ISA and, where the toolchain
 * can dispatch at load time (GNU ifuncs on x86-64 Linux), also for AVX2 and
 * AVX-512, so wheels built for baseline x86-64 still use wide vectors. */
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) \
    && !defined(__clang__)
/* Feature names, not arch=: gcc dispatches arch= clones by CPU model. */
#define FL_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))
#else
#define FL_CLONES
#endif

/* float32 exp, sigmoid and tanh written so that gcc/clang vectorise the
 * row loops (no calls, no branches): Cephes's expf polynomial after
 * rounding x/ln2 with the 1.5 * 2^23 trick, ~1 ulp.  NaN propagates
 * (the clamps are comparisons that are false for NaN); +-inf saturate.
 * float64 keeps libm's exp and tanh.  Vectorising needs -fno-trapping-math
 * (setup.py), which lets the compiler evaluate both sides of a select. */
static inline float fl_exp_f32(float x)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an int */
    float n, r, p, scale;
    int32_t bits;
    x = x > 88.0f ? 88.0f : x;                 /* 2^n stays a normal float */
    x = x < -87.0f ? -87.0f : x;
    n = (x * 1.44269504088896341f + magic) - magic;
    r = x - n * 0.693359375f;                  /* ln 2 in two parts */
    r = r - n * -2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    bits = ((int32_t)n + 127) << 23;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float fl_sigmoid_f32(float x)
{
    return 1.0f / (1.0f + fl_exp_f32(-x));
}

static inline float fl_tanh_f32(float x)
{
    /* Cephes tanhf: an odd polynomial near 0 (where 1 - 2/(e^2x + 1)
     * would cancel), the exponential form elsewhere. */
    float z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z
                     - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z
                   - 3.33332819422e-1f) * z * x + x;
    float large = 1.0f - 2.0f / (fl_exp_f32(2.0f * x) + 1.0f);
    return (fabsf(x) < 0.625f) ? small : large;
}

static inline double fl_sigmoid_f64(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

static inline double fl_tanh_f64(double x)
{
    return tanh(x);
}

#define FL_DEFINE_TRAIN(T, SUF)                                    \
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
FL_CLONES static void fl_train_cell_row_##SUF(T *restrict z, T *restrict c,    \
                                           T *restrict h, T *restrict a,      \
                                           long U, int act, int rec_act)      \
{                                                                             \
    T *restrict zi = z, *restrict zf = z + U;                                 \
    T *restrict zg = z + 2 * U, *restrict zo = z + 3 * U;                     \
    long j;                                                                   \
    if (act == FL_ACT_TANH && rec_act == FL_ACT_SIGMOID) {                    \
        for (j = 0; j < U; ++j) {                                             \
            T i = fl_sigmoid_##SUF(zi[j]);                                    \
            T f = fl_sigmoid_##SUF(zf[j]);                                    \
            T g = fl_tanh_##SUF(zg[j]);                                       \
            T o = fl_sigmoid_##SUF(zo[j]);                                    \
            T cj = f * c[j] + i * g;                                          \
            T aj = fl_tanh_##SUF(cj);                                         \
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
FL_CLONES static void fl_train_cell_back_row_##SUF(                             \
    const T *restrict z, T *restrict dz, const T *restrict c_prev,            \
    const T *restrict a, const T *restrict dh, T *restrict dc, long U,        \
    int act, int rec_act)                                                     \
{                                                                             \
    const T *restrict zi = z, *restrict zf = z + U;                           \
    const T *restrict zg = z + 2 * U, *restrict zo = z + 3 * U;               \
    T *restrict di = dz, *restrict df = dz + U;                               \
    T *restrict dg = dz + 2 * U, *restrict dout = dz + 3 * U;                 \
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

FL_DEFINE_TRAIN(float, f32)
FL_DEFINE_TRAIN(double, f64)

#undef FL_DEFINE_TRAIN

#endif /* FASTLSTM_LSTM_TRAIN_H */
