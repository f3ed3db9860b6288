/* The table of tiles (isa.h): the portable tiles for every dtype, and the
 * vector tiles (tiles_vector.h) instantiated per instruction set and dtype
 * inside that instruction set's target region.
 *
 * Target regions: `#pragma GCC target` for GCC, `#pragma clang attribute`
 * for clang (which gives every function of the region the target
 * attribute).  No -march: the module runs on any CPU of its architecture
 * and cpu.c says which rows may be used.  Other compilers (MSVC) build the
 * portable tiles only, which stay correct everywhere.
 */
#include <string.h>
#include "isa.h"
#include "tiles_portable.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FL_HAVE_X86 1
#if defined(__clang__)
#define FL_TARGET_BEGIN(isa) \
    _Pragma(FL_STR(clang attribute push(__attribute__((target(isa))), apply_to = function)))
#define FL_TARGET_END _Pragma("clang attribute pop")
#else
#define FL_TARGET_BEGIN(isa) _Pragma("GCC push_options") _Pragma(FL_STR(GCC target(isa)))
#define FL_TARGET_END _Pragma("GCC pop_options")
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#define FL_STR_(x) #x
#define FL_STR(x) FL_STR_(x)

/* Each vector instruction set: its float32 tiles, then its int8 tiles on
 * the same vectors without VNNI and with it (each in its own region: the
 * int8 ones need the integer instructions too). */
#define FL_SUF avx2
#define FL_W 8
#define FL_MR 3
#define FL_F64 0
FL_TARGET_BEGIN("avx2,fma")
#include "tiles_vector.h"
FL_TARGET_END
FL_TARGET_BEGIN("avx2,fma")
#define FL_SUF8 avx2_madd
#define FL_VNNI 0
#include "tiles_int8_vector.h"
#undef FL_SUF8
#undef FL_VNNI
FL_TARGET_END
FL_TARGET_BEGIN("avx2,fma,avxvnni")
#define FL_SUF8 avx2_vnni
#define FL_VNNI 1
#include "tiles_int8_vector.h"
#undef FL_SUF8
#undef FL_VNNI
FL_TARGET_END
#undef FL_SUF
#undef FL_W
#undef FL_MR
#undef FL_F64

#define FL_SUF avx512
#define FL_W 16
#define FL_MR 6
#define FL_F64 0
FL_TARGET_BEGIN("avx512f,avx512dq,avx512vl,avx2,fma")
#include "tiles_vector.h"
FL_TARGET_END
FL_TARGET_BEGIN("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")
#define FL_SUF8 avx512_madd
#define FL_VNNI 0
#include "tiles_int8_vector.h"
#undef FL_SUF8
#undef FL_VNNI
FL_TARGET_END
FL_TARGET_BEGIN("avx512f,avx512dq,avx512vl,avx512bw,avx512vnni,avx2,fma")
#define FL_SUF8 avx512_vnni
#define FL_VNNI 1
#include "tiles_int8_vector.h"
#undef FL_SUF8
#undef FL_VNNI
FL_TARGET_END
#undef FL_SUF
#undef FL_W
#undef FL_MR
#undef FL_F64
#else
#define FL_HAVE_X86 0
#endif

#define FL_PORTABLE_ROW(SUF)                                                  \
    {FL_ISA_PORTABLE, FL_PW, FL_PMR, fl_tile_portable_##SUF,                  \
     fl_proj_portable_##SUF, fl_back_portable_##SUF, fl_activate_portable_##SUF}
#define FL_VECTOR_ROW(ISA, SUF)                                               \
    {ISA, fl_width_##SUF, fl_rows_##SUF, fl_tile_##SUF, fl_proj_##SUF,          \
     fl_back_##SUF, fl_activate_##SUF}

/* Rows in the order of the codes in isa.h. */
static const fl_ops_f32 fl_ops_f32_table[FL_ISA_COUNT] = {
    FL_PORTABLE_ROW(f32),
#if FL_HAVE_X86
    FL_VECTOR_ROW(FL_ISA_AVX2, avx2),
    FL_VECTOR_ROW(FL_ISA_AVX512, avx512),
#else
    FL_PORTABLE_ROW(f32),
    FL_PORTABLE_ROW(f32),
#endif
};

/* float64 runs the portable tiles on every instruction set. */
static const fl_ops_f64 fl_ops_f64_table[FL_ISA_COUNT] = {
    FL_PORTABLE_ROW(f64),
    FL_PORTABLE_ROW(f64),
    FL_PORTABLE_ROW(f64),
};

const fl_ops_f32 *fl_ops_f32_of(int isa) { return &fl_ops_f32_table[isa]; }
const fl_ops_f64 *fl_ops_f64_of(int isa) { return &fl_ops_f64_table[isa]; }

/* The int8 table, rows in the order of isa.h's FL_I8_ codes. */
#define FL_I8_PORTABLE_ROW                                                    \
    {FL_ISA_PORTABLE, FL_PW, FL_PMR, fl_quantize_portable, fl_proj_portable_i8, \
     fl_tile_portable_i8}
#define FL_I8_VECTOR_ROW(ISA, SUF, SUF8)                                      \
    {ISA, fl_width_##SUF, fl_rows_##SUF, fl_quantize_##SUF8, fl_proj_##SUF8,    \
     fl_tile_##SUF8}
static const fl_ops_i8 fl_ops_i8_table[FL_I8_COUNT] = {
    FL_I8_PORTABLE_ROW,
#if FL_HAVE_X86
    FL_I8_VECTOR_ROW(FL_ISA_AVX2, avx2, avx2_madd),
    FL_I8_VECTOR_ROW(FL_ISA_AVX2, avx2, avx2_vnni),
    FL_I8_VECTOR_ROW(FL_ISA_AVX512, avx512, avx512_madd),
    FL_I8_VECTOR_ROW(FL_ISA_AVX512, avx512, avx512_vnni),
#else   /* never chosen: fl_i8_supported says no */
    FL_I8_PORTABLE_ROW, FL_I8_PORTABLE_ROW, FL_I8_PORTABLE_ROW, FL_I8_PORTABLE_ROW,
#endif
};

const fl_ops_i8 *fl_ops_i8_of(int kernel) { return &fl_ops_i8_table[kernel]; }
