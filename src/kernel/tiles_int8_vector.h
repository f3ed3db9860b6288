/* The int8 tiles (tiles.h's fl_tile_i8, fl_proj_i8, and the row
 * quantizer) of one instruction set, on the float vectors of vector.h, and
 * with the float cell update of tiles_vector.h; instantiated by isa.c after
 * that instruction set's tiles_vector.h, inside a target region with the
 * integer instructions:
 *
 *   #define FL_SUF avx512          the float tiles' suffix (their helpers)
 *   #define FL_SUF8 avx512_vnni    name suffix of everything defined here
 *   #define FL_W 16, FL_MR 6       as for the float tiles
 *   #define FL_VNNI 1              vpdpbusd; 0: the same sums by vpmaddwd
 *
 * Register budget (AVX-512, MR = 6): 24 accumulators + 4 weight vectors +
 * 1 broadcast of 4 activation bytes = 29 of 32 zmm; per group of 4 inputs,
 * 4 + 6 loads feed 24 vpdpbusd of 64 multiply-adds each (the float tile: 4
 * + 6 loads per 24 FMAs of 16).  AVX2 (MR = 3): 12 accumulators + 3
 * broadcasts + 1 weight vector = 16 ymm.  Measured in a tile benchmark (1
 * thread, B = 60, U = 512, quantization and cell included): avx512-vnni
 * 3.0x the float tile, avx2-vnni 3.0x; without VNNI 0.95x / 1.07x.
 *
 * No include guard: each instantiation defines its own names.
 */
#include <immintrin.h>

#define FL_CAT_(a, b) a##_##b
#define FL_CAT(a, b) FL_CAT_(a, b)
#define FN(name) FL_CAT(fl_##name, FL_SUF)
#define FN8(name) FL_CAT(fl_##name, FL_SUF8)
#define V FN(vf)
#define VI FN(vi)

typedef unsigned char FN8(vq) __attribute__((vector_size(FL_W)));
typedef unsigned FN8(vu) __attribute__((vector_size(FL_W * 4)));

/* A value the compiler must compute on its own: x * y then + z would
 * otherwise become one fused multiply-add (one rounding instead of two),
 * and the NumPy reference rounds twice. */
#define FL_OPAQUE(v) __asm__("" : "+x"(v))

FL_INLINE VI FN8(dot4)(VI acc, VI act, VI w)
{
#if FL_VNNI && FL_W == 16
    return (VI)_mm512_dpbusd_epi32((__m512i)acc, (__m512i)act, (__m512i)w);
#elif FL_VNNI
    return (VI)_mm256_dpbusd_avx_epi32((__m256i)acc, (__m256i)act, (__m256i)w);
#else
    /* Without VNNI: even and odd bytes as 16-bit lanes, vpmaddwd sums each
     * pair into 32 bits exactly (vpmaddubsw would saturate at 16 bits). */
    VI even_a = act & 0x00ff00ff, odd_a = (VI)((FN8(vu))act >> 8) & 0x00ff00ff;
#if FL_W == 16
    __m512i even_w = _mm512_srai_epi16(_mm512_slli_epi16((__m512i)w, 8), 8);
    __m512i odd_w = _mm512_srai_epi16((__m512i)w, 8);
    return acc + (VI)_mm512_madd_epi16((__m512i)even_a, even_w)
               + (VI)_mm512_madd_epi16((__m512i)odd_a, odd_w);
#else
    __m256i even_w = _mm256_srai_epi16(_mm256_slli_epi16((__m256i)w, 8), 8);
    __m256i odd_w = _mm256_srai_epi16((__m256i)w, 8);
    return acc + (VI)_mm256_madd_epi16((__m256i)even_a, even_w)
               + (VI)_mm256_madd_epi16((__m256i)odd_a, odd_w);
#endif
#endif
}

FL_INLINE VI FN8(loadi)(const void *p) { VI v; memcpy(&v, p, sizeof v); return v; }
FL_INLINE VI FN8(splat4)(const unsigned char *p)   /* 4 bytes to every lane */
{
    int word;
    memcpy(&word, p, sizeof word);
    return (VI){0} + word;
}

/* Quantize n floats (a row of x or h) to n4 = ceil(n / 4) * 4 bytes q + 128
 * (zero padding: 128) and their scale, as quantization.quantize_rows. */
static void FN8(quantize)(const float *v, ptrdiff_t n, unsigned char *q, float *scale)
{
    VI top = {0};
    ptrdiff_t k = 0;
    for (; k + FL_W <= n; k += FL_W) {      /* max |v| on the bits: NaN > inf > finite */
        VI bits = (VI)FN(load)(v + k) & 0x7fffffff;
        VI more = bits > top;
        top = (more & bits) | (~more & top);
    }
    int m = 0;
    for (int j = 0; j < FL_W; ++j)
        m = top[j] > m ? top[j] : m;
    for (; k < n; ++k) {
        int bits;
        memcpy(&bits, v + k, sizeof bits);
        bits &= 0x7fffffff;
        m = bits > m ? bits : m;
    }
    float amax;
    memcpy(&amax, &m, sizeof amax);
    ptrdiff_t n4 = (n + 3) & ~(ptrdiff_t)3;
    if (m >= 0x7f800000) {                  /* NaN or infinity in the row */
        *scale = __builtin_nanf("");
        memset(q, 128, n4);
        return;
    }
    *scale = amax / 127.0f;
    const V inverse = FN(splat)(amax > 0.0f ? 127.0f / amax : 0.0f);
    const V magic = FN(splat)(12582912.0f);    /* 1.5 * 2**23: + rounds half to even */
    for (k = 0; k + FL_W <= n; k += FL_W) {
        V t = FN(load)(v + k) * inverse;
        FL_OPAQUE(t);
        /* |t| <= 127 (t = v * 127 / max|v|): no clamp needed */
        VI qi = (VI)(t + magic) - (VI)magic + 128;
        FN8(vq) bytes = __builtin_convertvector(qi, FN8(vq));
        memcpy(q + k, &bytes, FL_W);
    }
    for (; k < n; ++k) {
        float t = v[k] * inverse[0];
        FL_OPAQUE(t);
        float r = t + 12582912.0f;
        int bits, base;
        memcpy(&bits, &r, sizeof bits);
        memcpy(&base, &magic, sizeof base);
        q[k] = (unsigned char)(bits - base + 128);
    }
    for (; k < n4; ++k)
        q[k] = 128;
}

