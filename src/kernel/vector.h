/* The vector type of one instruction set and dtype, and its lane
 * operations, written once with GCC vector extensions (gcc and clang).
 * Included by tiles_vector.h, once per instantiation (isa.c), inside the
 * instruction set's target region:
 *
 *   #define FL_SUF avx512     name suffix of everything defined here
 *   #define FL_W 16           lanes per vector
 *   #define FL_F64 0          element type: 0 float, 1 double
 *
 * No include guard: each instantiation defines its own names.
 */
#if FL_F64
#define FL_T double
#define FL_TS f64
#define FL_LANE long long
#define FL_ABS_BITS 0x7fffffffffffffffLL
#define FL_SIGN_BITS ((long long)0x8000000000000000ULL)
#else
#define FL_T float
#define FL_TS f32
#define FL_LANE int
#define FL_ABS_BITS 0x7fffffff
#define FL_SIGN_BITS ((int)0x80000000)
#endif
#define FL_CAT_(a, b) a##_##b
#define FL_CAT(a, b) FL_CAT_(a, b)
#define FN(name) FL_CAT(fl_##name, FL_SUF)
#define V FN(vf)
#define VI FN(vi)

#ifndef FL_INLINE
/* Vectors cross no call boundary: a call would pass them through memory. */
#define FL_INLINE static inline __attribute__((always_inline))
#endif

typedef FL_T V __attribute__((vector_size(FL_W * sizeof(FL_T))));
typedef FL_LANE VI __attribute__((vector_size(FL_W * sizeof(FL_T))));

FL_INLINE V FN(load)(const FL_T *p) { V v; memcpy(&v, p, sizeof v); return v; }
FL_INLINE void FN(store)(FL_T *p, V v) { memcpy(p, &v, sizeof v); }
/* Broadcast through the integer bits: 0.0f + s cannot be folded (it turns
 * -0.0 into +0.0), so a float splat would cost an add per broadcast. */
FL_INLINE V FN(splat)(FL_T s)
{
    FL_LANE bits;
    memcpy(&bits, &s, sizeof bits);
    return (V)((VI){0} + bits);
}
/* mask ? a : b, lane by lane (mask lanes are 0 or -1, as comparisons give). */
FL_INLINE V FN(select)(VI mask, V a, V b)
{
    return (V)((mask & (VI)a) | (~mask & (VI)b));
}
FL_INLINE V FN(abs)(V x) { return (V)((VI)x & FL_ABS_BITS); }

/* n <= W values, the rest of the vector zero. */
FL_INLINE V FN(load_part)(const FL_T *p, int n)
{
    if (n == FL_W)
        return FN(load)(p);
    FL_T tmp[FL_W] = {0};
    memcpy(tmp, p, n * sizeof(FL_T));
    return FN(load)(tmp);
}

