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

/* SSE2, every x86-64 CPU: 16 xmm registers and no FMA.  2 rows: 8
 * accumulators, 4 panel vectors, the broadcast and the product temporaries
 * of mul + add.  1 thread, float32: 6.6-8.2x the portable tiles, 110-122%
 * of OpenBLAS's SSE sgemm (Nehalem kernels) in the same run.  float64 has
 * the same register budget at 2 lanes. */
FL_TARGET_BEGIN("sse2")
#define FL_SUF sse2
#define FL_W 4
#define FL_MR 2
#define FL_F64 0
#include "tiles_vector.h"
#undef FL_SUF
#undef FL_W
#undef FL_MR
#undef FL_F64
#define FL_SUF sse2_f64
#define FL_W 2
#define FL_MR 2
#define FL_F64 1
#include "tiles_vector.h"
#undef FL_SUF
#undef FL_W
#undef FL_MR
#undef FL_F64
FL_TARGET_END

/* Each vector instruction set: its float32 tiles, its int8 tiles on the
 * same vectors without VNNI and with it (each in its own region: the int8
 * ones need the integer instructions too), then its float64 tiles. */

/* AVX2+FMA has 16 ymm registers.  A tile of MR = 3 rows keeps 12 gate
 * accumulators (3 rows x 4 gates), the broadcast of h and three of the four
 * weight vectors of step k in registers; the fourth is read by each row's
 * FMA from memory (L1): 16 registers, no spill, and per step k 9 loads
 * (3 weight vectors, 3 memory operands, 3 broadcasts) for 12 FMAs, 0.75 a
 * FMA, under the 2 loads and 2 FMAs a cycle of Haswell..Zen 3.  The 2-row
 * tile (a batch's remainder) holds all four weight vectors (13 registers,
 * 6 loads for 8 FMAs; FL_KEEP_PANEL in tiles_vector.h); the 1-row tile has
 * 4 accumulators for the 8 FMAs in flight that 2 FMA units of 4 cycles'
 * latency need, so it runs at about half speed.  Checked with objdump (gcc
 * 12: no stack access in the k loops).  Measured (one step's tiles in a
 * micro-benchmark outside the repository, 1 thread, best of 60 bursts, on
 * a shared Xeon with AVX-512 whose OpenBLAS Haswell sgemm reaches 75-79
 * GFLOP/s when quiet, issue 11): B = 3..33 at U = 256 66-70 GFLOP/s with
 * the cell (sigmoid/tanh), 80 with linear activations, so the product runs
 * at sgemm speed and the cell's five exp-based activations per unit cost
 * 16% at U = 256 and 30% at U = 128; the 2-row tile 44 -> 58 GFLOP/s with
 * its weights in registers.  The layer's numbers are in
 * benchmarks/RESULTS.md.  Tried and measured slower: 2 rows x 4 gates as
 * the full tile (8 accumulators: 59-78% of sgemm), 6 rows x 2 vectors of 4
 * units (BLIS's 6x16 shape: 66-90%, and half speed at B = 1).  float64 has
 * the same register budget at 4 lanes. */
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
FL_TARGET_BEGIN("avx2,fma")
#define FL_SUF avx2_f64
#define FL_W 4
#define FL_MR 3
#define FL_F64 1
#include "tiles_vector.h"
#undef FL_SUF
#undef FL_W
#undef FL_MR
#undef FL_F64
FL_TARGET_END

/* 32 zmm registers: 6 rows x 4 gates = 24 accumulators, 4 weight vectors
 * and a broadcast (29), 10 loads for 24 FMAs. */
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
/* AMX (tdpbusd on 16 rows at once) on AVX-512's vectors, int8 helpers
 * and panels; see tiles_int8_amx.h. */
FL_TARGET_BEGIN("avx512f,avx512dq,avx512vl,avx512bw,avx512vnni,avx2,fma,amx-tile,amx-int8")
#define FL_SUF8 avx512_vnni
#include "tiles_int8_amx.h"
#undef FL_SUF8
FL_TARGET_END
#undef FL_SUF
#undef FL_W
#undef FL_MR
#undef FL_F64
FL_TARGET_BEGIN("avx512f,avx512dq,avx512vl,avx2,fma")
#define FL_SUF avx512_f64
#define FL_W 8
#define FL_MR 6
#define FL_F64 1
#include "tiles_vector.h"
#undef FL_SUF
#undef FL_W
#undef FL_MR
#undef FL_F64
FL_TARGET_END
#else
#define FL_HAVE_X86 0
#endif

