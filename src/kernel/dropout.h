/* The per-step BLAS training path's cell rows (dropout.c), for recurrent
 * dropout.  z: [4U] in: pre-activations i, f, c, o; out: the activated
 * gates.  c: [U] in: c_prev, out: c.  h: [U] out.  a: [U] out: act(c).
 * The backward row: z, the step's activated gates; dz: [4U] out:
 * dL/d(pre-activations); c_prev: [U] the step's incoming c; a: act(c) of
 * the step; dh: [U] dL/dh of the step's output h; dc: [U] in: dL/dc of the
 * step's c, out: dL/dc_prev. */
#ifndef FASTLSTM_DROPOUT_H
#define FASTLSTM_DROPOUT_H

#define FL_DECLARE_DROPOUT(T, SUF)                                            \
void fl_train_cell_row_##SUF(int isa, T *restrict z, T *restrict c,           \
                             T *restrict h, T *restrict a, long U, int act,   \
                             int rec_act);                                    \
void fl_train_cell_back_row_##SUF(const T *restrict z, T *restrict dz,        \
                                  const T *restrict c_prev,                   \
                                  const T *restrict a, const T *restrict dh,  \
                                  T *restrict dc, long U, int act,            \
                                  int rec_act);

FL_DECLARE_DROPOUT(float, f32)
FL_DECLARE_DROPOUT(double, f64)
#undef FL_DECLARE_DROPOUT

#endif /* FASTLSTM_DROPOUT_H */