/* float(acc) * (s_row * s_col), the two products rounded on their own as
 * the reference rounds them (tiles_portable.h's fl_dequantized). */
FL_INLINE V FN8(dequantize)(VI acc, V s_row, const float *s_col)
{
    V t = __builtin_convertvector(acc, V) * (s_row * FN(load)(s_col));
    FL_OPAQUE(t);
    return t;
}

/* acc[r][g] = comp + sum over the panel (see the header comment). */
#define FL_INT8_PRODUCT(acc, mr, q, ldq, w, comp, K4)                         \
    do {                                                                      \
        const unsigned char *wp_ = (const unsigned char *)(w);                \
        _Pragma("GCC unroll 16")                                              \
        for (int r = 0; r < mr; ++r)                                          \
            _Pragma("GCC unroll 4")                                           \
            for (int g = 0; g < 4; ++g)                                       \
                acc[r][g] = FN8(loadi)((comp) + g * FL_W);                    \
        for (ptrdiff_t k = 0; k < (K4); ++k, wp_ += 16 * FL_W) {              \
            VI w0 = FN8(loadi)(wp_), w1 = FN8(loadi)(wp_ + 4 * FL_W);         \
            VI w2 = FN8(loadi)(wp_ + 8 * FL_W), w3 = FN8(loadi)(wp_ + 12 * FL_W); \
            _Pragma("GCC unroll 16")                                          \
            for (int r = 0; r < mr; ++r) {                                    \
                VI av = FN8(splat4)((q) + r * (ldq) + 4 * k);                 \
                acc[r][0] = FN8(dot4)(acc[r][0], av, w0);                     \
                acc[r][1] = FN8(dot4)(acc[r][1], av, w1);                     \
                acc[r][2] = FN8(dot4)(acc[r][2], av, w2);                     \
                acc[r][3] = FN8(dot4)(acc[r][3], av, w3);                     \
            }                                                                 \
        }                                                                     \
    } while (0)

/* The step: z = x_proj + float(acc) * (s_h * s_r), then the float cell. */
FL_INLINE void FN8(tile_rows)(const int mr, const fl_tile_i8 *a)
{
    VI acc[FL_MR][4];
    FL_INT8_PRODUCT(acc, mr, a->p.q, a->p.ldq, a->p.w, a->p.comp, a->p.K4);
    V z[FL_MR][4];
#pragma GCC unroll 16
    for (int r = 0; r < mr; ++r) {
        V sr = FN(splat)(a->p.qs[r * a->p.ldqs]);
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g)
            z[r][g] = FN(load)(a->f.x + r * a->f.ldx + g * FL_W)
                + FN8(dequantize)(acc[r][g], sr, a->p.ws + g * FL_W);
    }
    FN(cell_rows)(mr, z, &a->f);
}

/* The input projection: out = bias + float(acc) * (s_x * s_k). */
FL_INLINE void FN8(proj_rows)(const int mr, const fl_proj_i8 *a)
{
    VI acc[FL_MR][4];
    FL_INT8_PRODUCT(acc, mr, a->p.q, a->p.ldq, a->p.w, a->p.comp, a->p.K4);
#pragma GCC unroll 16
    for (int r = 0; r < mr; ++r) {
        V sr = FN(splat)(a->p.qs[r * a->p.ldqs]);
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g)
            FN(store)(a->out + r * a->ldo + g * FL_W, FN(load)(a->bias + g * FL_W)
                      + FN8(dequantize)(acc[r][g], sr, a->p.ws + g * FL_W));
    }
}

/* mr as a compile-time constant, so the row loops unroll into registers. */
#if FL_MR == 6
#define FL_I8_ROWS(f)                                                         \
    switch (mr) {                                                             \
    case 6: f(6, a); break; case 5: f(5, a); break; case 4: f(4, a); break;   \
    case 3: f(3, a); break; case 2: f(2, a); break; default: f(1, a); break;  \
    }
#elif FL_MR == 3
#define FL_I8_ROWS(f)                                                         \
    switch (mr) {                                                             \
    case 3: f(3, a); break; case 2: f(2, a); break; default: f(1, a); break;  \
    }
#else
#error "the int8 tiles are written for FL_MR 3 or 6"
#endif

static void FN8(tile)(int mr, const fl_tile_i8 *a)
{
    FL_I8_ROWS(FN8(tile_rows))
}

static void FN8(proj)(int mr, const fl_proj_i8 *a)
{
    FL_I8_ROWS(FN8(proj_rows))
}

#undef FL_I8_ROWS
#undef FL_INT8_PRODUCT
#undef FL_OPAQUE
#undef V
#undef VI
#undef FN
#undef FN8
#undef FL_CAT
#undef FL_CAT_
