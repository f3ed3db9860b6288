/* Cancellation points of the time loops: the calling thread (slot 0) asks
 * the caller, every few milliseconds of work, whether to go on, and once it
 * says stop, every thread of the job leaves at its next step.  The kernel
 * knows no Python: _kernel.pyx's `poll` takes the GIL and runs the signal
 * handlers (PyErr_CheckSignals), and an entry that was stopped returns
 * FL_CANCELLED without writing its caller's state (h, c, y).
 */
#ifndef FASTLSTM_CANCEL_H
#define FASTLSTM_CANCEL_H

#include <stddef.h>
#include "pool.h"

/* What an entry returns when `poll` stopped it. */
#define FL_CANCELLED 1

/* Ticks (fl_ticks) between polls: 5 ms at a 1 GHz tick, so every 1 to 5 ms
 * on x86 time-stamp counters (1 to 5 GHz), 5 ms elsewhere (nanoseconds).
 * A call shorter than that never polls. */
#define FL_CANCEL_TICKS 5000000LL

/* Asked whether to stop: nonzero stops the job. */
typedef int (*fl_poll)(void *ctx);

typedef struct {
    fl_poll poll;            /* called on slot 0 only; NULL: never */
    void *ctx;
    long long next;          /* fl_ticks() of the next poll (slot 0's) */
    ptrdiff_t stop;          /* poll said stop: every thread leaves */
} fl_cancel;

/* A cancel that polls through poll(ctx) from now on (poll may be NULL). */
static inline fl_cancel fl_cancel_start(fl_poll poll, void *ctx)
{
    fl_cancel c;
    c.poll = poll;
    c.ctx = ctx;
    c.next = fl_ticks() + FL_CANCEL_TICKS;
    c.stop = 0;
    return c;
}

/* A cancellation point of thread `slot`: whether the job must stop. */
static inline int fl_cancelled(fl_cancel *c, int slot)
{
    if (slot == 0 && c->poll != NULL && fl_ticks() >= c->next) {
        if (c->poll(c->ctx))
            FL_ADD(&c->stop, 1);
        c->next = fl_ticks() + FL_CANCEL_TICKS;
    }
    return FL_LOAD(&c->stop) != 0;
}

#endif /* FASTLSTM_CANCEL_H */
