/* Inference: one LSTM layer over a batch of sequences (forward.c). */
#ifndef FASTLSTM_FORWARD_H
#define FASTLSTM_FORWARD_H

#include <stddef.h>

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

#endif /* FASTLSTM_FORWARD_H */
