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
    long long last;          /* fl_ticks() at slot 0's last clock read */
    int stride, count;       /* slot 0 reads the clock every `stride` points */
    ptrdiff_t stop;          /* poll said stop: every thread leaves */
} fl_cancel;

/* A cancel that polls through poll(ctx) from now on (poll may be NULL). */
static inline fl_cancel fl_cancel_start(fl_poll poll, void *ctx)
{
    fl_cancel c;
    c.poll = poll;
    c.ctx = ctx;
    c.last = fl_ticks();
    c.next = c.last + FL_CANCEL_TICKS;
    c.stride = c.count = 1;
    c.stop = 0;
    return c;
}

/* Slot 0's clock read: poll when due, and keep the reads 1/64 to 1/16 of
 * the poll interval apart (a read of the time-stamp counter costs ~70 ns on
 * the VM this was measured on, as much as 5% of a small step; read every
 * step it slowed (1, 100, 32, 64) by ~10%). */
static inline void fl_cancel_clock(fl_cancel *c)
{
    long long now = fl_ticks(), since = now - c->last;
    if (since < FL_CANCEL_TICKS / 64 && c->stride < (1 << 20))
        c->stride *= 2;
    else if (since > FL_CANCEL_TICKS / 16 && c->stride > 1)
        c->stride /= 2;
    c->count = c->stride;
    c->last = now;
    if (now >= c->next) {
        if (c->poll(c->ctx))
            FL_ADD(&c->stop, 1);
        c->last = fl_ticks();
        c->next = c->last + FL_CANCEL_TICKS;
    }
}

/* A cancellation point of thread `slot`: whether the job must stop. */
static inline int fl_cancelled(fl_cancel *c, int slot)
{
    if (slot == 0 && c->poll != NULL && --c->count <= 0)
        fl_cancel_clock(c);
    return FL_LOAD(&c->stop) != 0;
}

#endif /* FASTLSTM_CANCEL_H */
