/* The delay timer: one thread and a min-heap of wake-up times. Delayed
 * requests suspend their connection and this thread resumes them when
 * due, so a slow answer never occupies an HTTP thread. */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "sg/alloc.h"
#include "sg/util.h"
#include "stubs.h"

typedef struct entry {
    int64_t due_us; /* sg_mono_us(): CLOCK_MONOTONIC, like cond */
    uint64_t seq;   /* ties keep insertion order */
    stub_timer_fn fire;
    void *arg;
} entry;

struct stub_timer {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* on CLOCK_MONOTONIC */
    pthread_t thread;
    int started, stopping, joined;
    entry *heap;
    size_t n, cap;
    uint64_t seq;
};

static int before(const entry *a, const entry *b)
{
    return a->due_us < b->due_us || (a->due_us == b->due_us && a->seq < b->seq);
}

static void heap_push(stub_timer *t, entry e)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 256;
        t->heap = sg_xrealloc(t->heap, t->cap * sizeof *t->heap);
    }
    size_t i = t->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&e, &t->heap[parent])) break;
        t->heap[i] = t->heap[parent];
        i = parent;
    }
    t->heap[i] = e;
}

static entry heap_pop(stub_timer *t)
{
    entry top = t->heap[0], last = t->heap[--t->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= t->n) break;
        if (c + 1 < t->n && before(&t->heap[c + 1], &t->heap[c])) c++;
        if (!before(&t->heap[c], &last)) break;
        t->heap[i] = t->heap[c];
        i = c;
    }
    if (t->n) t->heap[i] = last;
    return top;
}

static void *run(void *arg)
{
    stub_timer *t = arg;
    pthread_mutex_lock(&t->lock);
    while (!t->stopping) {
        if (t->n == 0) {
            pthread_cond_wait(&t->cond, &t->lock);
            continue;
        }
        int64_t now = sg_mono_us();
        if (t->heap[0].due_us <= now) {
            entry e = heap_pop(t);
            e.fire(e.arg);
            continue;
        }
        struct timespec ts = {.tv_sec = t->heap[0].due_us / 1000000,
                              .tv_nsec = (long)(t->heap[0].due_us % 1000000) * 1000};
        pthread_cond_timedwait(&t->cond, &t->lock, &ts);
    }
    /* Shutdown: whatever arm did (a suspended connection) must be undone
     * before the HTTP server stops, so fire everything now. */
    while (t->n) {
        entry e = heap_pop(t);
        e.fire(e.arg);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

sg_status stub_timer_create(stub_timer **out)
{
    *out = NULL;
    stub_timer *t = sg_xcalloc(1, sizeof *t);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&t->lock, NULL);
    if (pthread_create(&t->thread, NULL, run, t) != 0) goto fail;
    t->started = 1;
    *out = t;
    return SG_OK;
fail:
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
    return SG_EIO;
}

sg_status stub_timer_add(stub_timer *t, int64_t delay_ms, stub_timer_fn arm, stub_timer_fn fire,
                         void *arg)
{
    sg_status st = SG_OK;
    pthread_mutex_lock(&t->lock);
    if (t->stopping) {
        st = SG_ECLOSED;
        goto fail;
    }
    if (arm) arm(arg);
    entry e = {.due_us = sg_mono_us() + delay_ms * 1000, .seq = t->seq++, .fire = fire, .arg = arg};
    heap_push(t, e);
    /* Only a new earliest entry changes how long the thread must sleep. */
    if (t->heap[0].seq == e.seq) pthread_cond_signal(&t->cond);
fail:
    pthread_mutex_unlock(&t->lock);
    return st;
}

void stub_timer_stop(stub_timer *t)
{
    if (!t) return;
    pthread_mutex_lock(&t->lock);
    t->stopping = 1;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    if (t->started && !t->joined) {
        pthread_join(t->thread, NULL);
        t->joined = 1;
    }
}

void stub_timer_destroy(stub_timer *t)
{
    if (!t) return;
    stub_timer_stop(t);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t->heap);
    free(t);
}
