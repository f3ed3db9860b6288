/* The portable tile of the fused LSTM step: plain C, float and double.
 *
 * Same contract and packed layout as the SIMD tiles (lstm_simd.h), with
 * FL_PW lanes per block; the lane loops are simple enough for any compiler
 * to vectorise, and the activations are libm's (lstm_cell.h).  This is the
 * float64 path, and the float32 path on CPUs without AVX2+FMA.
 */
#ifndef FASTLSTM_LSTM_PORTABLE_H
#define FASTLSTM_LSTM_PORTABLE_H

#define FL_PW 4     /* lanes per block */
#define FL_PMR 4    /* most rows per tile */

#define FL_DEFINE_PORTABLE(T, SUF)                                            \
static void fl_proj_portable_##SUF(int mr, const fl_proj_##SUF *a)            \
{                                                                             \
    T acc[FL_PMR][4 * FL_PW];                                                 \
    const T *kp = a->kp;                                                      \
    ptrdiff_t k;                                                              \
    int r, j;                                                                 \
    for (r = 0; r < mr; ++r)                                                  \
        for (j = 0; j < 4 * FL_PW; ++j)                                       \
            acc[r][j] = a->bias[j];                                           \
    for (k = 0; k < a->n_in; ++k, kp += 4 * FL_PW)                            \
        for (r = 0; r < mr; ++r) {                                            \
            T xv = a->x[r * a->ldx + k];                                      \
            for (j = 0; j < 4 * FL_PW; ++j)                                   \
                acc[r][j] += xv * kp[j];                                      \
        }                                                                     \
    for (r = 0; r < mr; ++r)                                                  \
        memcpy(a->out + r * a->ldo, acc[r], sizeof acc[r]);                   \
}                                                                             \
                                                                              \
static void fl_tile_portable_##SUF(int mr, const fl_tile_##SUF *a)            \
{                                                                             \
    T acc[FL_PMR][4 * FL_PW];                                                 \
    const T *rp = a->r;                                                       \
    ptrdiff_t k;                                                              \
    int r, j;                                                                 \
    for (r = 0; r < mr; ++r)                                                  \
        for (j = 0; j < 4 * FL_PW; ++j)                                       \
            acc[r][j] = a->x[r * a->ldx + j];                                 \
    for (k = 0; k < a->U; ++k, rp += 4 * FL_PW)                               \
        for (r = 0; r < mr; ++r) {                                            \
            T hv = a->h[r * a->ldh + k];                                      \
            for (j = 0; j < 4 * FL_PW; ++j)                                   \
                acc[r][j] += hv * rp[j];                                      \
        }                                                                     \
    for (r = 0; r < mr; ++r) {                                                \
        T *c = a->c + r * a->ldc, *hn = a->hn + r * a->ldc;                   \
        T *y = a->mask != NULL ? a->y + r * a->ldc : NULL;                    \
        int keep = a->mask == NULL || a->mask[r * a->ldm];                    \
        const T *z = acc[r];                                                  \
        for (j = 0; j < FL_PW; ++j) {                                         \
            T i = fl_act_##SUF(a->rec_act, z[j]);                             \
            T f = fl_act_##SUF(a->rec_act, z[FL_PW + j]);                     \
            T g = fl_act_##SUF(a->act, z[2 * FL_PW + j]);                     \
            T o = fl_act_##SUF(a->rec_act, z[3 * FL_PW + j]);                 \
            T cn = f * c[j] + i * g;                                          \
            T h = o * fl_act_##SUF(a->act, cn);                               \
            if (keep) {                                                       \
                c[j] = cn;                                                    \
                hn[j] = h;                                                    \
                if (y != NULL)                                                \
                    y[j] = h;                                                 \
            } else {  /* skipped step: carry h and c, repeat the output */    \
                hn[j] = a->h[r * a->ldh + a->col + j];                        \
            }                                                                 \
        }                                                                     \
        if (a->seq != NULL)                                                   \
            memcpy(a->seq + r * a->lds, y != NULL ? y : hn,                   \
                   a->nvalid * sizeof(T));                                    \
    }                                                                         \
}

FL_DEFINE_PORTABLE(float, f32)
FL_DEFINE_PORTABLE(double, f64)

#undef FL_DEFINE_PORTABLE

#endif /* FASTLSTM_LSTM_PORTABLE_H */
