/* The thread pool of pool.h: its one state per process and its workers. */
#include "pool.h"

#if FL_HAVE_POOL
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

long long fl_now_ns(void)
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

void fl_pool_run(fl_job_fn fn, void *ctx, int n)
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

int fl_pool_workers(void)
{
    return __atomic_load_n(&fl_pool.started, __ATOMIC_SEQ_CST);
}

#else
#include <time.h>

long long fl_now_ns(void)
{
    return (long long)clock() * (1000000000LL / CLOCKS_PER_SEC);
}

void fl_pool_run(fl_job_fn fn, void *ctx, int n)
{
    (void)n;
    fn(ctx, 0);
}

int fl_pool_workers(void)
{
    return 0;
}
#endif
