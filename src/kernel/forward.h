/* Inference: one LSTM layer over a batch of sequences (forward.c). */
#ifndef FASTLSTM_FORWARD_H
#define FASTLSTM_FORWARD_H

#include <stddef.h>
#include "isa.h"

/* x [B][T_][n_in] inputs; kernel [NB][n_in][4][W], bias [NB][4][W] and
 * recurrent [NB][U][4][W]: weights packed for instruction set `isa`
 * (tiles.h; W is its width in isa.h's table); h, c [B][U] in: initial
 * state, out: final state; y [B][U] in: zeros, out: the last output (used
 * only with a mask); mask [B][T_] (nonzero: the step is processed) or NULL;
 * seq [B][T_][U] out: the output of every step in processing order, or
 * NULL; backwards: process t = T_-1 .. 0; act, rec_act: activations.h's
 * codes; threads: most threads (>= 1); poll(poll_ctx): asked every few ms
 * whether to stop (cancel.h), or NULL.  B, T_, n_in >= 1.
 * Returns 0; FL_CANCELLED (cancel.h) when poll stopped it, with h, c, y
 * unchanged; or -1 when the workspace cannot be allocated. */
#define FL_DECLARE_FORWARD(T, SUF)                                            \
int fl_forward_##SUF(const T *x, const T *kernel, const T *bias,              \
                     const T *recurrent, T *h, T *c, T *y,                    \
                     const unsigned char *mask, T *seq, ptrdiff_t B,          \
                     ptrdiff_t T_, ptrdiff_t n_in, ptrdiff_t U, int isa,      \
                     int backwards, int act, int rec_act, int threads,        \
                     int (*poll)(void *), void *poll_ctx);

FL_DECLARE_FORWARD(float, f32)
FL_DECLARE_FORWARD(double, f64)
#undef FL_DECLARE_FORWARD

/* An int8 layer's weights, packed for int8 kernel `kernel` (isa.h's FL_I8_
 * codes; tiles.h's layout, W the kernel's width): panels kernel
 * [NB][K4x][4][W][4] and recurrent [NB][K4h][4][W][4] (K4 = ceil(K / 4)),
 * their -128 * column sums and column scales [NB][4][W] each, and the
 * float32 bias [NB][4][W]. */
typedef struct {
    int kernel;
    const signed char *kernel_panels, *recurrent_panels;
    const int *kernel_comp, *recurrent_comp;
    const float *kernel_scale, *recurrent_scale;
    const float *bias;
} fl_weights_i8;

/* fl_forward_f32 with int8 weights: every row of x and of h is quantized
 * at its step (fastlstm/quantization.py states the scheme). */
int fl_forward_i8(const float *x, const fl_weights_i8 *weights, float *h, float *c,
                  float *y, const unsigned char *mask, float *seq, ptrdiff_t B,
                  ptrdiff_t T_, ptrdiff_t n_in, ptrdiff_t U, int backwards, int act,
                  int rec_act, int threads, int (*poll)(void *), void *poll_ctx);

/* The input projection of a chunk of steps, for inference (forward.c)
 * and training (train.c): for batch rows b < rows, steps s < steps and
 * blocks p in [p0, p1) of the packed kernel and bias,
 *     out(b, s) = bias + x(b, s) @ kernel,
 * where each operand v(b, s) lies at v + b * (its row stride) + s * (its
 * step stride), and block p of out p * op further.  The tiles run along
 * time within each row when the chunk has at least MR steps (or more steps
 * than rows), else along the rows at each step.  xg: 0, or the distance of
 * the per-gate copies of x (input dropout).  An int8 layer (i8 set, float32
 * only) reads x's quantized rows q(b, s) and their scales qs(b, s) instead,
 * with the same addressing. */
#define FL_DECLARE_CHUNK(T, SUF)                                              \
typedef struct {                                                              \
    const fl_ops_##SUF *ops;                                                  \
    ptrdiff_t rows, steps, n_in;                                              \
    const T *kp, *bias;        /* packed [NB][n_in][4][W], [NB][4][W] */      \
    const T *x;                                                               \
    ptrdiff_t xb, xs, xg;                                                     \
    T *out;                                                                   \
    ptrdiff_t ob, os, op;                                                     \
    const fl_ops_i8 *i8;       /* NULL: float weights */                      \
    const fl_weights_i8 *w8;                                                  \
    ptrdiff_t K4x;             /* groups of 4 inputs */                       \
    const unsigned char *q;                                                   \
    ptrdiff_t qb, qs;                                                         \
    const float *qscale;                                                      \
    ptrdiff_t sb, ss;                                                         \
} fl_chunk_##SUF;                                                             \
                                                                              \
void fl_project_chunk_##SUF(const fl_chunk_##SUF *c, ptrdiff_t p0, ptrdiff_t p1);

FL_DECLARE_CHUNK(float, f32)
FL_DECLARE_CHUNK(double, f64)
#undef FL_DECLARE_CHUNK

#endif /* FASTLSTM_FORWARD_H */
