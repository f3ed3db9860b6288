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
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#define FL_POOL_MAX 256          /* most threads per job, caller included */
#define FL_POOL_SPIN_NS 200000   /* a worker's spin before it sleeps */

typedef struct {
    pthread_mutex_t lock;        /* guards the sleep on `wake` */
    pthread_cond_t wake;
    int started;                 /* workers created, slots 1 .. started */
    int sleepers;                /* workers waiting on `wake` */
    int busy;                    /* a caller holds the pool */
    int active;                  /* workers inside fn */
    int want;                    /* slots 1 .. want may join the job */
    unsigned long state;         /* 2 * job number + 1 while the job is open */
    fl_job_fn fn;
    void *ctx;
} fl_pool_t;

static fl_pool_t fl_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                            0, 0, 0, 0, 0, 0, NULL, NULL};
static int fl_pool_fork_hook;    /* the child handler is registered */

static long long fl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The pool state once it differs from `seen`: spin a while, then sleep. */
static unsigned long fl_pool_next_state(unsigned long seen)
{
    unsigned long st;
    long long until = fl_now_ns() + FL_POOL_SPIN_NS;
    for (int i = 1;; ++i) {
        st = __atomic_load_n(&fl_pool.state, __ATOMIC_SEQ_CST);
        if (st != seen)
            return st;
        FL_PAUSE();
        if (i % 64 == 0 && fl_now_ns() > until)
            break;
    }
    /* sleepers is raised before the state is read again under the lock, and
     * fl_pool_run stores the state before reading sleepers: one of the two
     * sees the other, so no wake-up is lost. */
    pthread_mutex_lock(&fl_pool.lock);
    __atomic_add_fetch(&fl_pool.sleepers, 1, __ATOMIC_SEQ_CST);
    while ((st = __atomic_load_n(&fl_pool.state, __ATOMIC_SEQ_CST)) == seen)
        pthread_cond_wait(&fl_pool.wake, &fl_pool.lock);
    __atomic_sub_fetch(&fl_pool.sleepers, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&fl_pool.lock);
    return st;
}

static void *fl_pool_worker(void *arg)
{
    int slot = (int)(intptr_t)arg;
    /* A closed state: a job opened after this thread was made is not missed. */
    unsigned long seen = __atomic_load_n(&fl_pool.state, __ATOMIC_SEQ_CST) & ~1UL;
    for (;;) {
        unsigned long st = seen = fl_pool_next_state(seen);
        if (!(st & 1))
            continue;                         /* that job closed already */
        /* Enter, then check the job is still open: the caller closes, then
         * waits for active == 0, so either it waits for us or we see it closed. */
        __atomic_add_fetch(&fl_pool.active, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&fl_pool.state, __ATOMIC_SEQ_CST) == st && slot <= fl_pool.want)
            fl_pool.fn(fl_pool.ctx, slot);
        __atomic_sub_fetch(&fl_pool.active, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

/* In a child of fork() the workers do not exist: start over. */
static void fl_pool_after_fork_child(void)
{
    pthread_mutex_init(&fl_pool.lock, NULL);
    pthread_cond_init(&fl_pool.wake, NULL);
    fl_pool.started = fl_pool.sleepers = fl_pool.busy = fl_pool.active = 0;
    fl_pool.want = 0;
    fl_pool.state = 0;
}

/* Make workers up to slot n - 1 (fewer if the system refuses threads). */
static void fl_pool_grow(int n)
{
    if (!fl_pool_fork_hook)
        fl_pool_fork_hook = pthread_atfork(NULL, NULL, fl_pool_after_fork_child) == 0;
    while (fl_pool.started < n - 1) {
        pthread_t thread;
        pthread_attr_t attr;
        int ok;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        ok = pthread_create(&thread, &attr, fl_pool_worker,
                            (void *)(intptr_t)(fl_pool.started + 1)) == 0;
        pthread_attr_destroy(&attr);
        if (!ok)
            break;
        fl_pool.started++;
    }
}

/* Run fn on the caller and on up to n - 1 workers; see the top of the file. */
static void fl_pool_run(fl_job_fn fn, void *ctx, int n)
{
    if (n > FL_POOL_MAX)
        n = FL_POOL_MAX;
    if (n <= 1 || __atomic_exchange_n(&fl_pool.busy, 1, __ATOMIC_ACQUIRE)) {
        fn(ctx, 0);
        return;
    }
    fl_pool_grow(n);
    fl_pool.fn = fn;
    fl_pool.ctx = ctx;
    fl_pool.want = n - 1 < fl_pool.started ? n - 1 : fl_pool.started;
    unsigned long st = fl_pool.state + 1;     /* open */
    __atomic_store_n(&fl_pool.state, st, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&fl_pool.sleepers, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&fl_pool.lock);
        pthread_cond_broadcast(&fl_pool.wake);
        pthread_mutex_unlock(&fl_pool.lock);
    }
    fn(ctx, 0);
    __atomic_store_n(&fl_pool.state, st + 1, __ATOMIC_SEQ_CST);   /* closed */
    while (__atomic_load_n(&fl_pool.active, __ATOMIC_SEQ_CST) != 0)
        FL_PAUSE();
    __atomic_store_n(&fl_pool.busy, 0, __ATOMIC_RELEASE);
}

/* A cheap clock for comparing two intervals of one thread. */
static inline long long fl_ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return (long long)__builtin_ia32_rdtsc();
#else
    return fl_now_ns();
#endif
}

#else
#define FL_HAVE_POOL 0
static inline long long fl_ticks(void) { return 0; }
static void fl_pool_run(fl_job_fn fn, void *ctx, int n)
{
    (void)n;
    fn(ctx, 0);
}
#endif

#endif /* FASTLSTM_POOL_H */
