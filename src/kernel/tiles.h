/* The three tiles and their arguments: the contract between the time loops
 * (forward.c, train.c) and each instruction set's implementation of the
 * tiles (tiles_portable.h, tiles_vector.h; isa.h's table holds them).
 *
 * Packed layout (built by _kernel.pack): units are padded to Up, a multiple
 * of the block width W of the instruction set, and cut into NB = Up / W
 * blocks.  Block p's slice of the recurrent kernel is a panel [U][4][W]
 * (gates i, f, c, o of units p*W .. p*W+W-1 for each input row k), so a
 * tile streams one contiguous panel.  The input kernel and bias use the same
 * column order, so the input projection comes out already interleaved.
 *
 * Each output value is computed by exactly one tile with a fixed summation
 * order (lane j of row r sums its init, then the products for k = 0, 1, ...
 * in that order), so results never depend on how rows or blocks are split
 * between threads.
 */
#ifndef FASTLSTM_TILES_H
#define FASTLSTM_TILES_H

#include <stddef.h>

/* The cell step: mr rows of one block of W units.  Pointers are at the
 * tile's first row; row strides in elements. */
#define FL_DEFINE_TILE_ARGS(T, SUF)                                           \
typedef struct {                                                              \
    ptrdiff_t U;                  /* units: length of the k loop */           \
    const T *h;              /* h_prev, column 0      [mr][ldh] */            \
    ptrdiff_t ldh;                                                            \
    const T *hg;             /* or NULL; else the product's h_prev per gate: \
                                gate g's (h times its recurrent dropout     \
                                mask) at hg + g * ldg [mr][ldh]; h is still  \
                                what a skipped step carries */               \
    ptrdiff_t ldg;                                                            \
    ptrdiff_t col;                /* first unit of the block (p * W) */       \
    const T *r;              /* packed panel          [U][4][W] */            \
    const T *x;              /* input projection      [mr][ldx] at block */   \
    ptrdiff_t ldx;                                                            \
    T *c, *hn, *y;           /* cell, next h, last output at block [mr][ldc] */ \
    ptrdiff_t ldc;                                                            \
    const unsigned char *mask; /* mask[b, t] of row 0, or NULL [mr][ldm] */   \
    ptrdiff_t ldm;                                                            \
    T *seq;                  /* output [b, k, col], or NULL [mr][lds] */      \
    ptrdiff_t lds;                                                            \
    int nvalid;              /* units of the block that are real (<= W) */    \
    int act, rec_act;                                                         \
    T *rec;                  /* training's record of the step, or NULL: per   \
                                row (stride ldr) gates i, f, c, o, then c and \
                                act(c), W each */                             \
    ptrdiff_t ldr;                                                            \
} fl_tile_##SUF;

/* A product tile for mr rows and one block (4*W columns):
 *   out[r] = init[r] + sum_k x[r * ldx + k * ldk] * panel[k],
 * where gate g's columns read x at x + g * ldg (ldg = 0: one x for all
 * gates; else a copy per gate, the gate's dropout mask applied).
 * The input projection: x row-major (ldk = 1), init = the block's bias for
 * every row (ldb = 0).  Training's weight gradients x^T dZ and h^T dZ: x
 * read down its columns (ldx = 1), init = out to accumulate (bias = out,
 * ldb = ldo) or zero (bias = NULL). */
#define FL_DEFINE_PROJ_ARGS(T, SUF)                                           \
typedef struct {                                                              \
    ptrdiff_t n_in;               /* length of the k loop */                  \
    const T *x;                   /* x[g * ldg + r * ldx + k * ldk] */        \
    ptrdiff_t ldx, ldk, ldg;                                                  \
    const T *kp;                  /* packed panel          [n_in][4][W] */    \
    const T *bias;                /* init of row r at r * ldb, or NULL */     \
    ptrdiff_t ldb;                                                            \
    T *out;                       /* at the block          [mr][ldo] */       \
    ptrdiff_t ldo;                                                            \
} fl_proj_##SUF;

/* Training's backward step for mr rows and a group of up to 4 blocks (4*W
 * units): dh += dzn @ R^T for the group's units, then, when `rec` is set,
 * the cell's backward step, which writes the step's dZ and updates dc.
 * With dropout masks (gmask), the product is taken per gate block g and
 * times its mask: dh += sum_g (dzn_g @ R_g^T) * mask_g, g = i, f, c, o. */
