/* Instruction sets and THE table of tiles: for each (instruction set,
 * dtype) one row with the block width W, the most rows per tile and the
 * functions of the tiles.  Inference (forward.c) and training (train.c)
 * both take their tiles from here; isa.c fills the table, cpu.c says which
 * rows this CPU can run.
 *
 * Adding an instruction set: a code below, its check in cpu.c, and in isa.c
 * one instantiation of the vector source per dtype inside the instruction
 * set's target region plus its row in each table (and its int8 kernels'
 * rows in the int8 table).
 */
#ifndef FASTLSTM_ISA_H
#define FASTLSTM_ISA_H

#include "tiles.h"

/* Instruction set codes (index of the table rows); _kernel.pyx holds the
 * names in the same order. */
enum {
    FL_ISA_PORTABLE = 0,  /* scalar C: the only tiles of compilers without vector extensions */
    FL_ISA_SSE2 = 1,      /* 128-bit, x86-64 baseline */
    FL_ISA_NEON = 2,      /* 128-bit, aarch64 baseline */
    FL_ISA_AVX2 = 3,
    FL_ISA_AVX512 = 4,
    FL_ISA_COUNT = 5
};

#define FL_DEFINE_OPS(T, SUF)                                                 \
typedef struct {                                                              \
    int isa;          /* whose tiles these are (a row without tiles of its    \
                         own for this dtype holds a slower set's) */          \
    int width;        /* W: lanes per block, the packed layout's unit */      \
    int rows;         /* MR: most batch rows per tile */                      \
    fl_tile_fn_##SUF tile;                                                    \
    fl_proj_fn_##SUF proj;                                                    \
    fl_back_fn_##SUF back;                                                    \
    fl_activate_fn_##SUF activate;                                            \
} fl_ops_##SUF;                                                               \
                                                                              \
/* The row of instruction set `isa` (a valid code; see fl_isa_supported). */ \
const fl_ops_##SUF *fl_ops_##SUF##_of(int isa);

FL_DEFINE_OPS(float, f32)
FL_DEFINE_OPS(double, f64)
#undef FL_DEFINE_OPS

/* Whether this CPU (and OS) can run instruction set `isa` (cpu.c). */
int fl_isa_supported(int isa);

/* The int8 weight type (tiles.h's int8 tiles; float32 layers only): its
 * own rows, since each vector instruction set has two int8 kernels, with
 * and without VNNI's vpdpbusd, and AVX-512 a third on AMX's tiles;
 * _kernel.pyx holds the names in this order. */
enum {
    FL_I8_PORTABLE = 0, FL_I8_AVX2 = 1, FL_I8_AVX2_VNNI = 2, FL_I8_AVX512 = 3,
    FL_I8_AVX512_VNNI = 4, FL_I8_AMX = 5, FL_I8_COUNT = 6
};

typedef struct {
    int isa;          /* the float instruction set whose vectors and block
                         width it uses */
    int width, rows;  /* W, as that instruction set's float32 row; MR */
    int k4_align;     /* K4 (groups of 4 inputs) of the panels and of the
                         quantized rows is padded to a multiple of this */
    fl_quantize_fn quantize;
    fl_proj_fn_i8 proj;
    fl_tile_fn_i8 tile;
    /* Called by each thread that ran the tiles, once its job is done (AMX:
     * hands the tile registers back), or NULL. */
    void (*release)(void);
} fl_ops_i8;

/* The row of int8 kernel `kernel` (a code above that fl_i8_supported says
 * this CPU can run). */
const fl_ops_i8 *fl_ops_i8_of(int kernel);

/* Whether this CPU (and OS) can run int8 kernel `kernel` (cpu.c). */
int fl_i8_supported(int kernel);

#endif /* FASTLSTM_ISA_H */
