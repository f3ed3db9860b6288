/* How many threads a call asks the pool for (plan.c): one planner for
 * inference and training. */
#ifndef FASTLSTM_PLAN_H
#define FASTLSTM_PLAN_H

#include <stddef.h>

/* The work a call plans for. */
enum {
    FL_PLAN_FORWARD = 0,    /* inference: rows or unit ranges */
    FL_PLAN_TRAIN = 1       /* a training pass: row groups, then blocks */
};

/* Threads to ask for, at most nt, for `kind` on B rows, T steps, I inputs,
 * U units in NB blocks; *split_units: 1 when inference threads share the
 * unit blocks of each step rather than the batch rows. */
int fl_plan(int kind, ptrdiff_t B, ptrdiff_t T, ptrdiff_t n_in, ptrdiff_t U,
            ptrdiff_t NB, int nt, int *split_units);

#endif /* FASTLSTM_PLAN_H */