#define FL_DEFINE_BACK_ARGS(T, SUF)                                           \
typedef struct {                                                              \
    ptrdiff_t K;             /* gate columns of dzn (4*Up), 0: no product */  \
    const T *dzn;            /* dZ of the step processed next, by blocks: */  \
    ptrdiff_t ldz, zstride;  /* block q of row r at q * zstride + r * ldz */  \
    const T *rt;             /* packed R^T panel of the group [K][4][W] */    \
    T *dh, *dc, *dy;         /* carried gradients at the group [mr][lds]; */  \
    ptrdiff_t lds;           /* dy: of the last output, NULL without mask */  \
    const T *rec;            /* the step's record at the group, or NULL */    \
    const T *cprev;          /* the previous step's record (for c) */         \
    ptrdiff_t ldr;           /* row stride of both (layout as fl_tile's) */   \
    const T *dseq;           /* dL/d(step output) at the group [mr][ldq], */  \
    ptrdiff_t ldq;           /* or NULL */                                    \
    const unsigned char *mask; /* mask[b, t] of row 0, or NULL [mr][ldm] */   \
    ptrdiff_t ldm;                                                            \
    T *dz;                   /* out: dZ of the step at the group, by blocks */ \
    const T *gmask;          /* or NULL: the masks at the group, gate g of  */ \
    ptrdiff_t ldgm, gmstride; /* row r at g * gmstride + r * ldgm */          \
    int nblk;                /* blocks in the group (1..4) */                 \
    int nlast;               /* real units of its last block (<= W) */        \
    int act, rec_act;                                                         \
} fl_back_##SUF;


FL_DEFINE_TILE_ARGS(float, f32)
FL_DEFINE_TILE_ARGS(double, f64)
FL_DEFINE_PROJ_ARGS(float, f32)
FL_DEFINE_PROJ_ARGS(double, f64)
FL_DEFINE_BACK_ARGS(float, f32)
FL_DEFINE_BACK_ARGS(double, f64)
#undef FL_DEFINE_BACK_ARGS
#undef FL_DEFINE_TILE_ARGS
#undef FL_DEFINE_PROJ_ARGS

/* Tile functions: mr (1 .. the table's rows) rows of one block. */
#define FL_DEFINE_TILE_FNS(T, SUF)                                            \
typedef void (*fl_tile_fn_##SUF)(int mr, const fl_tile_##SUF *a);             \
typedef void (*fl_proj_fn_##SUF)(int mr, const fl_proj_##SUF *a);             \
typedef void (*fl_back_fn_##SUF)(int mr, const fl_back_##SUF *a);             \
/* y = act(x) over n values (n a multiple of the table's width). */          \
typedef void (*fl_activate_fn_##SUF)(int kind, const T *x, T *y, ptrdiff_t n);

FL_DEFINE_TILE_FNS(float, f32)
FL_DEFINE_TILE_FNS(double, f64)
#undef FL_DEFINE_TILE_FNS

/* The int8 tiles (fastlstm/quantization.py states the scheme; float32
 * layers only).  Their weights are packed per block as [K4][4][W][4]
 * signed bytes, K4 = ceil(K / 4): lane j of gate g holds the weights of
 * inputs 4k .. 4k+3 for unit j (vpdpbusd's operand layout), zero padded.
 * Rows of x and h come quantized as unsigned bytes q + 128 (q in
 * [-127, 127]) with one float scale per row, and every product starts at
 * comp = -128 * the column sums of the weights, so it ends as the exact
 * int32 sum of q * w.  Integer sums do not depend on their order: every
 * instruction set gets the same integers. */

/* mr quantized rows against one block's int8 panel. */
typedef struct {
    const unsigned char *q;  /* rows, q + 128                [mr][ldq] */
    ptrdiff_t ldq;
    const float *qs;         /* their scales                 [mr][ldqs] */
    ptrdiff_t ldqs;
    const signed char *w;    /* packed panel                 [K4][4][W][4] */
    const int *comp;         /* -128 * column sums           [4][W] */
    const float *ws;         /* column scales                [4][W] */
    ptrdiff_t K4;            /* groups of 4 inputs */
} fl_operand_i8;

/* The int8 cell step: z = f.x + float(h_prev @ R) * (s_h * s_r), then the
 * float cell update of fl_tile_f32 (f.h is the float h_prev, which masked
 * steps carry; f.r is not used). */
typedef struct {
    fl_tile_f32 f;
    fl_operand_i8 p;
} fl_tile_i8;

/* The int8 input projection: out = bias + float(x @ K) * (s_x * s_k). */
typedef struct {
    fl_operand_i8 p;
    const float *bias;       /* the block's bias             [4][W] */
    float *out;              /*                              [mr][ldo] */
    ptrdiff_t ldo;
} fl_proj_i8;

typedef void (*fl_tile_fn_i8)(int mr, const fl_tile_i8 *a);
typedef void (*fl_proj_fn_i8)(int mr, const fl_proj_i8 *a);
/* Quantize a row v[0 .. n) into q[0 .. 4 * ceil(n / 4)) (padding: 128, a
 * zero) and its scale (quantization.quantize_rows, bit for bit). */
typedef void (*fl_quantize_fn)(const float *v, ptrdiff_t n, unsigned char *q, float *scale);

/* Near-equal tiles of at most MR rows: 8 rows -> 4 + 4, not 6 + 2. */
static inline int fl_tile_rows(ptrdiff_t rows, ptrdiff_t ntiles, ptrdiff_t q)
{
    return (int)(rows / ntiles + (q < rows % ntiles));
}

#endif /* FASTLSTM_TILES_H */
