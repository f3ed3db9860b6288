/* The cell math of the per-step BLAS training path (dropout.h), which
 * _kernel.pyx drives for recurrent dropout: its masks differ per gate
 * block, which changes each block's product.
 */
#include <string.h>
#include "activations.h"
#include "dropout.h"
#include "isa.h"

/* The row loops are compiled for the baseline ISA and, where the toolchain
 * can dispatch at load time (GNU ifuncs on x86-64 Linux), also for AVX2 and
 * AVX-512, so wheels built for baseline x86-64 still use wide vectors. */
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)            \
    && !defined(__clang__)
/* Feature names, not arch=: gcc dispatches arch= clones by CPU model. */
#define FL_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))
#else
#define FL_CLONES
#endif

/* y = act(x) over n values with the activations of instruction set isa's
 * tiles (isa.h's table; a tail shorter than a vector goes through a
 * buffer). */
#define FL_DEFINE_ACTIVATE(T, SUF)                                            \
static void fl_train_activate_##SUF(int isa, int kind, const T *x, T *y,      \
                                    ptrdiff_t n)                              \
{                                                                             \
    enum { V = 16 };     /* a multiple of every vector width */               \
    fl_activate_fn_##SUF activate = fl_ops_##SUF##_of(isa)->activate;         \
    ptrdiff_t bulk = n - n % V;                                               \
    T tmp[V] = {0};                                                           \
    if (bulk)                                                                 \
        activate(kind, x, y, bulk);                                           \
    if (bulk < n) {                                                           \
        memcpy(tmp, x + bulk, (n - bulk) * sizeof(T));                        \
        activate(kind, tmp, tmp, V);                                          \
        memcpy(y + bulk, tmp, (n - bulk) * sizeof(T));                        \
    }                                                                         \
}

FL_DEFINE_ACTIVATE(float, f32)
FL_DEFINE_ACTIVATE(double, f64)
#undef FL_DEFINE_ACTIVATE

#define FL_DEFINE_TRAIN(T, SUF)                                               \
/* c = f * c + i * g from the activated gates z [4U]. */                      \
FL_CLONES static void fl_train_cell_update_##SUF(const T *restrict z,         \
                                              T *restrict c, long U)          \
{                                                                             \
    for (long j = 0; j < U; ++j)                                              \
        c[j] = z[U + j] * c[j] + z[j] * z[2 * U + j];                         \
}                                                                             \
                                                                              \
FL_CLONES static void fl_train_cell_output_##SUF(const T *restrict o,         \
                                              const T *restrict a,            \
                                              T *restrict h, long U)          \
{                                                                             \
    for (long j = 0; j < U; ++j)                                              \
        h[j] = o[j] * a[j];                                                   \
}                                                                             \
                                                                              \
/* fl_train_cell_row for activations that training records by their input     \
 * (activations.h): those gates keep their pre-activations in z, the others   \
 * are activated in place; 16 units at a time through a buffer. */            \
static void fl_train_cell_row_inputs_##SUF(int isa, T *restrict z,            \
                                           T *restrict c, T *restrict h,      \
                                           T *restrict a, long U, int act,    \
                                           int rec_act)                       \
{                                                                             \
    enum { N = 16 };                                                          \
    const int kinds[4] = {rec_act, rec_act, act, rec_act};                    \
    for (long j0 = 0; j0 < U; j0 += N) {                                      \
        long n = U - j0 < N ? U - j0 : N;                                     \
        T v[4][N];                                                            \
        for (int q = 0; q < 4; ++q)                                           \
            fl_train_activate_##SUF(isa, kinds[q], z + q * U + j0, v[q], n);  \
        for (long j = 0; j < n; ++j)                                          \
            c[j0 + j] = v[1][j] * c[j0 + j] + v[0][j] * v[2][j];              \
        fl_train_activate_##SUF(isa, act, c + j0, a + j0, n);                 \
        for (long j = 0; j < n; ++j)                                          \
            h[j0 + j] = v[3][j] * a[j0 + j];                                  \
        for (int q = 0; q < 4; ++q)                                           \
            if (!fl_act_records_input(kinds[q]))                              \
                memcpy(z + q * U + j0, v[q], n * sizeof(T));                  \
    }                                                                         \
}                                                                             \
                                                                              \
/* z: [4U] in: pre-activations i, f, c, o; out: the activated gates (the      \
 * pre-activations of those activations.h records by input).                  \
 * c: [U] in: c_prev, out: c.  h: [U] out.  a: [U] out: act(c). */            \
void fl_train_cell_row_##SUF(int isa, T *restrict z, T *restrict c,           \
                                    T *restrict h, T *restrict a, long U,     \
                                    int act, int rec_act)                     \
{                                                                             \
    if (fl_act_records_input(act) || fl_act_records_input(rec_act)) {         \
        fl_train_cell_row_inputs_##SUF(isa, z, c, h, a, U, act, rec_act);     \
        return;                                                               \
    }                                                                         \
    fl_train_activate_##SUF(isa, rec_act, z, z, 2 * U);    /* i, f */         \
    fl_train_activate_##SUF(isa, act, z + 2 * U, z + 2 * U, U);               \
    fl_train_activate_##SUF(isa, rec_act, z + 3 * U, z + 3 * U, U);           \
    fl_train_cell_update_##SUF(z, c, U);                                      \
    fl_train_activate_##SUF(isa, act, c, a, U);                               \
    fl_train_cell_output_##SUF(z + 3 * U, a, h, U);                           \
}                                                                             \
                                                                              \
/* z: [4U] activated gates of the step.  dz: [4U] out: dL/d(pre-activations). \
 * c_prev: [U] the step's incoming c.  a: [U] act(c) of the step.             \
 * dh: [U] dL/dh of the step's output h.                                      \
 * dc: [U] in: dL/dc of the step's c; out: dL/dc_prev. */                     \
FL_CLONES void fl_train_cell_back_row_##SUF(                                  \
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
            dout[j] = dh[j] * aj * o * ((T)1 - o);                            \
            dc[j] = dct * f;                                                  \
        }                                                                     \
        return;                                                               \
    }                                                                         \
    for (j = 0; j < U; ++j) {                                                 \
        T i, f, g, o, aj = a[j];                                              \
        T dact_i = fl_dact_recorded_##SUF(rec_act, zi[j], &i);                \
        T dact_f = fl_dact_recorded_##SUF(rec_act, zf[j], &f);                \
        T dact_g = fl_dact_recorded_##SUF(act, zg[j], &g);                    \
        T dact_o = fl_dact_recorded_##SUF(rec_act, zo[j], &o);                \
        T dact_c = fl_act_records_input(act)   /* from c, recomputed */       \
            ? fl_dact_in_##SUF(act, f * c_prev[j] + i * g) : fl_dact_##SUF(act, aj); \
        T dct = dc[j] + dh[j] * o * dact_c;                                   \
        di[j] = dct * g * dact_i;                                             \
        df[j] = dct * c_prev[j] * dact_f;                                     \
        dg[j] = dct * i * dact_g;                                             \
        dout[j] = dh[j] * aj * dact_o;                                        \
        dc[j] = dct * f;                                                      \
    }                                                                         \
}

FL_DEFINE_TRAIN(float, f32)
FL_DEFINE_TRAIN(double, f64)

#undef FL_DEFINE_TRAIN