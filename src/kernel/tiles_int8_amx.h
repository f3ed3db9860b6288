/* The int8 tiles (tiles.h's fl_tile_i8 and fl_proj_i8) on AMX's tile
 * registers (AMX-TILE, AMX-INT8: tdpbusd), with the float vectors, the
 * dequantisation and the cell update of AVX-512's int8 kernel; instantiated
 * once by isa.c after that kernel, inside a target region with AMX:
 *
 *   #define FL_SUF avx512          the float tiles' suffix (their helpers)
 *   #define FL_SUF8 avx512_vnni    the int8 vector kernel's suffix
 *   #define FL_W 16, FL_MR 6       as for the float tiles
 *
 * tdpbusd multiplies a tile of rows of unsigned bytes (A: up to 16 rows of
 * 64 bytes) by a tile of signed bytes packed 4 inputs to a dword (B: 16
 * rows of 16 dwords) into 16 x 16 int32 sums (C), which is the vector
 * kernels' product (q + 128 times w, from comp = -128 * the column sums)
 * on 16 rows at once: the same int32 sums, and every float operation after
 * them is the vector kernel's, so the results are bitwise its.
 *
 * Layout: AVX-512's panels [K4][4][16][4] serve as they are: the 64 bytes
 * of gate g at group k are row k of that gate's B tile (row stride 256
 * bytes).  A is read straight from the quantized rows (row stride ldq);
 * K4 is padded to a multiple of 16 (one A tile of 64 bytes: isa.h's
 * k4_align), with zero weights, so the padding bytes of A count nothing.
 *
 * Tile registers: tmm0..3 the sums of the 4 gates (mr rows x 16 units),
 * tmm4 the rows' 64 bytes, tmm5..7 the gates' weights in turn.  Loading a
 * tile configuration costs ~100-300 ns here (measured), more than a small
 * tile's product, so each thread keeps the one it loaded (its rows are
 * mr) and reloads it only when mr changes; fl_release_amx hands the tile
 * state back at the end of the thread's job.
 *
 * No include guard: instantiated once.
 */
#include <immintrin.h>

#define FL_CAT_(a, b) a##_##b
#define FL_CAT(a, b) FL_CAT_(a, b)
#define FN(name) FL_CAT(fl_##name, FL_SUF)
#define FN8(name) FL_CAT(fl_##name, FL_SUF8)
#define V FN(vf)
#define VI FN(vi)

#define FL_AMX_ROWS 16          /* most rows of a tile (MR of the AMX row) */
#define FL_AMX_LDW (16 * FL_W)  /* bytes of a panel's group k: 4 gates x W x 4 */

/* The 64-byte tile configuration of palette 1 (Intel SDM, LDTILECFG). */
typedef struct {
    unsigned char palette, start_row, reserved[14];
    unsigned short colsb[16];   /* bytes per row of tmm0..15 */
    unsigned char rows[16];
} fl_amx_config;

/* The rows of A and C in the configuration this thread has loaded, 0 when
 * it holds none. */
static __thread int fl_amx_rows;

static void fl_release_amx(void)
{
    if (fl_amx_rows != 0) {
        _tile_release();
        fl_amx_rows = 0;
    }
}

/* acc[r][64] = comp + the sum over the panel, for mr <= 16 rows. */
static void fl_product_amx(int mr, const fl_operand_i8 *p, int acc[][4 * FL_W])
{
    if (fl_amx_rows != mr) {
        fl_amx_config config;
        memset(&config, 0, sizeof config);
        config.palette = 1;
        for (int t = 0; t < 8; ++t) {
            config.colsb[t] = 64;
            config.rows[t] = t < 5 ? mr : 16;   /* C and A: mr rows; B: 16 groups */
        }
        _tile_loadconfig(&config);
        fl_amx_rows = mr;
    }
    /* Every row of C starts at comp (row stride 0). */
    _tile_loadd(0, p->comp, 0);
    _tile_loadd(1, p->comp + FL_W, 0);
    _tile_loadd(2, p->comp + 2 * FL_W, 0);
    _tile_loadd(3, p->comp + 3 * FL_W, 0);
    const unsigned char *q = p->q;
    const signed char *w = p->w;
    for (ptrdiff_t k = 0; k < p->K4; k += 16, q += 64, w += 16 * FL_AMX_LDW) {
        _tile_loadd(4, q, p->ldq);
        _tile_loadd(5, w, FL_AMX_LDW);
        _tile_dpbusd(0, 4, 5);
        _tile_loadd(6, w + 64, FL_AMX_LDW);
        _tile_dpbusd(1, 4, 6);
        _tile_loadd(7, w + 128, FL_AMX_LDW);
        _tile_dpbusd(2, 4, 7);
        _tile_loadd(5, w + 192, FL_AMX_LDW);
        _tile_dpbusd(3, 4, 5);
    }
    _tile_stored(0, acc[0], 4 * FL_W * sizeof(int));
    _tile_stored(1, acc[0] + FL_W, 4 * FL_W * sizeof(int));
    _tile_stored(2, acc[0] + 2 * FL_W, 4 * FL_W * sizeof(int));
    _tile_stored(3, acc[0] + 3 * FL_W, 4 * FL_W * sizeof(int));
}

