/* A persistent thread pool whose caller never waits for a worker that has
 * not started.
 *
 * fl_pool_run(fn, ctx, n) calls fn(ctx, 0) on the calling thread and
 * fn(ctx, slot) on each of up to n - 1 workers that picks the job up while
 * it is open.  A worker may come late or not at all (its core may be busy
 * with another process), so fn must hand out its work dynamically, e.g. by
 * claiming pieces with atomics, such that the caller alone can finish it.
 * The caller closes the job when its own fn returns and then waits only
 * for workers already inside fn, which hold claimed work.  (OpenMP's team
 * joins every thread: on a loaded machine a call then waits a scheduler
 * time slice, milliseconds, for a thread that has nothing left to do.)
 *
 * Workers spin for FL_POOL_SPIN_NS after each job, so back-to-back calls
 * find them awake, then sleep on a condition variable.  A call that finds
 * the pool busy (another Python thread is using it) runs on its own thread.
 * After fork() the child starts with no workers and makes new ones.
 *
 * POSIX threads and GCC/clang atomics; elsewhere every call runs on the
 * calling thread (FL_HAVE_POOL 0).
 *
 * One pool per process: pool.c holds its state, and inference and training
 * both run their jobs on it.
 */
#ifndef FASTLSTM_POOL_H
#define FASTLSTM_POOL_H

#include <stddef.h>

#if defined(__GNUC__)
/* Atomics of ptrdiff_t fields shared by the threads of one job. */
#define FL_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define FL_ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_ACQ_REL)
#define FL_CLAIM(p, expect, want) \
    __atomic_compare_exchange_n((p), &(expect), (want), 0, \
                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
#if defined(__x86_64__) || defined(__i386__)
#define FL_PAUSE() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define FL_PAUSE() __asm__ __volatile__("yield")
#else
#define FL_PAUSE() ((void)0)
#endif
#else   /* no pool: one thread, plain memory */
#define FL_LOAD(p) (*(p))
#define FL_ADD(p, v) (*(p) += (v))
#define FL_CLAIM(p, expect, want) (*(p) == (expect) ? (*(p) = (want), 1) : 0)
#define FL_PAUSE() ((void)0)
#endif

typedef void (*fl_job_fn)(void *ctx, int slot);

#if defined(__GNUC__) && (defined(__unix__) || defined(__APPLE__))
#define FL_HAVE_POOL 1
#else
#define FL_HAVE_POOL 0
#endif

/* Run fn on the caller and on up to n - 1 workers; see the top of the file. */
void fl_pool_run(fl_job_fn fn, void *ctx, int n);

/* Workers started so far in this process (0 without a pool). */
int fl_pool_workers(void);

/* Monotonic nanoseconds. */
long long fl_now_ns(void);

/* A cheap clock for comparing two intervals of one thread. */
static inline long long fl_ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return (long long)__builtin_ia32_rdtsc();
#else
    return fl_now_ns();
#endif
}

#endif /* FASTLSTM_POOL_H */
