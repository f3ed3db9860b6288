/* The thread planner (plan.h).
 *
 * Neither way of sharing waits for a thread that has not started (pool.h),
 * so asking for threads is cheap; what a thread costs is waking it and the
 * hand-overs between cores.
 */
#include "plan.h"

/* Below this many multiply-adds an inference call runs on one thread: about
 * 8 us of work, where waking a sleeping worker costs the caller a few
 * microseconds. */
#define FL_FORWARD_MIN_FMAS 2e5
/* Fewest multiply-adds of h_prev @ U per step for which threads share the
 * units of a small batch: each step then ends in a hand-over between cores
 * (~0.2 us here).  Measured with 2 threads at T=100, I=32: B=1, U=32 (4096)
 * gains nothing; U=64 (16384) 94 -> 78 us; U=128 290 -> 168 us. */
#define FL_UNIT_SPLIT_MIN_FMAS 16384
/* Below this many multiply-adds in the recurrence (B * T * 4U * U) a
 * training pass runs on one thread: a team costs more than it saves on
 * small problems.  Set for training on its own (it counts the recurrence
 * only, and is ten times the inference threshold); kept as it was when the
 * two planners became this one. */
#define FL_TRAIN_MIN_FMAS 2e6

int fl_plan(int kind, ptrdiff_t B, ptrdiff_t T, ptrdiff_t n_in, ptrdiff_t U,
            ptrdiff_t NB, int nt, int *split_units)
{
    *split_units = 0;
    if (kind == FL_PLAN_TRAIN) {
        /* Row groups only: a training pass keeps every step's record. */
        if (nt <= 1 || B < 2 || (double)B * T * 4 * U * U < FL_TRAIN_MIN_FMAS)
            return 1;
        return B < nt ? (int)B : nt;
    }
    /* Share the batch rows when every thread gets a few: threads then meet
     * only at the end.  Sharing the unit blocks hands h over between threads
     * every step, which pays when the batch is small and the steps are big
     * (measured at 2 threads: B=4, U=256: units 2.8 ms, rows 4.0 ms;
     * B=8, U=128: rows 9.0 ms, units 9.1 ms). */
    if (nt <= 1 || (double)B * T * 4 * U * (n_in + U) < FL_FORWARD_MIN_FMAS)
        return 1;
    if (B >= 4 * nt)
        return nt;
    if (NB >= nt && (double)B * U * 4 * U >= FL_UNIT_SPLIT_MIN_FMAS) {
        *split_units = 1;
        return nt;
    }
    if (B >= nt)
        return nt;
    return 1;
}
