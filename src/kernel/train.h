/* Training on packed weights (train.c): the forward pass that records,
 * and the backward pass.  Shapes: B batch, T_ steps, I features, U units;
 * W and NB = ceil(U / W) as in isa.h's row of `isa`, Up = NB * W.
 *
 * Dropout (Keras's LSTMCell): x_gates = 1, or 4 when each gate block reads
 * its own copy of x, x times that gate's input mask; hmask [4][B][Up] the
 * recurrent masks of gates i, f, c, o (zero padded), or NULL.
 *
 * fl_train_forward: x [x_gates][T_][B][ldx >= I] inputs, time-major;
 * kernel, bias, recurrent: packed for `isa` (tiles.h); h, c [B][U] in:
 * initial state, out: final state; y [B][U] in: zeros, out: last output
 * (only with a mask); mask [B][T_] or NULL; seq [B][T_][U] out: outputs in
 * processing order, or NULL; rec [T_+1][B][NB*6W], hs [T_+1][B][ldh >= Up]
 * and with hmask hm [4][T_+1][B][ldh] (hs times each gate's mask) out: the
 * record for fl_train_backward (layout in train.c).
 *
 * fl_train_backward: x, x_gates, hmask, rec, hs, hm, ldx, ldh as the
 * forward had them; xmask [4][B][ceil(I / W) * W] the input masks when
 * x_gates is 4 (zero padded; dx is the sum of each gate's part times its
 * mask), else NULL; kernel_t [NX][4Up][4W] kernel^T in panels of 4W
 * features (for dx), or NULL with dx; recurrent_t [NQ][4Up][4W] R^T in
 * panels of 4W units; dz [NB][T_*B][4W] out: dL/d(gate pre-activations) by
 * block; dseq [B][T_][U] dL/d(outputs, processing order) or NULL; dh, dc
 * [B][U] in: dL/d(final h, c), out: dL/d(initial h, c); dy [B][U] dL/d(last
 * output); dx [T_*B][ceil(I / W) * W] in: zeros, out: dL/dx (of x before
 * the input masks when x_gates is 4, else of x as given), or NULL to skip
 * it; dkernel [I][4Up], drk [U][4Up], dbias [4Up] out: the weight
 * gradients in packed columns.
 *
 * Both: B, T_, n_in >= 1; threads: most threads; poll(poll_ctx): asked every
 * few ms whether to stop (cancel.h), or NULL.  They return 0; FL_CANCELLED
 * when poll stopped them, with h, c (forward) or dh, dc (backward)
 * unchanged; or -1 when a buffer cannot be allocated.
 */
#ifndef FASTLSTM_TRAIN_H
#define FASTLSTM_TRAIN_H

#include <stddef.h>

#define FL_DECLARE_TRAIN(T, SUF)                                              \
int fl_train_forward_##SUF(const T *x, ptrdiff_t ldx, int x_gates,           \
                           const T *kernel, const T *bias, const T *recurrent, \
                           T *h, T *c, T *y, const unsigned char *mask,       \
                           const T *hmask, T *seq, T *rec, T *hs, T *hm,      \
                           ptrdiff_t ldh, ptrdiff_t B, ptrdiff_t T_,          \
                           ptrdiff_t n_in, ptrdiff_t U, int isa, int backwards, \
                           int act, int rec_act, int threads,                 \
                           int (*poll)(void *), void *poll_ctx);              \
int fl_train_backward_##SUF(const T *x, ptrdiff_t ldx, int x_gates,          \
                            const T *xmask, const T *kernel_t,                \
                            const T *recurrent_t, const T *rec, const T *hs,  \
                            const T *hmask, const T *hm, ptrdiff_t ldh,       \
                            T *dz, const unsigned char *mask,                 \
                            const T *dseq, T *dh, T *dc, const T *dy, T *dx,  \
                            T *dkernel, T *drk, T *dbias, ptrdiff_t B,        \
                            ptrdiff_t T_, ptrdiff_t n_in, ptrdiff_t U, int isa, \
                            int backwards, int act, int rec_act, int threads, \
                            int (*poll)(void *), void *poll_ctx);

FL_DECLARE_TRAIN(float, f32)
FL_DECLARE_TRAIN(double, f64)
#undef FL_DECLARE_TRAIN

#endif /* FASTLSTM_TRAIN_H */
