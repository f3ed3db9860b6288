/* The output projection of an LSTMP layer (torch.nn.LSTM's proj_size): the
 * cell's output m = o * act(c) has U values, the state h = m @ P_k has P
 * (< U), and the recurrent kernel multiplies h.  Inference (forward.c) and
 * training (train.c) run the cell tile with m in place of h and then this
 * step, which projects a group of rows with the table's product tile and
 * applies the mask rules to h (P values) the way the cell tile applies them
 * to h without a projection.
 *
 * Projection panels: P_k [U][P] cut into NPB = ceil(P / 4W) panels of 4W
 * output columns, [NPB][U][4W], zero past column P; h rows hold P values in
 * plain order (padding columns: zero).
 *
 * Projection rows never share a tile with another group's (the product's
 * fixed summation order, tiles.h): results do not depend on the grouping.
 */
#ifndef FASTLSTM_PROJECTION_H
#define FASTLSTM_PROJECTION_H

#include <string.h>
#include "isa.h"

/* Output columns of the projection panels: P rounded up to 4W. */
static inline ptrdiff_t fl_projected_columns(ptrdiff_t P, ptrdiff_t W)
{
    return (P + 4 * W - 1) / (4 * W) * (4 * W);
}

/* One step of `rows` rows (pointers at the group's first row):
 *   hnext = m @ P_k                       [rows][ldh], all NPB panels
 * then per row, as the cell tile does for h: a row whose mask is 0 carries
 * hprev, has no m (zeroed: training's record of m) and repeats the last
 * output y; a processed row's h becomes the last output.  mask: of the
 * group's first row at this step (stride ldmask), or NULL; y [rows][ldh]
 * (NULL without a mask); seq: the step's output row [rows][lds], or NULL. */
#define FL_DEFINE_PROJECT(T, SUF)                                             \
static void fl_project_##SUF(const fl_ops_##SUF *ops, ptrdiff_t rows,         \
                             ptrdiff_t U, ptrdiff_t P, const T *panels,       \
                             T *m, ptrdiff_t ldm, const T *hprev, T *hnext,   \
                             ptrdiff_t ldh, const unsigned char *mask,        \
                             ptrdiff_t ldmask, T *y, T *seq, ptrdiff_t lds)   \
{                                                                             \
    const ptrdiff_t W4 = 4 * (ptrdiff_t)ops->width, MR = ops->rows;           \
    const ptrdiff_t npb = fl_projected_columns(P, ops->width) / W4;           \
    const ptrdiff_t ntiles = (rows + MR - 1) / MR;                            \
    fl_proj_##SUF pj;                                                         \
    pj.n_in = U; pj.ldx = ldm; pj.ldk = 1; pj.ldg = 0;                        \
    pj.bias = NULL; pj.ldb = 0; pj.ldo = ldh;                                 \
    for (ptrdiff_t pb = 0; pb < npb; ++pb) {                                  \
        ptrdiff_t b = 0;                                                      \
        pj.kp = panels + pb * U * W4;                                         \
        for (ptrdiff_t q = 0; q < ntiles; ++q) {                              \
            int mr = fl_tile_rows(rows, ntiles, q);                           \
            pj.x = m + b * ldm;                                               \
            pj.out = hnext + b * ldh + pb * W4;                               \
            ops->proj(mr, &pj);                                               \
            b += mr;                                                          \
        }                                                                     \
    }                                                                         \
    for (ptrdiff_t b = 0; b < rows; ++b) {                                    \
        T *hn = hnext + b * ldh;                                              \
        const T *out = hn;                                                    \
        if (mask != NULL && !mask[b * ldmask]) {                              \
            memcpy(hn, hprev + b * ldh, P * sizeof(T));                       \
            memset(m + b * ldm, 0, U * sizeof(T));                            \
            out = y + b * ldh;                                                \
        } else if (mask != NULL) {                                            \
            memcpy(y + b * ldh, hn, P * sizeof(T));                           \
        }                                                                     \
        if (seq != NULL)                                                      \
            memcpy(seq + b * lds, out, P * sizeof(T));                        \
    }                                                                         \
}

FL_DEFINE_PROJECT(float, f32)
FL_DEFINE_PROJECT(double, f64)
#undef FL_DEFINE_PROJECT

#endif /* FASTLSTM_PROJECTION_H */
