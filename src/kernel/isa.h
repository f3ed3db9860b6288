/* Instruction sets and THE table of tiles: for each (instruction set,
 * dtype) one row with the block width W, the most rows per tile and the
 * functions of the tiles.  Inference (forward.c) and training (train.c)
 * both take their tiles from here; isa.c fills the table, cpu.c says which
 * rows this CPU can run.
 *
 * Adding an instruction set: a code below, its check in cpu.c, and in isa.c
 * one instantiation of the vector source per dtype inside the instruction
 * set's target region plus its row in each table.
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

#endif /* FASTLSTM_ISA_H */