/* NEON is part of aarch64: no target region, nothing to detect.  32
 * registers: 6 rows (24 accumulators, 4 panel vectors, the broadcast), the
 * products fused (fmla).  Checked under emulation only (.ci/aarch64). */
#if defined(__GNUC__) && defined(__aarch64__)
#define FL_HAVE_NEON 1
#define FL_SUF neon
#define FL_W 4
#define FL_MR 6
#define FL_F64 0
#include "tiles_vector.h"
#undef FL_SUF
#undef FL_W
#undef FL_MR
#undef FL_F64
#define FL_SUF neon_f64
#define FL_W 2
#define FL_MR 6
#define FL_F64 1
#include "tiles_vector.h"
#undef FL_SUF
#undef FL_W
#undef FL_MR
#undef FL_F64
#else
#define FL_HAVE_NEON 0
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
    FL_VECTOR_ROW(FL_ISA_SSE2, sse2),
#else
    FL_PORTABLE_ROW(f32),
#endif
#if FL_HAVE_NEON
    FL_VECTOR_ROW(FL_ISA_NEON, neon),
#else
    FL_PORTABLE_ROW(f32),
#endif
#if FL_HAVE_X86
    FL_VECTOR_ROW(FL_ISA_AVX2, avx2),
    FL_VECTOR_ROW(FL_ISA_AVX512, avx512),
#else
    FL_PORTABLE_ROW(f32),
    FL_PORTABLE_ROW(f32),
#endif
};

static const fl_ops_f64 fl_ops_f64_table[FL_ISA_COUNT] = {
    FL_PORTABLE_ROW(f64),
#if FL_HAVE_X86
    FL_VECTOR_ROW(FL_ISA_SSE2, sse2_f64),
#else
    FL_PORTABLE_ROW(f64),
#endif
#if FL_HAVE_NEON
    FL_VECTOR_ROW(FL_ISA_NEON, neon_f64),
#else
    FL_PORTABLE_ROW(f64),
#endif
#if FL_HAVE_X86
    FL_VECTOR_ROW(FL_ISA_AVX2, avx2_f64),
    FL_VECTOR_ROW(FL_ISA_AVX512, avx512_f64),
#else
    FL_PORTABLE_ROW(f64),
    FL_PORTABLE_ROW(f64),
#endif
};

const fl_ops_f32 *fl_ops_f32_of(int isa) { return &fl_ops_f32_table[isa]; }
const fl_ops_f64 *fl_ops_f64_of(int isa) { return &fl_ops_f64_table[isa]; }

/* The int8 table, rows in the order of isa.h's FL_I8_ codes. */
#define FL_I8_PORTABLE_ROW                                                    \
    {FL_ISA_PORTABLE, FL_PW, FL_PMR, 1, fl_quantize_portable, fl_proj_portable_i8, \
     fl_tile_portable_i8, NULL}
#define FL_I8_VECTOR_ROW(ISA, SUF, SUF8)                                      \
    {ISA, fl_width_##SUF, fl_rows_##SUF, 1, fl_quantize_##SUF8, fl_proj_##SUF8, \
     fl_tile_##SUF8, NULL}
static const fl_ops_i8 fl_ops_i8_table[FL_I8_COUNT] = {
    FL_I8_PORTABLE_ROW,
#if FL_HAVE_X86
    FL_I8_VECTOR_ROW(FL_ISA_AVX2, avx2, avx2_madd),
    FL_I8_VECTOR_ROW(FL_ISA_AVX2, avx2, avx2_vnni),
    FL_I8_VECTOR_ROW(FL_ISA_AVX512, avx512, avx512_madd),
    FL_I8_VECTOR_ROW(FL_ISA_AVX512, avx512, avx512_vnni),
    /* K4 padded to 16 groups: one A tile of 64 bytes */
    {FL_ISA_AVX512, fl_width_avx512, FL_AMX_ROWS, 16, fl_quantize_avx512_vnni,
     fl_proj_amx, fl_tile_amx, fl_release_amx},
#else   /* never chosen: fl_i8_supported says no */
    FL_I8_PORTABLE_ROW, FL_I8_PORTABLE_ROW, FL_I8_PORTABLE_ROW, FL_I8_PORTABLE_ROW,
    FL_I8_PORTABLE_ROW,
#endif
};

const fl_ops_i8 *fl_ops_i8_of(int kernel) { return &fl_ops_i8_table[kernel]; }