/* Where AMX does not pay, the vector kernel's tiles (on the same panels:
 * the padding groups have zero weights) compute the same results.  A tile
 * call's product on AMX ends in a store of the sums that its float part
 * waits for, so it pays only for enough rows and inputs; measured at 1
 * thread against avx512-vnni (T = 100, I = 64, this kernel / vnni's time,
 * with AMX on every tile): B = 8, U = 128 (K4 = 32) 0.85; B = 1, U = 512
 * 0.65; B = 4..16, U = 256 (K4 = 64) 1.0-1.1; U = 512: B = 8 1.16, B = 16
 * 1.58. */
#define FL_AMX_MIN_ROWS 8
#define FL_AMX_MIN_K4 64

static int fl_amx_pays(int mr, const fl_operand_i8 *p)
{
    return mr >= FL_AMX_MIN_ROWS && p->K4 >= FL_AMX_MIN_K4;
}

/* mr rows as the vector kernel's tiles of at most FL_MR rows. */
static void fl_tile_vector_amx(int mr, const fl_tile_i8 *a)
{
    int pieces = (mr + FL_MR - 1) / FL_MR;
    fl_tile_i8 t = *a;
    for (int q = 0, r = 0; q < pieces; ++q) {
        t.f.h = a->f.h + r * a->f.ldh;
        t.f.x = a->f.x + r * a->f.ldx;
        t.f.c = a->f.c + r * a->f.ldc;
        t.f.hn = a->f.hn + r * a->f.ldc;
        t.f.y = a->f.y != NULL ? a->f.y + r * a->f.ldc : NULL;
        t.f.mask = a->f.mask != NULL ? a->f.mask + r * a->f.ldm : NULL;
        t.f.seq = a->f.seq != NULL ? a->f.seq + r * a->f.lds : NULL;
        t.p.q = a->p.q + r * a->p.ldq;
        t.p.qs = a->p.qs + r * a->p.ldqs;
        int n = fl_tile_rows(mr, pieces, q);
        FN8(tile)(n, &t);
        r += n;
    }
}

static void fl_proj_vector_amx(int mr, const fl_proj_i8 *a)
{
    int pieces = (mr + FL_MR - 1) / FL_MR;
    fl_proj_i8 t = *a;
    for (int q = 0, r = 0; q < pieces; ++q) {
        t.p.q = a->p.q + r * a->p.ldq;
        t.p.qs = a->p.qs + r * a->p.ldqs;
        t.out = a->out + r * a->ldo;
        int n = fl_tile_rows(mr, pieces, q);
        FN8(proj)(n, &t);
        r += n;
    }
}

/* The step: z = x_proj + float(acc) * (s_h * s_r), then the float cell. */
static void fl_tile_amx(int mr, const fl_tile_i8 *a)
{
    if (!fl_amx_pays(mr, &a->p)) {
        fl_tile_vector_amx(mr, a);
        return;
    }
    int acc[FL_AMX_ROWS][4 * FL_W] __attribute__((aligned(64)));
    V z[FL_AMX_ROWS][4];
    fl_product_amx(mr, &a->p, acc);
    for (int r = 0; r < mr; ++r) {
        V sr = FN(splat)(a->p.qs[r * a->p.ldqs]);
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g)
            z[r][g] = FN(load)(a->f.x + r * a->f.ldx + g * FL_W)
                + FN8(dequantize)(FN8(loadi)(acc[r] + g * FL_W), sr, a->p.ws + g * FL_W);
    }
    FN(cell_rows)(mr, z, &a->f);
}

/* The input projection: out = bias + float(acc) * (s_x * s_k). */
static void fl_proj_amx(int mr, const fl_proj_i8 *a)
{
    if (!fl_amx_pays(mr, &a->p)) {
        fl_proj_vector_amx(mr, a);
        return;
    }
    int acc[FL_AMX_ROWS][4 * FL_W] __attribute__((aligned(64)));
    fl_product_amx(mr, &a->p, acc);
    for (int r = 0; r < mr; ++r) {
        V sr = FN(splat)(a->p.qs[r * a->p.ldqs]);
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g)
            FN(store)(a->out + r * a->ldo + g * FL_W, FN(load)(a->bias + g * FL_W)
                      + FN8(dequantize)(FN8(loadi)(acc[r] + g * FL_W), sr, a->p.ws + g * FL_W));
    }
}

#undef FL_AMX_LDW
#undef FL_AMX_MIN_ROWS
#undef FL_AMX_MIN_K4
#undef V
#undef VI
#undef FN
#undef FN8
#undef FL_CAT
#undef FL_CAT_
